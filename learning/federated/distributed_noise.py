"""Distributed Gaussian noise for secure aggregation: what the exact sum still reveals,
hidden by noise the users add themselves.

Secure aggregation (:mod:`learning.federated.secagg`) shows the server only the sum, but
the sum itself is exact: gradient inversion on it recovers the label counts of the pooled
batches and some of their class structure (``benchmarks/federated.py``). The standard
complement (the Gaussian mechanism on the sum, split among the users as in distributed
DP-FedAvg, e.g. Kairouz et al., ICML 2021) is applied before masking:

* each user clips its update to L2 norm at most ``clip_norm`` (``C``);
* each of the ``K`` users adds ``N(0, (z C)^2 / K)`` per coordinate, so the sum of the
  ``K`` noisy updates carries ``N(0, (z C)^2)``: Gaussian noise of multiplier ``z`` on a
  sum whose sensitivity to one user (added or removed) is ``C``. No single user's noise
  hides its own update from a server that saw it alone; only the sum is protected.

Users that drop out add no noise, so the sum of ``K' < K`` survivors carries the
variance ``K'/K`` of the intended one. The privacy accounting over rounds
(``epsilon``) is not computed here.
"""

from __future__ import annotations

import numpy as np

from phy.rng import RngLike, make_rng

__all__ = ["clip_update", "noisy_share"]


def clip_update(update: np.ndarray, clip_norm: float) -> np.ndarray:
    """``update`` ``(P,)`` scaled down to L2 norm at most ``clip_norm`` (> 0)."""
    if not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive, got {clip_norm}")
    u = np.asarray(update, dtype=np.float64)
    norm = float(np.linalg.norm(u))
    return u * min(1.0, clip_norm / norm) if norm > 0 else u


def noisy_share(
    update: np.ndarray,
    clip_norm: float,
    noise_multiplier: float,
    n_users: int,
    rng: RngLike = None,
) -> np.ndarray:
    """One user's clipped update plus its share ``N(0, (z C)^2 / K)`` of the noise
    (``z`` = ``noise_multiplier`` >= 0, ``K`` = ``n_users`` >= 1); float64 ``(P,)``."""
    if noise_multiplier < 0 or n_users < 1:
        raise ValueError("need noise_multiplier >= 0 and n_users >= 1")
    clipped = clip_update(update, clip_norm)
    std = noise_multiplier * clip_norm / np.sqrt(n_users)
    return clipped + make_rng(rng).normal(0.0, std, clipped.shape)
