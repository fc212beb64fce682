#!/usr/bin/env bash
# Optional system tools some tests use; each missing one is installed when run as root
# and reported otherwise (those tests then skip, naming the reason).
#   - Debian's gnuradio (gr-iio PlutoSDR blocks, system python3), no recommends:
#     tests/hardware/test_gnuradio.py, hardware/examples/gr_receive_frame.py
# Set AIRMIX_SKIP_OPTIONAL=1 to skip.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "${AIRMIX_SKIP_OPTIONAL:-0}" = 1 ] && exit 0

if /usr/bin/python3 -c "from gnuradio import iio" 2>/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "[airmix] note: gnuradio (gr-iio) missing; GNU Radio tests will skip." \
        "Install with: sudo apt-get install --no-install-recommends gnuradio" >&2
    exit 0
fi
echo "[airmix] installing Debian gnuradio (no recommends) for the GNU Radio tests" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends gnuradio >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends gnuradio >/dev/null 2>&1 \
        || echo "[airmix] warning: gnuradio could not be installed; GNU Radio tests will skip" >&2
fi
