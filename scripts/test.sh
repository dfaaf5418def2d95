#!/usr/bin/env bash
# Set up this machine (as scripts/setup.sh) with the test extras and what only the tests need
# (scripts/test-setup.sh: container runtimes and image tools), lint (ruff) and type-check (mypy),
# then run the whole suite.
# FALCONET_STRICT=1: an eBPF or real-runtime test that cannot run here fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
FALCONET_EXTRAS=test scripts/setup.sh
scripts/test-setup.sh
.venv/bin/ruff check sensor tests bench
.venv/bin/mypy
export FALCONET_STRICT=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
