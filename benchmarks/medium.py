"""Capture throughput of the simulated shared medium (phy.medium) on one core.

Measures how many receiver samples per second ``MediumPort.capture`` produces for
consecutive 65536-sample windows at 20 MS/s with: noise only, one active cyclic
transmitter, eight transmitters (all with the default random oscillator errors, so the
sample-rate-offset path is used), and one transmitter sharing the receiver's reference
(no sample-rate offset: constant fractional delay). Reference: the 20 MS/s a virtual
Pluto streams. Ends with one JSON line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# the repository, not this folder, first: benchmarks/phy.py would shadow the phy package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from figures_line import print_figures  # noqa: E402

from phy.medium import SharedMedium
from phy.rng import make_rng

TARGET_MSPS = 20.0
WINDOW = 1 << 16
FS = 20e6


def _throughput_msps(medium: SharedMedium, rx: str, seconds: float = 1.5) -> float:
    """Best-of-three MS/s of consecutive captures on ``rx`` (each run ~seconds/3)."""
    port = medium.port(rx)
    best, start_s = 0.0, 0.01
    for _ in range(3):
        t0, samples = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds / 3:
            port.capture(start_s, WINDOW)
            start_s += WINDOW / FS
            samples += WINDOW
        best = max(best, samples / (time.perf_counter() - t0) / 1e6)
    return best


def _medium(n_tx: int, shared_reference: bool = False) -> SharedMedium:
    rng = make_rng(0)
    medium = SharedMedium(rng=1, shared_reference=shared_reference)
    medium.add_radio("rx", sample_rate_hz=FS)
    for i in range(n_tx):
        port = medium.add_radio(f"tx{i}", sample_rate_hz=FS)
        x = 0.3 * (rng.standard_normal(20000) + 1j * rng.standard_normal(20000))
        port.transmit(np.clip(x.real, -1, 1) + 1j * np.clip(x.imag, -1, 1), cyclic=True)
    return medium


def main() -> dict[str, float]:
    torch.set_num_threads(1)  # the receiver noise is drawn by torch: measure on one core
    figures = {
        "capture_noise_only_msps": _throughput_msps(_medium(0), "rx"),
        "capture_1tx_msps": _throughput_msps(_medium(1), "rx"),
        "capture_8tx_msps": _throughput_msps(_medium(8), "rx"),
        "capture_1tx_shared_reference_msps": _throughput_msps(_medium(1, True), "rx"),
    }
    for name, value in figures.items():
        print(
            f"{name:36s} {value:7.1f} MS/s   ratio to {TARGET_MSPS:.0f} MS/s target: "
            f"{value / TARGET_MSPS:5.2f}"
        )
    figures["target_msps"] = TARGET_MSPS
    return figures


if __name__ == "__main__":
    result = main()
    print_figures({k: round(v, 2) for k, v in result.items()})
