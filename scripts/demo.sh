#!/usr/bin/env bash
# graft's main job, end to end, on the embedded demo data (assets/demo: 1,000 Fashion-MNIST
# images): `graft train assets/demo` audits and splits the folder, fetches the MobileNetV2
# weights, extracts features, sweeps 9 heads and writes an evaluation report; then explains
# the test mistakes and each class (graft explain) and puts that into the report.
# Outputs go to runs/demo/; rerunning skips every stage whose inputs did not change.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p graft-cli
# Ask cargo where it builds (CARGO_TARGET_DIR or a config may move it from ./target).
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
graft=$target_dir/release/graft

# ONNX Runtime makes extraction several times faster; without it graft uses burn and says so.
ort=yes
scripts/fetch-onnxruntime.sh >/dev/null || { ort=; echo "note: ONNX Runtime not fetched; using burn"; }
"$graft" train assets/demo --name demo
# Where the model looked: its test mistakes and each class's mean map (graft explain runs the
# classifier on ONNX Runtime), then the report again, now with an Explanations section.
if [[ -n $ort ]]; then
    "$graft" explain --run runs/demo --misclassified --limit 12
    "$graft" explain --run runs/demo --class-mean
    "$graft" eval --run runs/demo
fi
echo
echo "Open runs/demo/report.html in a browser, or serve the model with a web page:"
echo "  $graft serve --run runs/demo"
