#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the end-to-end demo on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/monosemantic demo "$@"
