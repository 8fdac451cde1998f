#!/usr/bin/env bash
# Fetch ONNX Runtime Web's WebAssembly runtime from its npm package (a package registry, never a
# CDN) and print the folder that holds it, for `graft export --format web` (GRAFT_ORT_WEB_DIR).
# graft also looks in the default folder itself. Skips the download when the files are there.
#
# Usage: scripts/fetch-onnxruntime-web.sh [DIR]
#        (default: ${GRAFT_CACHE:-~/.cache/graft}/onnxruntime-web/VERSION)
set -euo pipefail

version=1.31.1
dir=${1:-${GRAFT_CACHE:-$HOME/.cache/graft}/onnxruntime-web/$version}
# The single-threaded WebAssembly build: the UMD script (global `ort`), the module that loads
# the binary, and the binary (SIMD). No WebGPU or WebGL builds: a phone's CPU is enough here.
files=(ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm)

have_all() {
    for f in "${files[@]}"; do [[ -f $dir/$f ]] || return 1; done
}

if ! have_all; then
    command -v npm >/dev/null || {
        echo "npm is needed to fetch onnxruntime-web (Debian: apt-get install npm)" >&2
        exit 1
    }
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "onnxruntime-web@$version" >/dev/null)
    tar -xzf "$tmp/onnxruntime-web-$version.tgz" -C "$tmp"
    for f in "${files[@]}"; do
        cp "$tmp/package/dist/$f" "$dir/$f.part"
        mv "$dir/$f.part" "$dir/$f"
    done
    # Its licence travels with it into every exported folder.
    cp "$tmp/package/package.json" "$dir/package.json"
fi
echo "$dir"
