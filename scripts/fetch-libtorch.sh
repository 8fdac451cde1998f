#!/usr/bin/env bash
# Fetch libtorch 2.9 (what burn 0.22's `tch` backend links) for CPU training from PyPI wheels
# and lay it out as a LIBTORCH folder: lib/ (CPU libraries only) and include/. The PyPI torch
# wheel is a CUDA build whose CPU library still loads the CUDA runtime and CUPTI, so those two
# small wheels come along; the large CUDA libraries (cuDNN, cuBLAS, …) are left out.
# Prints the environment to build and run with. About 1 GB to download, 1.6 GB unpacked.
#
# Usage: scripts/fetch-libtorch.sh [DIR]   (default: ${GRAFT_CACHE:-~/.cache/graft}/libtorch-2.9)
set -euo pipefail

dir=${1:-${GRAFT_CACHE:-$HOME/.cache/graft}/libtorch-2.9}
mkdir -p "$dir/lib"

if [[ ! -f $dir/lib/libtorch_cpu.so ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d "$tmp" torch==2.9.0 nvidia-cuda-runtime-cu12==12.8.90 nvidia-cuda-cupti-cu12==12.8.90 >&2
    python3 - "$tmp" "$dir" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, out = sys.argv[1:]
keep = {"libc10.so", "libtorch_cpu.so", "libgomp.so.1", "libshm.so", "libtorch_global_deps.so",
        "libcudart.so.12", "libcupti.so.12"}
for whl in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            base = os.path.basename(name)
            if name.startswith("torch/include/"):
                dst = os.path.join(out, "include", name[len("torch/include/"):])
            elif base in keep and "/lib/" in name:
                dst = os.path.join(out, "lib", base)
            else:
                continue
            if name.endswith("/"):
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with z.open(name) as src, open(dst + ".part", "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(dst + ".part", dst)
# tch links -ltorch: point it at the CPU library so the CUDA one is never needed.
link = os.path.join(out, "lib", "libtorch.so")
if os.path.lexists(link):
    os.remove(link)
os.symlink("libtorch_cpu.so", link)
PY
fi
cat <<ENV
# build:  LIBTORCH=$dir LIBTORCH_CXX11_ABI=1 cargo build --release -p graft-cli --features tch
# run:    LD_LIBRARY_PATH=$dir/lib target/release/graft finetune --run RUN --backend tch
ENV
