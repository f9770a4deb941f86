#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then lint (ruff) and type-check (pyright, basic mode).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/pyright
