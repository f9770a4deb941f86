#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then lint (ruff) and type-check (pyright, basic mode).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
# -p: the project's own settings, never a pyrightconfig.json found in a parent folder.
.venv/bin/pyright -p pyproject.toml src
