r"""DiffSem's transmitter-side self-noise, adapted to the legitimate link's SNR.

Rule (variance preserving, in units of the power-normalised features: signal power 0.5
per real). The user knows the legitimate channel's noise-to-signal ratio ``r_c`` per real
(:func:`learning.diffsem.air.channel_nsr`) and the target total ratio ``r_T``
(``DiffSemSettings.noise_level``). It sends::

    t = sqrt(a) x + sqrt(1 - a) sqrt(0.5) eps,   eps ~ N(0, I),
    a = min(1, (1 + r_c) / (1 + r_T))          (self_noise_keep)

so its transmit power stays 0.5 per real (the power limit holds) and the receiver gets
``y = t + n`` with ``var(n) = 0.5 r_c``. Scaling ``y`` by ``sqrt(2 / (1 + r_c))`` gives
exactly the diffusion marginal ``x_t = sqrt(abar) u + sqrt(1 - abar) eps'`` of the
unit-variance features ``u = sqrt 2 x`` with::

    abar = 1 / (1 + r_eff),     r_eff = max(r_T, r_c)     (effective_nsr)

i.e. the total noise-to-signal ratio the features carry is ``r_T`` whenever the channel
is better than the target, and the channel's own ``r_c`` when it is worse: controlled
whatever the channel. An eavesdropper at the same SNR sees the same ``r_eff``; at a
better SNR ``r_E < r_c`` it sees ``(1 - a + r_E) / a``, still at least
``(r_T - r_c) / (1 + r_c)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["add_self_noise", "effective_nsr", "receiver_scale", "self_noise_keep"]


def _ratios(channel: np.ndarray | float, target: float) -> np.ndarray:
    r_c = np.asarray(channel, dtype=np.float64)
    if not math.isfinite(target) or target < 0:
        raise ValueError(f"noise_level: must be >= 0, got {target!r}")
    if not np.all(np.isfinite(r_c)) or np.any(r_c < 0):
        raise ValueError("channel noise-to-signal ratios must be finite and >= 0")
    return r_c


def self_noise_keep(channel_nsr: np.ndarray | float, noise_level: float) -> np.ndarray:
    """Signal power fraction ``a = min(1, (1 + r_c) / (1 + r_T))`` kept by the
    transmitter, shape of ``channel_nsr``; ``1 - a`` is the self-noise power fraction."""
    r_c = _ratios(channel_nsr, noise_level)
    return np.minimum(1.0, (1.0 + r_c) / (1.0 + noise_level))


def effective_nsr(channel_nsr: np.ndarray | float, noise_level: float) -> np.ndarray:
    """Total noise-to-signal ratio per real at the legitimate receiver after self-noise,
    ``max(r_T, r_c)``, shape of ``channel_nsr``."""
    return np.maximum(_ratios(channel_nsr, noise_level), noise_level)


def add_self_noise(
    features: torch.Tensor,
    channel_nsr: np.ndarray,
    noise_level: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Self-noised features ``(B, D)`` of power-normalised ``features`` ``(B, D)`` for
    per-sample channel ratios ``channel_nsr`` ``(B,)`` (module doc)."""
    keep = self_noise_keep(channel_nsr, noise_level)
    if features.ndim != 2 or keep.shape != (features.shape[0],):
        raise ValueError(
            f"features (B, D) and channel_nsr (B,) disagree: {tuple(features.shape)}, {keep.shape}"
        )
    a = torch.as_tensor(keep, dtype=features.dtype).unsqueeze(1)
    eps = torch.randn(features.shape, generator=generator, dtype=features.dtype)
    return a.sqrt() * features + (1.0 - a).sqrt() * math.sqrt(0.5) * eps


def receiver_scale(channel_nsr: np.ndarray) -> torch.Tensor:
    """Per-sample factor ``sqrt(2 / (1 + r_c))`` ``(B, 1)`` mapping received reals to the
    diffusion variable ``x_t`` (unit variance)."""
    r_c = _ratios(channel_nsr, 0.0)
    return torch.as_tensor(np.sqrt(2.0 / (1.0 + r_c)), dtype=torch.float32).unsqueeze(1)
