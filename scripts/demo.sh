#!/usr/bin/env bash
# graft's main job, end to end, on the embedded demo data (assets/demo: 1,000 Fashion-MNIST
# images). Today that is: audit the folder, then write a stratified train/val/test manifest.
# Later stages (feature extraction, heads, evaluation) join this script as they land.
# Outputs go to runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p graft-cli
# Ask cargo where it builds (CARGO_TARGET_DIR or a config may move it from ./target).
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
graft=$target_dir/release/graft
out=runs/demo
mkdir -p "$out"

"$graft" data audit assets/demo --json "$out/audit.json" --plot "$out/classes.png"
"$graft" data split assets/demo --ratios 70/15/15 --seed 42 --out "$out/manifest.csv"

# ONNX Runtime makes extraction several times faster; without it graft uses burn and says so.
scripts/fetch-onnxruntime.sh >/dev/null || echo "note: ONNX Runtime not fetched; using burn"
"$graft" models fetch mobilenet-v2
"$graft" extract --data "$out/manifest.csv" --encoder mobilenet-v2 --out "$out/features"
echo
echo "Done. Open $out/classes.png, $out/audit.json, $out/manifest.csv; features in $out/features/."
