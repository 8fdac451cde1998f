#!/usr/bin/env bash
# Install a real MLflow tracking server (PyPI `mlflow`) into its own virtual environment and
# print the path of its `mlflow` command, for GRAFT_TEST_MLFLOW: the tracking tests start it on
# 127.0.0.1 with a SQLite backend and a local artifact root, and stop it. graft itself never
# needs Python; this is the server our users run. Skips the install when it is already there.
#
# Pinned to 3.17.2: mlflow==3.18.0 does not install (its mlflow-skinny==3.18.0 is not published).
#
# Usage: scripts/fetch-mlflow.sh [DIR]   (default: ${GRAFT_CACHE:-~/.cache/graft}/mlflow-VERSION)
set -euo pipefail

version=3.17.2
dir=${1:-${GRAFT_CACHE:-$HOME/.cache/graft}/mlflow-$version}

if ! "$dir/bin/mlflow" --version >/dev/null 2>&1; then
    rm -rf "$dir"
    python3 -m venv "$dir" >&2
    "$dir/bin/pip" install --quiet --disable-pip-version-check "mlflow==$version" >&2
fi
echo "$dir/bin/mlflow"
