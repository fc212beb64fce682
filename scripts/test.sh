#!/usr/bin/env bash
# Test command: set up if needed, lint + format check, then the default test suite.
# Extra args go to pytest (e.g. `-m slow`, `-k power`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/install_browser.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
