#!/usr/bin/env bash
# Set up ./.venv with the test tools, then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
if [ -x "${SNNSE_CHROMIUM:-/usr/bin/chromium}" ] && .venv/bin/python -c "import playwright" 2>/dev/null; then
  echo "browser tests: with ${SNNSE_CHROMIUM:-/usr/bin/chromium}"
else
  echo "browser tests: SKIPPED (no Chromium at ${SNNSE_CHROMIUM:-/usr/bin/chromium}, or no Playwright); apt-get install chromium to run them" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
