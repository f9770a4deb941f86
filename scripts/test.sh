#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MONOSEMANTIC_QUIET=1 .venv/bin/python -m pytest -q tests "$@"
