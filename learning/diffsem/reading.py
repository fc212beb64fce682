r"""What the legitimate receiver reads from one received slot of a semantic link run over
the radios: the channel noise it measured, and the diffusion marginal of the features.

Used by the ``diffsem`` method (:mod:`learning.methods.diffsem`), where a slot carries
``B`` samples of ``K >= 1`` users framed as :mod:`learning.framing` frames them
(``[features (D) | label tail (C_pad)]`` per sample) and the receiver's estimate is
``y = sum_k g_k t_k + n``, ``g_k`` the effective weights the payloads arrived with, ``t_k``
user ``k``'s self-noised features (:mod:`learning.diffsem.selfnoise`: power 0.5 per real,
signal fraction ``a_k``) and ``n`` the channel noise after equalisation, variance ``nv``
per real.

* **Noise** (:func:`tail_noise_var`): the label tail is known up to the labels: at most
  ``K`` of its ``C_pad`` reals carry a label, the others carry noise only. Per sample, the
  ``C_pad - K`` smallest reals are taken as noise; ``nv`` is their mean square (biased
  low by at most the rare sample whose noise exceeds a label entry; no pilot, no
  knowledge of the labels needed). The receiver knows nothing else about the slot's
  noise: the radios' estimate of the slot's MSE does not reach the method.
* **Channel ratio per user** (the closed loop's measurement, fed back to the user):
  ``r_k = 2 nv / g_k^2``, the noise-to-signal ratio user ``k``'s features reach the
  receiver with (:func:`learning.diffsem.air.channel_nsr`'s convention).
* **Diffusion marginal** (:func:`slot_marginal`): with ``c = sum_k g_k^2``, the mixture
  ``y / sqrt(c)`` has unit-power-0.5 signal ``sum_k g_k sqrt(a_k) x_k / sqrt(c)`` (power
  fraction ``abar_s = sum_k g_k^2 a_k / c`` for independent users), self-noise and channel
  noise of ratio ``r = 2 nv / c``; scaled by ``sqrt(2 / (1 + r))`` it is the forward
  marginal ``x_t = sqrt(abar) u + sqrt(1 - abar) eps`` at ``abar = abar_s / (1 + r)``.
  With ``K = 1`` and ``a`` adapted to the channel (``a = (1 + r_c) / (1 + r_T)``), this
  is exactly :meth:`learning.diffsem.receiver.DiffusionReceiver.diffusion_input`'s
  ``abar = 1 / (1 + max(r_T, r_c))``; when the user adapted to a stale ratio it stays
  exact, because the keep ``a_k`` the user applied is the one the receiver told it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from learning.framing import label_dim

__all__ = ["slot_marginal", "tail_noise_var", "user_channel_nsr"]


def tail_noise_var(tails: np.ndarray, n_classes: int, group_size: int) -> float:
    """Channel noise variance per real measured on received label tails ``(B, >= C_pad)``
    of a slot of ``group_size`` users (module doc); NaN when no real is label-free."""
    c_pad = label_dim(n_classes)
    tail = np.asarray(tails, dtype=np.float64)[:, :c_pad]
    free = c_pad - int(group_size)
    if tail.ndim != 2 or free < 1:
        return math.nan
    noise = np.sort(tail, axis=1)[:, :free]
    return float(np.mean(noise**2))


def user_channel_nsr(noise_var: float, effective_weights: np.ndarray) -> np.ndarray:
    """Each user's channel noise-to-signal ratio ``2 nv / g_k^2`` ``(K,)`` (module doc)."""
    g = np.abs(np.asarray(effective_weights, dtype=np.float64))
    if not math.isfinite(noise_var) or noise_var < 0 or np.any(g == 0):
        raise ValueError(f"need a finite noise variance >= 0 and non-zero gains, got {noise_var}")
    return 2.0 * noise_var / g**2


def slot_marginal(
    received: torch.Tensor, noise_var: float, effective_weights: np.ndarray, keeps: np.ndarray
) -> tuple[torch.Tensor, float]:
    """The diffusion input of a received slot's features ``(B, D)``: ``(x_t (B, D), abar)``
    (module doc); ``keeps`` ``(K,)`` are the signal fractions ``a_k`` the users applied."""
    g2 = np.abs(np.asarray(effective_weights, dtype=np.float64)) ** 2
    a = np.asarray(keeps, dtype=np.float64)
    if g2.shape != a.shape or g2.sum() <= 0 or np.any((a < 0) | (a > 1)):
        raise ValueError(f"effective weights {g2.shape} and keeps {a.shape} disagree or invalid")
    c = float(g2.sum())
    r = 2.0 * float(noise_var) / c
    abar = float((g2 * a).sum() / c / (1.0 + r))
    x_t = received / math.sqrt(c) * math.sqrt(2.0 / (1.0 + r))
    return x_t, abar
