#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if [ "$(id -u)" = "0" ]; then
    sh .ci/install-toolchains.sh
else
    echo "not root: skipping the guest toolchain install (C and AssemblyScript agents)" >&2
fi
.venv/bin/ruff check workbench tests benchmarks examples scripts
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
