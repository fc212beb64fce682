"""Look at the air with GNU Radio: receive a user's over-the-air frame from a virtual Pluto.

One virtual Pluto plays a user: it transmits an airmix OFDM frame (a random analog
payload of ``--reals`` reals, :func:`phy.waveform.modulate`) as a cyclic buffer through
pyadi-iio, as a user node does. A second Pluto is the receiver, read by GNU Radio's
PlutoSDR Source in ``gr_capture.py`` (run on the Python GNU Radio is installed for). The
capture is then searched for the frame (:func:`phy.sync.detect_frames`: start, CFO,
complex gain) and the payload is demodulated and compared with what was sent.

Run it (needs Debian's gnuradio; ``scripts/install_optional.sh`` installs it as root)::

    .venv/bin/python hardware/examples/gr_receive_frame.py
    # against running radios instead of its own two virtual Plutos:
    airmix virtual-pluto --radios 2 &
    .venv/bin/python hardware/examples/gr_receive_frame.py \\
        --user ip:127.0.0.1:30431 --receiver ip:127.0.0.1:30432

Prints the detection and the payload's NMSE in dB; exits 0 when the frame was found.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from phy.sync import detect_frames
from phy.waveform import OfdmConfig, demodulate_frames, modulate

GR_PYTHON = "/usr/bin/python3"
CAPTURE_SCRIPT = Path(__file__).with_name("gr_capture.py")
DAC_FULL_SCALE = 2**15


@contextlib.contextmanager
def _radios(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """The (user, receiver) URIs: given ones, or two virtual Plutos started here."""
    if args.user and args.receiver:
        yield args.user, args.receiver
        return
    from hardware.virtual_pluto import VirtualPlutoLab

    with VirtualPlutoLab(2, seed=args.seed, channel_model="awgn", medium_name=None) as lab:
        yield lab.uris[0], lab.uris[1]


def transmit_frame(uri: str, frame: np.ndarray, args: argparse.Namespace):
    """The user's side: the frame (complex, full scale 1.0) plus a silent gap, cyclic."""
    import adi

    user = adi.Pluto(uri)
    user.sample_rate = int(args.rate)
    user.tx_lo = int(args.lo)
    user.tx_rf_bandwidth = int(args.rate)
    user.tx_hardwaregain_chan0 = -10
    burst = np.concatenate([frame, np.zeros(args.gap, np.complex64)])
    user.tx_cyclic_buffer = True
    user.tx(burst * DAC_FULL_SCALE)
    return user


def capture(uri: str, out: Path, args: argparse.Namespace) -> np.ndarray:
    """GNU Radio's PlutoSDR Source, in the Python GNU Radio runs on."""
    cmd = [GR_PYTHON, str(CAPTURE_SCRIPT), "--uri", uri, "--out", str(out)]
    cmd += ["--lo", str(args.lo), "--rate", str(args.rate), "--gain", str(args.gain)]
    cmd += ["--samples", str(args.samples)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode:
        raise RuntimeError(f"GNU Radio capture failed ({result.returncode}): {result.stderr}")
    return np.load(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", help="URI of the transmitting Pluto")
    parser.add_argument("--receiver", help="URI of the Pluto GNU Radio reads")
    parser.add_argument("--lo", type=float, default=915e6, help="LO, Hz")
    parser.add_argument("--rate", type=float, default=1e6, help="sample rate, S/s")
    parser.add_argument("--gain", type=float, default=40.0, help="receiver gain, dB")
    parser.add_argument("--reals", type=int, default=512, help="payload reals per frame")
    parser.add_argument("--gap", type=int, default=3000, help="silent samples after it")
    parser.add_argument("--samples", type=int, default=60_000, help="samples to capture")
    parser.add_argument("--seed", type=int, default=0, help="payload and medium seed")
    args = parser.parse_args(argv)
    if bool(args.user) != bool(args.receiver):
        parser.error("give both --user and --receiver, or neither")
    if not Path(GR_PYTHON).exists():
        print(f"{GR_PYTHON} not found: GNU Radio runs on Debian's Python", file=sys.stderr)
        return 2

    config = OfdmConfig(sample_rate_hz=args.rate)
    payload = np.random.default_rng(args.seed).standard_normal(args.reals)
    frame = modulate(payload, config)
    with _radios(args) as (user_uri, rx_uri), tempfile.TemporaryDirectory() as tmp:
        user = transmit_frame(user_uri, frame, args)
        x = capture(rx_uri, Path(tmp) / "capture.npy", args)
        del user
    found = detect_frames(x, config)
    print(f"GNU Radio captured {x.size} samples; frames detected: {len(found)}")
    if not found:
        return 1
    first = found[0]
    estimate = demodulate_frames(
        x,
        np.array([first.start]),
        args.reals,
        config,
        cfo_hz=np.array([first.cfo_hz]),
        gains=np.array([first.gain]),
    )[0]
    nmse_db = 10 * np.log10(np.mean((estimate - payload) ** 2) / np.mean(payload**2))
    print(
        f"frame at sample {first.start:.1f}, CFO {first.cfo_hz:+.1f} Hz, "
        f"correlation {first.correlation:.3f}, payload NMSE {nmse_db:.1f} dB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
