"""PHY benchmark: closed-loop OTA mixup of 8 users on the simulated medium (Rayleigh,
+-25 ppm at 915 MHz, 1 MS/s, random start latency up to 2 ms).

Per SNR (10, 20, 30 dB; defined in :mod:`studies.phy_demo`): measured MSE over the
closed-form optimum for the true channel, over the genie-aided loop's MSE, timing and
CFO RMS errors of the acquisition, and both errors over their Cramer-Rao bounds derived
per user for what its estimator saw (:mod:`phy.bounds`), with a 95% bootstrap interval
over fading draws (``cfo_over_crb``, ``timing_over_crb`` and their ``_ci``); then the
receive-chain throughput (detection + sync + estimation + demodulation) on a long
capture, and bad-input checks. Ends with one JSON line.

Run: ``.venv/bin/python benchmarks/phy.py [--trials N]`` (fading draws per SNR, default 8)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

# this script is named like the ``phy`` package: keep its own folder off the import path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
from figures_line import print_figures  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from phy.bounds import (  # noqa: E402
    cfo_crb_pilot_hz,
    delay_crb_pilot_samples,
    pilot_block_starts,
)
from phy.estimation import estimate_user_link  # noqa: E402
from phy.ota import estimate_mixup, pilot_buffer  # noqa: E402
from phy.rng import make_rng, spawn  # noqa: E402
from phy.sync import cfo_crb_hz, detect_frame_arrays, detect_frames  # noqa: E402
from phy.waveform import (  # noqa: E402
    OfdmConfig,
    demodulate_frames,
    frame_blocks,
    frame_length,
    modulate,
    render_blocks,
)
from studies.phy_demo import build_sim_testbed  # noqa: E402

SNRS = (10.0, 20.0, 30.0)
USERS = 8
TRIALS = 8
N_REALS = 1920


def ratio_with_interval(
    z_per_draw: list[np.ndarray], rng: np.random.Generator, resamples: int = 2000
) -> tuple[float, float, float]:
    """RMS of the normalised errors ``z`` (error / its per-user CRB) and its 95%
    percentile-bootstrap interval, resampling whole fading draws (users of one draw
    share a medium, so draws are the independent units)."""
    draws = [z for z in z_per_draw if z.size]
    if not draws:
        return math.nan, math.nan, math.nan
    sums = np.array([np.sum(z**2) for z in draws])
    counts = np.array([z.size for z in draws])
    pick = rng.integers(0, len(draws), (resamples, len(draws)))
    boot = np.sqrt(sums[pick].sum(axis=1) / counts[pick].sum(axis=1))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(np.sqrt(sums.sum() / counts.sum())), float(lo), float(hi)


def link_figures(snr_db: float, rng: np.random.Generator, trials: int = TRIALS) -> dict[str, float]:
    """Per SNR: MSE against the optimum and the genie; timing and CFO errors of the
    acquisition, each user's error divided by *its own* Cramér-Rao bound
    (:mod:`phy.bounds`: the long pilot blocks its estimator used, from its true delay to
    the end of the capture, at its true per-subcarrier SNR), RMS over users and draws
    with a bootstrap interval over draws (:func:`ratio_with_interval`)."""
    mse, genie, optimum = [], [], []
    t_err, f_err, z_cfo, z_timing = [], [], [], []
    undetected = 0
    for trial_rng in spawn(rng, trials):
        bed_rng, data_rng = spawn(trial_rng, 2)
        bed = build_sim_testbed(snr_db, USERS, bed_rng)
        z_f, z_t = [], []
        try:
            s = bed.session
            est = s.acquire()
            capture = s.rx.acquire_len
            for e in est:
                t = s.truth(e.user, e.capture_clock)
                if e.gain == 0:
                    undetected += 1
                    continue  # undetected (deep fade); counted in the MSE, not here
                t_err.append(e.delay_samples - t.delay_samples)
                f_err.append(e.cfo_hz - t.cfo_hz)
                snr = 10 ** (t.snr_db / 10)
                starts = pilot_block_starts(capture, t.delay_samples, bed.config)
                z_f.append(f_err[-1] / cfo_crb_pilot_hz(snr, starts, bed.config))
                z_t.append(t_err[-1] / delay_crb_pilot_samples(snr, starts.size, bed.config))
            x = data_rng.standard_normal((USERS, N_REALS))
            w = np.full(USERS, 1.0 / USERS)
            r = s.mixup(x, w)
            g = s.mixup(x, w, genie=True)
        finally:
            bed.close()
        z_cfo.append(np.array(z_f))
        z_timing.append(np.array(z_t))
        mse.append(r.mse_vs_target)
        genie.append(g.mse_vs_target)
        optimum.append(r.closed_form_mse)
    boot = make_rng(int(snr_db * 1000) + trials)
    return {
        "mse": float(np.mean(mse)),
        "genie": float(np.mean(genie)),
        "optimum": float(np.mean(optimum)),
        "timing_rms": float(np.sqrt(np.mean(np.square(t_err)))),
        "cfo_rms_hz": float(np.sqrt(np.mean(np.square(f_err)))),
        "cfo_over_crb": ratio_with_interval(z_cfo, boot),
        "timing_over_crb": ratio_with_interval(z_timing, boot),
        "undetected": undetected,
        "over_1db": int(np.sum(np.array(mse) > 10**0.1 * np.array(genie))),
    }


def rx_capture(
    rng: np.random.Generator, n: int = 1 << 20, n_reals: int = 960, snr_db: float = 20.0
):
    """A ``n``-sample capture packed with payload frames (gap 500 samples), each with its
    own payload, fractional start, CFO (+-40 kHz), complex gain (magnitude 0.5..1) and
    AWGN at ``snr_db`` per sample for unit gain. Returns ``(x, truth)``, truth a dict of
    per-frame arrays ``start``, ``cfo_hz``, ``gain``, ``payload`` ``(n_frames, n_reals)``
    and the per-real noise variance ``noise_var`` ``(n_frames,)`` after equalisation."""
    c = OfdmConfig()
    length = frame_length(n_reals, c)
    starts = np.arange(200, n - length - 1, length + 500).astype(float)
    n_f = starts.size
    starts += rng.uniform(0, 1, n_f)
    payload = rng.standard_normal((n_f, n_reals))
    cfo = rng.uniform(-40e3, 40e3, n_f)
    gain = rng.uniform(0.5, 1.0, n_f) * np.exp(2j * np.pi * rng.uniform(size=n_f))
    x = np.zeros(n, complex)
    for k in range(n_f):
        i = int(math.floor(starts[k]))
        blocks = frame_blocks(payload[k], c)
        y = render_blocks(blocks, c, np.full(len(blocks), starts[k] - i))
        idx = i + np.arange(y.size)
        x[idx] = gain[k] * y * np.exp(2j * np.pi * cfo[k] / c.sample_rate_hz * idx)
    noise_power = c.amplitude**2 / 10 ** (snr_db / 10)
    x += np.sqrt(noise_power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    # per-real error variance after equalisation: noise per subcarrier symbol / |g|^2
    noise_var = noise_power / c.scale**2 / np.abs(gain) ** 2
    truth = {"start": starts, "cfo_hz": cfo, "gain": gain, "payload": payload}
    return x, {**truth, "noise_var": noise_var}


def rx_throughput(rng: np.random.Generator, repeats: int = 5) -> dict[str, float]:
    """Receive-chain throughput on one core: detection + sync (timing, CFO, gain) +
    batched demodulation and equalisation of a 2^20-sample capture packed with payload
    frames (:func:`rx_capture`), plus link estimation of a 16384-sample cyclic pilot
    capture. Per core: samples per second = (2^20 + 16384) / median CPU time of this
    thread over ``repeats`` runs after one warm-up, BLAS/OpenMP pools limited to one
    thread (numpy's FFT is single-threaded), so other processes sharing the machine do
    not distort it; the wall-clock rate is reported too. Checks every frame is
    found with its timing and CFO and that the payload MSE is near the noise floor."""
    c = OfdmConfig()
    n_reals = 960
    x, truth = rx_capture(rng, n_reals=n_reals)
    n_p = 16384
    pilot = np.tile(pilot_buffer(0, 1, c), 5)[:n_p] * 0.5
    pilot = np.r_[np.zeros(700), pilot][:n_p] + 0.01 * rng.standard_normal(n_p)

    def chain():
        det = detect_frame_arrays(x, c)
        ok = np.rint(det.start) + frame_length(n_reals, c) <= x.size
        payloads = demodulate_frames(
            x, det.start[ok], n_reals, c, cfo_hz=det.cfo_hz[ok], gains=det.gain[ok]
        )
        link = estimate_user_link(pilot, 0, c, carrier_hz=915e6)
        return det, payloads, link

    cpu, wall = [], []
    with threadpool_limits(limits=1):
        chain()
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.thread_time()
            det, payloads, link = chain()
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - t0)
    n_f = truth["start"].size
    assert len(det) == n_f == payloads.shape[0], f"found {len(det)} of {n_f} frames"
    t_err = det.start - truth["start"]
    f_err = det.cfo_hz - truth["cfo_hz"]
    assert np.max(np.abs(t_err)) < 0.25, "benchmark capture: timing error"
    assert np.max(np.abs(f_err)) < 0.02 * c.subcarrier_spacing_hz, "benchmark capture: CFO"
    mse = np.mean((payloads - truth["payload"]) ** 2, axis=1)
    floor = truth["noise_var"]
    assert np.mean(mse) < 1.5 * np.mean(floor), "benchmark capture: payload MSE too high"
    assert abs(link.delay_samples - 700) < 0.1, "benchmark pilot: delay"
    return {
        "msps": (x.size + n_p) / float(np.median(cpu)) / 1e6,
        "msps_wall": (x.size + n_p) / float(np.median(wall)) / 1e6,
        "frames": n_f,
        "mse_over_floor": float(np.mean(mse) / np.mean(floor)),
        "timing_rms": float(np.sqrt(np.mean(t_err**2))),
        "cfo_rms_hz": float(np.sqrt(np.mean(f_err**2))),
    }


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=TRIALS, help="fading draws per SNR")
    args = parser.parse_args()
    if args.trials < 1:
        raise SystemExit("--trials must be >= 1")
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
        "cfo_over_crb_ci": [],
        "timing_over_crb": [],
        "timing_over_crb_ci": [],
        "crb_interval": "95% percentile bootstrap over fading draws",
        "undetected_users": [],
        "draws_over_1db": [],
        "trials": args.trials,
    }
    for snr, r in zip(SNRS, spawn(link_rng, len(SNRS)), strict=True):
        f = link_figures(snr, r, args.trials)
        res["mse"].append(f["mse"])
        res["mse_over_optimum"].append(f["mse"] / f["optimum"])
        res["mse_over_genie_db"].append(10 * math.log10(f["mse"] / f["genie"]))
        res["timing_rms_samples"].append(f["timing_rms"])
        res["cfo_rms_hz"].append(f["cfo_rms_hz"])
        res["cfo_rms_over_spacing"].append(f["cfo_rms_hz"] / spacing)
        cfo_ratio, cfo_lo, cfo_hi = f["cfo_over_crb"]
        timing_ratio, timing_lo, timing_hi = f["timing_over_crb"]
        res["cfo_over_crb"].append(cfo_ratio)
        res["cfo_over_crb_ci"].append([cfo_lo, cfo_hi])
        res["timing_over_crb"].append(timing_ratio)
        res["timing_over_crb_ci"].append([timing_lo, timing_hi])
        res["undetected_users"].append(f["undetected"])
        res["draws_over_1db"].append(f["over_1db"])
        print(
            f"SNR {snr:4.0f} dB: MSE {f['mse']:.3e} = {f['mse'] / f['optimum']:.3f} x optimum, "
            f"{10 * math.log10(f['mse'] / f['genie']):+.2f} dB vs genie; timing RMS "
            f"{f['timing_rms']:.4f} samples = {timing_ratio:.2f} x CRB "
            f"[{timing_lo:.2f}, {timing_hi:.2f}]; CFO RMS {f['cfo_rms_hz']:.4f} Hz = "
            f"{f['cfo_rms_hz'] / spacing:.2e} of spacing = {cfo_ratio:.2f} x CRB "
            f"[{cfo_lo:.2f}, {cfo_hi:.2f}] (per-user bounds, 95% bootstrap over draws); "
            f"{f['undetected']} of {USERS * args.trials} users undetected, "
            f"{f['over_1db']} of {args.trials} draws > 1 dB over genie",
            flush=True,
        )
    rx = rx_throughput(rx_rng)
    tp = rx["msps"]
    print(
        f"receive chain: {tp:.1f} MS/s per core (target 25 MS/s: ratio {tp / 25:.2f}; "
        f"wall clock {rx['msps_wall']:.1f} MS/s); "
        f"{rx['frames']} frames at 20 dB, payload MSE {rx['mse_over_floor']:.2f} x noise "
        f"floor, timing RMS {rx['timing_rms']:.3f} samples, CFO RMS {rx['cfo_rms_hz']:.1f} Hz"
    )
    ok = bad_input_checks()
    print(f"bad input (NaN, wrong shapes, negative power/amplitude) raises: {ok}")
    res["rx_throughput_msps_per_core"] = tp
    res["rx_throughput_msps_wall"] = rx["msps_wall"]
    res["rx_payload_mse_over_noise_floor"] = rx["mse_over_floor"]
    res["bad_input_raises"] = ok
    print_figures(res)


if __name__ == "__main__":
    main()
