#!/usr/bin/python3
"""Capture IQ from a PlutoSDR with GNU Radio's PlutoSDR Source (gr-iio), no GUI.

Runs on the Python GNU Radio is installed for (Debian: ``/usr/bin/python3``) and needs
nothing from airmix, so it works the same against a lab Pluto (``ip:192.168.2.1``) and a
virtual one (``airmix virtual-pluto``, ``ip:127.0.0.1:30431``)::

    /usr/bin/python3 hardware/examples/gr_capture.py --uri ip:127.0.0.1:30432 \\
        --lo 915e6 --rate 1e6 --gain 40 --samples 200000 --out capture.npy

Flowgraph: ``fmcomms2_source_fc32`` (RX LO, sample rate, RF bandwidth through
libad9361's automatic FIR, manual gain, tracking loops on) -> throttle at the sample
rate (keeps the source streaming for more than gr-iio's 1 s status-polling start-up)
-> head(skip + samples) -> keep the last ``samples`` -> vector sink; the capture is
saved as complex64 ``(samples,)`` in a ``.npy`` file. Overflows are printed by gr-iio as
``O`` (it polls the ADC core's status register through ``direct_reg_access``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from gnuradio import blocks, gr, iio


class PlutoCapture(gr.top_block):
    """PlutoSDR Source -> throttle -> head -> keep the tail -> vector sink."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("pluto capture")
        rate = int(args.rate)
        self.source = iio.fmcomms2_source_fc32(args.uri, [True, True], args.buffer)
        self.source.set_len_tag_key("packet_len")
        self.source.set_frequency(int(args.lo))
        self.source.set_samplerate(rate)
        self.source.set_gain_mode(0, "manual")
        self.source.set_gain(0, args.gain)
        self.source.set_quadrature(True)
        self.source.set_rfdc(True)
        self.source.set_bbdc(True)
        self.source.set_filter_params("Auto", "", 0, 0)
        total = args.skip + args.samples
        self.throttle = blocks.throttle(gr.sizeof_gr_complex, rate)
        self.head = blocks.head(gr.sizeof_gr_complex, total)
        self.tail = blocks.keep_m_in_n(gr.sizeof_gr_complex, args.samples, total, args.skip)
        self.sink = blocks.vector_sink_c()
        self.connect(self.source, self.throttle, self.head, self.tail, self.sink)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help="libiio URI of the Pluto")
    parser.add_argument("--lo", type=float, default=915e6, help="RX LO, Hz")
    parser.add_argument("--rate", type=float, default=1e6, help="sample rate, S/s")
    parser.add_argument("--gain", type=float, default=40.0, help="manual RX gain, dB")
    parser.add_argument("--samples", type=int, default=200_000, help="samples to keep")
    parser.add_argument(
        "--skip", type=int, default=1_500_000, help="samples to drop first (settling)"
    )
    parser.add_argument("--buffer", type=int, default=32768, help="IIO buffer, samples")
    parser.add_argument("--out", required=True, help="output .npy file")
    args = parser.parse_args(argv)
    if args.samples <= 0 or args.skip < 0 or args.buffer <= 0:
        parser.error("--samples and --buffer must be positive, --skip non-negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flowgraph = PlutoCapture(args)
    flowgraph.run()
    capture = np.array(flowgraph.sink.data(), dtype=np.complex64)
    np.save(args.out, capture)
    print(f"captured {capture.size} samples from {args.uri} -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
