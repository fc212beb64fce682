"""Benchmark: streaming throughput of a virtual Pluto through ``adi.Pluto.rx()``.

Target: 20 MS/s (four times a real Pluto's ~5 MS/s USB 2.0 ceiling). A transmitting
virtual Pluto keeps a cyclic tone on the air so the receiver renders real signal, not
only noise. Also runs the closed-loop OTA mixup (4 users + 1 receiver, +-25 ppm, random
start latency) on virtual Plutos with the closed loop and on SimRadio with genie-aided
synchronization (same seeded medium) and prints the MSE difference (target: within
1 dB). Ends with one JSON line.

Run: ``.venv/bin/python benchmarks/virtual_pluto.py [--seconds 3] [--buffer 262144]``
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

# the repository, not this folder, first: benchmarks/phy.py would shadow the phy package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import adi
import numpy as np

from hardware.hil import ota_mse_pair_db
from hardware.virtual_pluto import VirtualPlutoLab

TARGET_MSPS = 20.0
REAL_PLUTO_USB_MSPS = 5.0


def rx_throughput_msps(seconds: float, buffer_size: int, sample_rate: int) -> float:
    """Receive for about ``seconds`` and return the sample rate achieved, MS/s."""
    with VirtualPlutoLab(2, seed=0, channel_model="awgn", medium_name=None) as lab:
        tx, rx = adi.Pluto(lab.uris[0]), adi.Pluto(lab.uris[1])
        for sdr in (tx, rx):
            sdr.sample_rate = sample_rate
            sdr.rx_lo = sdr.tx_lo = 915_000_000
        tone = 0.5 * np.exp(2j * np.pi * np.arange(4096) * 100 / 4096) * 2**15
        tx.tx_cyclic_buffer = True
        tx.tx(tone)
        rx.rx_buffer_size = buffer_size
        rx.rx()  # open the buffer, warm caches
        samples = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            samples += rx.rx().size
        elapsed = time.perf_counter() - start
        tx.tx_destroy_buffer()
        del tx, rx
        gc.collect()  # close the libiio buffers while the servers still run
    return samples / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--buffer", type=int, default=1 << 18, help="rx_buffer_size, samples")
    parser.add_argument("--rate", type=int, default=30_720_000, help="sample rate, S/s")
    args = parser.parse_args()
    msps = rx_throughput_msps(args.seconds, args.buffer, args.rate)
    ratio = msps / TARGET_MSPS
    print(f"adi.Pluto.rx() throughput: {msps:.2f} MS/s (buffer {args.buffer} samples)")
    print(f"  over the {TARGET_MSPS:.0f} MS/s target: {ratio:.2f}x")
    print(f"  over a real Pluto's ~{REAL_PLUTO_USB_MSPS:.0f} MS/s USB ceiling: "
          f"{msps / REAL_PLUTO_USB_MSPS:.2f}x")  # fmt: skip
    pluto_db, sim_db = ota_mse_pair_db()
    print(
        f"OTA mixup MSE: virtual Plutos (closed loop) {pluto_db:.2f} dB, "
        f"SimRadio (genie) {sim_db:.2f} dB"
    )
    print(f"  virtual Pluto over genie-aided SimRadio: {pluto_db - sim_db:+.2f} dB (target < 1 dB)")
    print(
        json.dumps(
            {
                "rx_throughput_msps": round(msps, 3),
                "rx_throughput_over_target": round(ratio, 3),
                "buffer_samples": args.buffer,
                "ota_mse_virtual_pluto_db": round(pluto_db, 3),
                "ota_mse_simradio_db": round(sim_db, 3),
                "alignment_mse_over_genie_db": round(pluto_db - sim_db, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
