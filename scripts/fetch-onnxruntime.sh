#!/usr/bin/env bash
# Fetch ONNX Runtime's shared library from the `onnxruntime` wheel on PyPI (a package registry,
# never a hub) and print its path, for ORT_DYLIB_PATH. graft also looks in the default folder
# itself. Skips the download when the library is already there.
#
# Usage: scripts/fetch-onnxruntime.sh [DIR]   (default: ${GRAFT_CACHE:-~/.cache/graft}/onnxruntime)
set -euo pipefail

version=1.32.0
dir=${1:-${GRAFT_CACHE:-$HOME/.cache/graft}/onnxruntime}
lib=libonnxruntime.so.$version
mkdir -p "$dir"

if [[ ! -f $dir/$lib ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # The .so does not depend on the Python version; pin one so pip picks a single wheel.
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$tmp" "onnxruntime==$version" >&2
    whl=$(ls "$tmp"/onnxruntime-*.whl)
    python3 - "$whl" "$lib" "$dir" <<'PY'
import os, shutil, sys, zipfile
whl, lib, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    with z.open(f"onnxruntime/capi/{lib}") as src, open(os.path.join(out, lib + ".part"), "wb") as dst:
        shutil.copyfileobj(src, dst)
os.replace(os.path.join(out, lib + ".part"), os.path.join(out, lib))
PY
fi
echo "$dir/$lib"
