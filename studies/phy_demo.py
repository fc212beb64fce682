"""``airmix phy-demo``: closed-loop OTA mixup of K users on the
simulated medium, measured against the genie-aided loop and the closed-form optimum.

SNR definition: per-user receive SNR at full transmit power (``|b|^2 = p_max = 1``,
time-domain RMS ``config.amplitude``) and unit average channel gain (Rayleigh
``E|h|^2 = 1`` after a fixed path loss), measured over the full sample-rate bandwidth:
``snr = amplitude^2 10^(-path_loss/10) / noise_power``. The per-subcarrier SNR is
``n_fft / n_used`` (0.9 dB) higher.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learning.figures import save_figure
from phy.medium import SharedMedium, register_medium, unregister_medium
from phy.rng import RngLike, make_rng, spawn
from phy.waveform import OfdmConfig
from radio.base import RadioConfig, open_radio
from radio.ota_session import OtaSession, medium_truth

__all__ = ["SimTestbed", "add_arguments", "build_sim_testbed", "main", "run_snr"]

PATH_LOSS_DB = 10.0


@dataclass
class SimTestbed:
    """A medium, its receiver and user radios, a session and the genie truth."""

    medium: SharedMedium
    name: str
    session: OtaSession
    config: OfdmConfig

    def close(self) -> None:
        for radio in [self.session.receiver, *self.session.users]:
            radio.close()
        unregister_medium(self.name)


def build_sim_testbed(
    snr_db: float,
    n_users: int = 8,
    rng: RngLike = None,
    config: OfdmConfig | None = None,
    name: str = "phydemo",
    **session_kwargs: object,
) -> SimTestbed:
    """K users + 1 receiver as ``SimRadio`` s on a fresh Rayleigh medium (+-25 ppm,
    915 MHz, 1 MS/s, random start latency up to 2 ms) at ``snr_db`` (see module doc)."""
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    config = config or OfdmConfig()
    noise_dbfs = 10 * math.log10(config.amplitude**2) - PATH_LOSS_DB - snr_db
    seed = int(make_rng(rng).integers(2**31))
    medium = SharedMedium(
        seed=seed, noise_dbfs=noise_dbfs, default_path_loss_db=PATH_LOSS_DB, timing="ideal"
    )  # the cyclic loop needs constant start latency (phy.medium: ideal reference)
    register_medium(name, medium)
    rcfg = RadioConfig(
        center_hz=915e6,
        sample_rate_hz=config.sample_rate_hz,
        tx_attenuation_db=0.0,
        rx_gain_db=0.0,
        rx_buffer_size=16384,
    )
    receiver = open_radio(f"sim://{name}/rx")
    users = [open_radio(f"sim://{name}/user{k}") for k in range(n_users)]
    for radio in [receiver, *users]:
        radio.configure(rcfg)
    truth = medium_truth(medium, [f"user{k}" for k in range(n_users)], "rx", config)
    session = OtaSession(receiver, users, config, 1.0, truth=truth, **session_kwargs)
    return SimTestbed(medium, name, session, config)


def run_snr(
    snr_db: float, n_users: int = 8, n_reals: int = 960, trials: int = 2, rng: RngLike = None
) -> dict[str, float]:
    """Mean measured / genie / closed-form MSE over ``trials`` fading draws at ``snr_db``
    (equal weights, unit-power Gaussian payloads)."""
    out = {"measured": 0.0, "genie": 0.0, "closed_form": 0.0}
    for trial_rng in spawn(rng, trials):
        bed_rng, data_rng = spawn(trial_rng, 2)
        bed = build_sim_testbed(snr_db, n_users, bed_rng)
        try:
            x = data_rng.standard_normal((n_users, n_reals))
            w = np.full(n_users, 1.0 / n_users)
            measured = bed.session.mixup(x, w)
            genie = bed.session.mixup(x, w, genie=True)
        finally:
            bed.close()
        out["measured"] += measured.mse_vs_target / trials
        out["genie"] += genie.mse_vs_target / trials
        out["closed_form"] += measured.closed_form_mse / trials
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/phy-demo", help="output directory for the plot")
    parser.add_argument("--users", type=int, default=8, help="number of users")
    parser.add_argument("--snr", type=float, nargs="+", default=[10.0, 20.0, 30.0])
    parser.add_argument("--trials", type=int, default=2, help="fading draws per SNR")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    if args.users < 1 or args.trials < 1:
        raise SystemExit("--users and --trials must be >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, snr in enumerate(args.snr):
        t = time.perf_counter()
        r = run_snr(snr, args.users, trials=args.trials, rng=spawn(args.seed, len(args.snr))[i])
        rows.append((snr, r))
        print(
            f"[{i + 1}/{len(args.snr)}] SNR {snr:5.1f} dB: MSE {r['measured']:.3e}  "
            f"genie {r['genie']:.3e}  closed form {r['closed_form']:.3e}  "
            f"measured/genie {10 * math.log10(r['measured'] / r['genie']):+.2f} dB  "
            f"measured/optimum {r['measured'] / r['closed_form']:.2f}  "
            f"({time.perf_counter() - t:.1f} s)",
            flush=True,
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snrs = [s for s, _ in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, style in (("measured", "o-"), ("genie", "s--"), ("closed_form", "k:")):
        ax.semilogy(snrs, [r[key] for _, r in rows], style, label=key.replace("_", " "))
    ax.set_xlabel("per-user receive SNR at full power (dB)")
    ax.set_ylabel("MSE of the mixup estimate")
    ax.set_title(f"OTA mixup, {args.users} users, simulated medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path = save_figure(fig, out / "mse_vs_snr.png", dpi=120)
    print(f"plot written to {path}")
    return 0
