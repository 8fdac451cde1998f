#!/usr/bin/env bash
# Fetch Fashion-MNIST (Zalando Research, MIT licence) from the Debian package
# dataset-fashion-mnist and turn it into ImageFolders of greyscale PNGs with graft:
#   OUT_DIR/train/<class>/<index>.png   60,000 images
#   OUT_DIR/test/<class>/<index>.png    10,000 images
#   OUT_DIR/LICENSE                     the package's copyright file
#
# Usage: scripts/fetch-fashion-mnist.sh [OUT_DIR]
#   OUT_DIR defaults to ${GRAFT_CACHE:-$HOME/.cache/graft}/datasets/fashion-mnist.
#
# Environment:
#   GRAFT_CACHE        cache root (default ~/.cache/graft); the unpacked package goes there
#   FASHION_MNIST_DEB  use this already-downloaded .deb instead of running apt-get download
#   GRAFT_BIN          use this graft binary instead of building one with cargo
#
# No root needed (apt-get download + dpkg -x), except for the one `apt-get update` tried
# when the download fails. Finished steps are skipped on re-runs; delete OUT_DIR (or the
# cache's packages/dataset-fashion-mnist) to redo them.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
case "${1:-}" in
-h | --help)
    usage
    exit 0
    ;;
esac
if [[ $# -gt 1 ]]; then
    usage >&2
    exit 2
fi

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd -- "$script_dir/.." && pwd)
cache_root=${GRAFT_CACHE:-$HOME/.cache/graft}
out_dir=${1:-$cache_root/datasets/fashion-mnist}
pkg=dataset-fashion-mnist
pkg_dir=$cache_root/packages/$pkg
idx_dir=$pkg_dir/usr/share/datasets/fashion-mnist
license_src=$pkg_dir/usr/share/doc/$pkg/copyright
idx_files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

# --- 1. the package, unpacked into the cache ---------------------------------------------
if [[ -e $pkg_dir/.complete ]]; then
    log "package already unpacked in $pkg_dir"
else
    command -v dpkg >/dev/null ||
        die "dpkg not found: this script needs a Debian-based system (or unpack the .deb yourself)"
    mkdir -p -- "$cache_root/packages"
    # Work next to the destination so the final move is a rename, and a kill leaves no half
    # package in place.
    tmp=$(mktemp -d "$cache_root/packages/.$pkg.XXXXXX")
    trap 'rm -rf -- "$tmp"' EXIT
    if [[ -n ${FASHION_MNIST_DEB:-} ]]; then
        deb=$FASHION_MNIST_DEB
        [[ -f $deb ]] || die "FASHION_MNIST_DEB=$deb: no such file"
    else
        command -v apt-get >/dev/null ||
            die "apt-get not found: download the $pkg .deb by hand and set FASHION_MNIST_DEB=/path/to/it.deb"
        log "downloading $pkg with apt-get download"
        if ! (cd -- "$tmp" && apt-get download "$pkg"); then
            log "apt-get download failed; refreshing the package lists once and retrying"
            apt-get update ||
                die "apt-get update failed (as a normal user run 'sudo apt-get update', then this script again)"
            (cd -- "$tmp" && apt-get download "$pkg") ||
                die "apt-get download $pkg failed; check that your apt sources provide it: apt-cache policy $pkg"
        fi
        debs=("$tmp/${pkg}"_*.deb)
        [[ -f ${debs[0]} ]] || die "apt-get download left no $pkg .deb in $tmp"
        deb=${debs[0]}
    fi
    log "unpacking $(basename -- "$deb")"
    dpkg -x "$deb" "$tmp/root"
    for f in "${idx_files[@]}"; do
        [[ -f $tmp/root/usr/share/datasets/fashion-mnist/$f ]] ||
            die "$deb does not contain usr/share/datasets/fashion-mnist/$f"
    done
    rm -rf -- "$pkg_dir"
    mv -- "$tmp/root" "$pkg_dir"
    touch -- "$pkg_dir/.complete"
fi

# --- 2. ImageFolders, one import per part ------------------------------------------------
parts=(train:train test:t10k)
pending=()
for p in "${parts[@]}"; do
    [[ -e $out_dir/.${p%%:*}.complete ]] || pending+=("$p")
done

if [[ ${#pending[@]} -gt 0 ]]; then
    if [[ -n ${GRAFT_BIN:-} ]]; then
        graft=$GRAFT_BIN
    else
        log "building graft (cargo build --release -p graft-cli)"
        (cd -- "$repo_root" && cargo build --release -p graft-cli)
        # Ask cargo where it put the binary: CARGO_TARGET_DIR or a config file may move it.
        target_dir=$(cd -- "$repo_root" && cargo metadata --format-version 1 --no-deps |
            sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
        graft=${target_dir:-$repo_root/target}/release/graft
    fi
    [[ -x $graft ]] || die "graft binary not found at $graft"
    mkdir -p -- "$out_dir"
    for p in "${pending[@]}"; do
        part=${p%%:*}
        prefix=${p#*:}
        log "importing $part ($prefix) into $out_dir/$part"
        "$graft" data import-idx \
            --images "$idx_dir/$prefix-images-idx3-ubyte.gz" \
            --labels "$idx_dir/$prefix-labels-idx1-ubyte.gz" \
            --preset fashion-mnist \
            --out "$out_dir/$part"
        # Written only after the import succeeded, so an interrupted part is redone.
        touch -- "$out_dir/.$part.complete"
    done
else
    log "train and test already imported in $out_dir"
fi

cp -- "$license_src" "$out_dir/LICENSE"

cat <<EOF
Fashion-MNIST is ready in $out_dir
  train/  60,000 images, 10 class folders
  test/   10,000 images, 10 class folders
  LICENSE MIT licence (Zalando SE)
Try: graft data audit $out_dir
EOF
