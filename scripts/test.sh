#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser tests drive Debian's Chromium (Playwright's own browser download needs network
# access to its CDN). Install it when missing and we may (root, apt-get present).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
MONOSEMANTIC_QUIET=1 .venv/bin/python -m pytest -q tests "$@"
