#!/usr/bin/env bash
# Install kubernetes-validate (PyPI; it ships Kubernetes' JSON schemas, so it checks manifests
# offline) into its own virtual environment and print the path of its command, for
# GRAFT_TEST_K8S_VALIDATE: the tests check the manifests `graft cluster k8s` writes against
# the Kubernetes schema. Skips the install when it is already there.
#
# Usage: scripts/fetch-k8s-validate.sh [DIR]
#        (default: ${GRAFT_CACHE:-~/.cache/graft}/kubernetes-validate-VERSION)
set -euo pipefail

version=1.37.0
dir=${1:-${GRAFT_CACHE:-$HOME/.cache/graft}/kubernetes-validate-$version}

if ! "$dir/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    rm -rf "$dir"
    python3 -m venv "$dir" >&2
    "$dir/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version" >&2
fi
echo "$dir/bin/kubernetes-validate"
