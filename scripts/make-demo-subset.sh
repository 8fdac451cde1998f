#!/usr/bin/env bash
# Rebuild the embedded demo data, assets/demo/<class>/<test-index>.png: the first 100 images of
# each class of the Fashion-MNIST test set (t10k), in file order, 1,000 greyscale PNGs in all.
#
# Usage: scripts/make-demo-subset.sh [DEMO_DIR]
#   DEMO_DIR defaults to assets/demo in this repository; its LICENSE.md is left alone.
#
# The PNGs come from `graft data import-idx` through scripts/fetch-fashion-mnist.sh (which skips
# work already done); set FASHION_MNIST_DIR to reuse an existing import (default: that script's
# default folder). The result is byte-for-byte reproducible from the same graft version.
set -euo pipefail
export LC_ALL=C # byte-order sorting, whatever the user's locale

case "${1:-}" in
-h | --help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
    ;;
esac

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd -- "$script_dir/.." && pwd)
demo_dir=${1:-$repo_root/assets/demo}
data_dir=${FASHION_MNIST_DIR:-${GRAFT_CACHE:-$HOME/.cache/graft}/datasets/fashion-mnist}
per_class=100
classes=(tshirt_top trouser pullover dress coat sandal shirt sneaker bag ankle_boot)

"$script_dir/fetch-fashion-mnist.sh" "$data_dir" >&2
test_dir=$data_dir/test

mkdir -p -- "$demo_dir"
stage=$(mktemp -d "$demo_dir/.stage.XXXXXX")
trap 'rm -rf -- "$stage"' EXIT

for class in "${classes[@]}"; do
    [[ -d $test_dir/$class ]] || die "$test_dir/$class missing; re-run scripts/fetch-fashion-mnist.sh"
    # Names are zero-padded test-set indices, so sorted order is file order.
    files=("$test_dir/$class"/[0-9]*.png)
    ((${#files[@]} >= per_class)) ||
        die "$test_dir/$class has only ${#files[@]} images, need $per_class"
    mkdir -- "$stage/$class"
    cp -- "${files[@]:0:per_class}" "$stage/$class/"
done

for class in "${classes[@]}"; do
    rm -rf -- "${demo_dir:?}/$class"
    mv -- "$stage/$class" "$demo_dir/$class"
done

total=$(find "$demo_dir" -name '*.png' | wc -l)
[[ $total -eq $((per_class * ${#classes[@]})) ]] || die "$demo_dir holds $total PNGs, expected 1000"
echo "wrote $total images ($per_class per class) to $demo_dir"
