#!/usr/bin/env bash
# Main job: set up if needed, then run the default experiment (extra args go to `airmix run`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/airmix run "$@"
