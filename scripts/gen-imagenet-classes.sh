#!/usr/bin/env bash
# Regenerate crates/graft-model/assets/imagenet_classes.txt: the 1000 ImageNet class names in
# torchvision's label order, taken from `_IMAGENET_CATEGORIES` in the torchvision wheel
# (read as text with `ast`, nothing is imported or executed). Needs python3 + pip.
#
# Usage: scripts/gen-imagenet-classes.sh [OUT]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/crates/graft-model/assets/imagenet_classes.txt}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A small CPU-only-sized wheel; the class list has not changed across releases.
python3 -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --platform manylinux1_x86_64 -d "$tmp" torchvision==0.20.1 >&2
python3 - "$tmp"/torchvision-*.whl "$out" <<'PY'
import ast, sys, zipfile
whl, out = sys.argv[1:]
src = zipfile.ZipFile(whl).read("torchvision/models/_meta.py").decode()
for node in ast.parse(src).body:
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_IMAGENET_CATEGORIES":
        names = ast.literal_eval(node.value)
        break
else:
    sys.exit("_IMAGENET_CATEGORIES not found in torchvision/models/_meta.py")
assert len(names) == 1000, len(names)
with open(out, "w") as f:
    f.write("\n".join(names) + "\n")
print(f"wrote {len(names)} class names to {out}", file=sys.stderr)
PY
