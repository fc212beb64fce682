#!/usr/bin/env bash
# Debian's chromium and chromium-driver for the live view's browser test
# (tests/orchestrator/test_live_browser.py). Installed only when run as root and missing;
# elsewhere that test skips and says why.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "[airmix] chromium/chromium-driver missing and not root: the browser test will skip" >&2
    exit 0
fi
echo "[airmix] installing Debian chromium and chromium-driver (browser test)" >&2
apt-get update -qq || true
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends chromium chromium-driver >/dev/null \
    || echo "[airmix] could not install chromium: the browser test will skip" >&2
