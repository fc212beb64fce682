"""Hardware-in-the-loop harness: the closed-loop OTA mixup on virtual Plutos next to the
same experiment on :class:`radio.sim.SimRadio` with genie-aided synchronization.

:func:`ota_mse_pair_db` runs 4 user radios + 1 receiver (each with its medium-drawn
+-25 ppm oscillator error and random start latency) through
:class:`radio.ota_session.OtaSession` twice on identically seeded media: once as
virtual Plutos through libiio/pyadi-iio (:class:`radio.pluto.PlutoRadio`) with the
closed loop (acquisition, corrections), once as SimRadios with perfect timing, CFO and
CSI (:func:`radio.ota_session.medium_truth`), and returns both mixup MSEs in dB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hardware.virtual_pluto import VirtualPlutoLab
from phy.medium import SharedMedium
from phy.rng import RngLike, make_rng
from radio.base import Radio, RadioConfig
from radio.ota_session import OtaSession, medium_truth
from radio.pluto import PlutoRadio
from radio.sim import SimRadio

OTA_CONFIG = RadioConfig(
    center_hz=915e6, sample_rate_hz=1e6, tx_attenuation_db=0.0, rx_gain_db=40.0,
    rx_buffer_size=4096,
)  # fmt: skip
OTA_MEDIUM: dict[str, Any] = {
    "seed": 42,
    "channel_model": "awgn",
    "ppm_range": 25.0,
    "latency_range_s": (0.0, 2e-3),
    "timing": "ideal",  # the cyclic loop needs constant start latency (phy.medium)
}


def mixup_mse_db(
    radios: Sequence[Radio],
    medium: SharedMedium,
    *,
    rounds: int = 3,
    n_reals: int = 512,
    path_loss_db: float = 50.0,
    rng: RngLike = 3,
    genie: bool = False,
) -> float:
    """Mean mixup MSE (dB) of ``rounds`` mixups; ``radios[0]`` receives, the others
    (named ``pluto1``.. on ``medium``) are the users. ``genie``: perfect timing, CFO and
    CSI from the medium instead of the closed loop."""
    users = len(radios) - 1
    names = [f"pluto{k}" for k in range(1, users + 1)]
    for name in names:
        medium.set_link(name, "pluto0", path_loss_db=path_loss_db)
    gen = make_rng(rng)
    payloads = gen.standard_normal((users, n_reals))
    weights = gen.dirichlet(np.ones(users))
    session = OtaSession(radios[0], list(radios[1:]))
    if genie:
        session.truth = medium_truth(medium, names, "pluto0", session.config)
    mses = [session.mixup(payloads, weights, genie).mse_vs_target for _ in range(rounds)]
    return float(10 * np.log10(np.mean(mses)))


def ota_mse_pair_db(n_users: int = 4, **medium_kwargs: Any) -> tuple[float, float]:
    """(virtual Plutos with the closed loop, SimRadio with genie-aided synchronization)
    mixup MSE in dB on identically seeded media."""
    kwargs = {**OTA_MEDIUM, **medium_kwargs}
    with VirtualPlutoLab(n_users + 1, medium_name=None, variant="ad9364", **kwargs) as lab:
        plutos = [PlutoRadio(uri, config=OTA_CONFIG) for uri in lab.uris]
        try:
            pluto_db = mixup_mse_db(plutos, lab.medium)
        finally:
            for radio in plutos:
                radio.close()
    medium = SharedMedium(**kwargs)
    sims = [SimRadio(f"sim://hil/pluto{k}", medium=medium) for k in range(n_users + 1)]
    for radio in sims:
        radio.configure(OTA_CONFIG)
    try:
        sim_db = mixup_mse_db(sims, medium, genie=True)
    finally:
        for radio in sims:
            radio.close()
    return pluto_db, sim_db
