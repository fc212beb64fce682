"""PHY benchmark: closed-loop OTA mixup of 8 users on the simulated medium (Rayleigh,
+-25 ppm at 915 MHz, 1 MS/s, random start latency up to 2 ms).

Per SNR (10, 20, 30 dB; defined in :mod:`orchestrator.phy_demo`): measured MSE over the
closed-form optimum for the true channel, over the genie-aided loop's MSE, timing and
CFO RMS errors of the acquisition and the CFO error over its Cramer-Rao bound; then the
receive-chain throughput (detection + sync + estimation + demodulation) on a long
capture, and bad-input checks. Ends with one JSON line.

Run: ``.venv/bin/python benchmarks/phy.py``
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

# this script is named like the ``phy`` package: keep its own folder off the import path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402

from orchestrator.phy_demo import build_sim_testbed  # noqa: E402
from phy.estimation import estimate_user_link  # noqa: E402
from phy.ota import estimate_mixup, pilot_buffer  # noqa: E402
from phy.rng import make_rng, spawn  # noqa: E402
from phy.sync import cfo_crb_hz, detect_frames  # noqa: E402
from phy.waveform import (  # noqa: E402
    OfdmConfig,
    data_subcarriers,
    frame_length,
    modulate,
    symbols_to_payload,
)

SNRS = (10.0, 20.0, 30.0)
USERS = 8
TRIALS = 4
N_REALS = 1920


def link_figures(snr_db: float, rng: np.random.Generator) -> dict[str, float]:
    mse, genie, optimum = [], [], []
    t_err, f_err, crb = [], [], []
    for trial_rng in spawn(rng, TRIALS):
        bed_rng, data_rng = spawn(trial_rng, 2)
        bed = build_sim_testbed(snr_db, USERS, bed_rng)
        try:
            s = bed.session
            est = s.acquire()
            for e in est:
                t = s.truth(e.user, e.capture_clock)
                if e.gain == 0:
                    continue  # undetected (deep fade); counted in the MSE, not here
                t_err.append(e.delay_samples - t.delay_samples)
                f_err.append(e.cfo_hz - t.cfo_hz)
                snr_sample = 10 ** (t.snr_db / 10) * bed.config.used_bins.size / bed.config.n_fft
                n_obs = max(2, int(s.acquire_len - t.delay_samples))
                crb.append(cfo_crb_hz(snr_sample, n_obs, bed.config.sample_rate_hz))
            x = data_rng.standard_normal((USERS, N_REALS))
            w = np.full(USERS, 1.0 / USERS)
            r = s.mixup(x, w)
            g = s.mixup(x, w, genie=True)
        finally:
            bed.close()
        mse.append(r.mse_vs_target)
        genie.append(g.mse_vs_target)
        optimum.append(r.closed_form_mse)
    cfo_rms = float(np.sqrt(np.mean(np.square(f_err))))
    return {
        "mse": float(np.mean(mse)),
        "genie": float(np.mean(genie)),
        "optimum": float(np.mean(optimum)),
        "timing_rms": float(np.sqrt(np.mean(np.square(t_err)))),
        "cfo_rms_hz": cfo_rms,
        "crb_rms_hz": float(np.sqrt(np.mean(np.square(crb)))),
    }


def rx_throughput(rng: np.random.Generator) -> float:
    """Samples per second through detection + sync + demodulation of a 2^20-sample
    capture holding payload frames, plus link estimation of a 16384-sample pilot."""
    c = OfdmConfig()
    n_reals = 960
    n = 1 << 20
    frame = modulate(rng.standard_normal(n_reals), c)
    step = frame.size + 500
    x = np.zeros(n, complex)
    for start in range(200, n - step, step):
        x[start : start + frame.size] = frame
    x = x * np.exp(2j * np.pi * 0.003 * np.arange(n))
    x += 0.01 * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    pilot = np.tile(pilot_buffer(0, 1, c), 5)[:16384] * 0.5
    pilot = np.r_[np.zeros(700), pilot][:16384] + 0.01 * rng.standard_normal(16384)
    t0 = time.perf_counter()
    dets = detect_frames(x, c)
    length = frame_length(n_reals, c)
    for d in dets:
        s = int(round(d.start))
        if s + length <= n:
            seg = x[s : s + length] * np.exp(
                -2j * np.pi * d.cfo_hz / c.sample_rate_hz * np.arange(length)
            )
            symbols_to_payload(data_subcarriers(seg, n_reals, c), n_reals, c)
    estimate_user_link(pilot, 0, c, carrier_hz=915e6)
    elapsed = time.perf_counter() - t0
    assert len(dets) >= (n - step) // step - 1, "benchmark capture: frames were missed"
    return (n + pilot.size) / elapsed / 1e6


def bad_input_checks() -> bool:
    c = OfdmConfig()
    cases = [
        lambda: modulate(np.array([1.0, np.nan]), c),
        lambda: modulate(np.ones((2, 2)), c),
        lambda: detect_frames(np.full(10, np.nan), c),
        lambda: estimate_mixup(np.zeros(5000), 1.0, 96, c),
        lambda: cfo_crb_hz(-1.0, 100, 1e6),
        lambda: OfdmConfig(amplitude=-0.1),
    ]
    for case in cases:
        try:
            case()
        except ValueError:
            continue
        return False
    return True


def main() -> None:
    rng = make_rng(2024)
    link_rng, rx_rng = spawn(rng, 2)
    spacing = OfdmConfig().subcarrier_spacing_hz
    res = {
        "snr_db": list(SNRS),
        "mse": [],
        "mse_over_optimum": [],
        "mse_over_genie_db": [],
        "timing_rms_samples": [],
        "cfo_rms_hz": [],
        "cfo_rms_over_spacing": [],
        "cfo_over_crb": [],
    }
    for snr, r in zip(SNRS, spawn(link_rng, len(SNRS)), strict=True):
        f = link_figures(snr, r)
        res["mse"].append(f["mse"])
        res["mse_over_optimum"].append(f["mse"] / f["optimum"])
        res["mse_over_genie_db"].append(10 * math.log10(f["mse"] / f["genie"]))
        res["timing_rms_samples"].append(f["timing_rms"])
        res["cfo_rms_hz"].append(f["cfo_rms_hz"])
        res["cfo_rms_over_spacing"].append(f["cfo_rms_hz"] / spacing)
        res["cfo_over_crb"].append(f["cfo_rms_hz"] / f["crb_rms_hz"])
        print(
            f"SNR {snr:4.0f} dB: MSE {f['mse']:.3e} = {f['mse'] / f['optimum']:.3f} x optimum, "
            f"{10 * math.log10(f['mse'] / f['genie']):+.2f} dB vs genie; timing RMS "
            f"{f['timing_rms']:.4f} samples; CFO RMS {f['cfo_rms_hz']:.4f} Hz = "
            f"{f['cfo_rms_hz'] / spacing:.2e} of spacing = {f['cfo_rms_hz'] / f['crb_rms_hz']:.2f}"
            " x CRB",
            flush=True,
        )
    tp = rx_throughput(rx_rng)
    print(f"receive chain: {tp:.1f} MS/s per core (target 25 MS/s: ratio {tp / 25:.2f})")
    ok = bad_input_checks()
    print(f"bad input (NaN, wrong shapes, negative power/amplitude) raises: {ok}")
    res["rx_throughput_msps_per_core"] = tp
    res["bad_input_raises"] = ok
    print(json.dumps(res))


if __name__ == "__main__":
    main()
