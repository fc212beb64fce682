#!/usr/bin/env bash
# Create .venv in the checkout and install whatever is missing.
# Order matters: torch==2.13.0 (local CPU wheel) before anything that depends on torch,
# so no CUDA build is pulled from the registry. Debian's libiio0 (+ tools) when root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q 'libiio\.so\.0'; then
    if [ "$(id -u)" = 0 ]; then
        echo "[airmix] installing Debian libiio0 and libiio-utils" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libiio0 libiio-utils >/dev/null
    else
        echo "[airmix] warning: libiio0 missing; run as root or 'sudo apt-get install libiio0 libiio-utils'" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "[airmix] creating .venv" >&2
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "[airmix] installing torch==2.13.0 (CPU)" >&2
    .venv/bin/pip install -q torch==2.13.0
fi
stamp=.venv/.airmix-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[airmix] installing airmix and its dependencies" >&2
    .venv/bin/pip install -q -e ".[dev,live,ray]"
    touch "$stamp"
fi

# optional system tools (GNU Radio for the gr-iio tests)
bash scripts/install_optional.sh
