r"""The diffusion noise schedule and the match between a link's noise and a timestep.

Continuous-time variance-preserving cosine schedule (Nichol & Dhariwal 2021) on
``t in [0, 1]``::

    abar(t) = f(t) / f(0),   f(t) = cos^2(pi/2 (t + s) / (1 + s)),   s = 0.008

clipped to ``[ABAR_MIN, 1]``. A received feature vector scaled to unit variance with
total noise-to-signal ratio ``r`` is exactly the forward marginal at ``abar = 1 / (1 + r)``,
so the receiver's timestep is the closed-form inverse :func:`timestep_for_nsr` (no
nearest-step rounding).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["ABAR_MIN", "abar", "timestep_for_abar", "timestep_for_nsr"]

_S = 0.008
#: smallest abar of the schedule (t = 1): noise-to-signal ratio about 1e4
ABAR_MIN = 1e-4
_F0 = math.cos(math.pi / 2 * _S / (1 + _S)) ** 2


def abar(t: torch.Tensor) -> torch.Tensor:
    """Signal power fraction ``abar(t)`` for times ``t`` in [0, 1] (any shape)."""
    f = torch.cos(math.pi / 2 * (t + _S) / (1 + _S)) ** 2
    return (f / _F0).clamp(ABAR_MIN, 1.0)


def timestep_for_abar(value: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`abar`: times in [0, 1] (float32) for signal fractions in (0, 1]."""
    a = torch.as_tensor(value, dtype=torch.float64).clamp(ABAR_MIN, 1.0)
    t = (1 + _S) * 2 / math.pi * torch.arccos(torch.sqrt(a * _F0)) - _S
    return t.clamp(0.0, 1.0).float()


def timestep_for_nsr(nsr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Timesteps whose forward marginal has noise-to-signal ratio ``nsr`` (>= 0):
    ``abar = 1 / (1 + nsr)``."""
    r = torch.as_tensor(nsr, dtype=torch.float64)
    if bool((r < 0).any()) or not bool(torch.isfinite(r).all()):
        raise ValueError("noise-to-signal ratios must be finite and >= 0")
    return timestep_for_abar(1.0 / (1.0 + r))
