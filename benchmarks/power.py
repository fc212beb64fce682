"""Benchmark of phy.power: closed-form MMSE scaling vs. a numerical optimum, baselines, speed.

1000 random instances, K = 8 users, Rayleigh block fading, mixed per-user power limits
(0.25, 1 or 4), Dirichlet(1) mixup weights, SNR 0..20 dB. Prints

* closed-form MSE / numerical (SLSQP, random restarts) optimum on a subset of 50,
* channel inversion's and AirMixML DirMix(1)'s MSE / closed-form optimum (mean),
* vectorised throughput of the closed form (instances/s),

and ends with one JSON line. Run: ``.venv/bin/python benchmarks/power.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures_line import print_figures  # noqa: E402

from phy.channel import db_to_linear, make_channel_model  # noqa: E402
from phy.power import (  # noqa: E402
    airmixml_dirichlet,
    channel_inversion,
    numerical_optimum,
    tx_rx_scaling,
)
from phy.rng import seed_everything, spawn  # noqa: E402

N_INSTANCES, K, N_BRUTE = 1000, 8, 50


def main() -> dict[str, float]:
    """Run the benchmark, print the figures and return them."""
    chan_rng, draw_rng, policy_rng, brute_rng = spawn(seed_everything(2024), 4)
    h = make_channel_model("rayleigh").generate((N_INSTANCES, K), chan_rng)
    weights = draw_rng.dirichlet(np.ones(K), size=N_INSTANCES)
    p_max = draw_rng.choice([0.25, 1.0, 4.0], size=(N_INSTANCES, K))
    noise_var = 1.0 / db_to_linear(draw_rng.uniform(0.0, 20.0, N_INSTANCES))

    opt = tx_rx_scaling(h, weights, p_max, noise_var)
    full = np.isclose(np.abs(opt.tx_scaling) ** 2, p_max)
    print(
        f"{N_INSTANCES} instances, K={K}: mean MMSE {opt.mse.mean():.4g}, "
        f"users at full power {full.mean():.1%}"
    )

    ratios = np.array(
        [
            opt.mse[i]
            / numerical_optimum(h[i], weights[i], p_max[i], noise_var[i], restarts=6, rng=brute_rng)
            for i in range(N_BRUTE)
        ]
    )
    print(
        f"closed form / numerical optimum ({N_BRUTE} instances): "
        f"max {ratios.max():.9f}, mean {ratios.mean():.9f}, min {ratios.min():.9f}"
    )

    ci = channel_inversion(h, weights, p_max, noise_var).mse / opt.mse
    am = airmixml_dirichlet(h, weights, p_max, noise_var, alpha=1.0, rng=policy_rng).mse / opt.mse
    print(f"channel inversion MSE / optimum: mean {ci.mean():.3f}, median {np.median(ci):.3f}")
    print(f"AirMixML DirMix(1) MSE / optimum: mean {am.mean():.3f}, median {np.median(am):.3f}")

    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        tx_rx_scaling(h, weights, p_max, noise_var)
    rate = repeats * N_INSTANCES / (time.perf_counter() - start)
    print(f"vectorised closed form: {rate:,.0f} instances/s (batch {N_INSTANCES})")

    return {
        "mse_over_optimum_max": float(ratios.max()),
        "mse_over_optimum_mean": float(ratios.mean()),
        "channel_inversion_mse_over_optimum": float(ci.mean()),
        "airmixml_mse_over_optimum": float(am.mean()),
        "instances_per_s": float(rate),
    }


if __name__ == "__main__":
    print_figures(main())
