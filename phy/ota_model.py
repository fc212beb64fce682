"""Differentiable torch model of one over-the-air mixup slot, for the learning layer.

Each of K users maps its real payload row of even length D to D/2 complex symbols
(consecutive pairs: ``x[2i] + j x[2i+1]``), scales it by its transmit factor ``b_k``
from a :mod:`phy.power` policy, the channel applies ``h_k`` and adds noise
``n ~ CN(0, noise_var)`` per complex symbol, and the receiver scales by ``a``::

    estimate = a (sum_k h_k b_k x_k + n)   ~   sum_k w_k x_k

Power control is computed in numpy (no gradient through it); gradients flow from the
estimate to every payload (the effective coefficient of user k is ``a h_k b_k``).
Payloads are assumed power-normalised to unit average power per complex symbol (the
convention under which ``|b_k|^2 <= p_max`` is the transmit power limit and the
returned ``mse`` is the expected squared error per complex symbol, i.e. ``mse / 2`` per
real component).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from phy.power import PowerControlResult, get_power_policy

__all__ = ["ota_mixture"]


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def ota_mixture(
    payloads: torch.Tensor,
    weights: Any,
    h: Any,
    noise_var: Any,
    p_max: Any = 1.0,
    policy: str = "mmse",
    generator: torch.Generator | None = None,
    policy_kwargs: dict[str, Any] | None = None,
    h_known: Any = None,
) -> tuple[torch.Tensor, PowerControlResult]:
    """Simulate one OTA mixup slot differentiably.

    Args:
        payloads: real tensor ``(K, B, D)``, D even (pairs of reals -> complex symbols),
            float32 or float64; unit average power per complex symbol assumed.
        weights: mixup weights ``>= 0``, shape ``(K,)`` or per-sample ``(B, K)``
            (tensor or array; not differentiated).
        h: complex channel gains, ``(K,)`` (one block for the batch) or ``(B, K)``.
        noise_var: noise power per complex symbol (>= 0), scalar or ``(B,)``.
        p_max: per-user power limit, scalar, ``(K,)`` or ``(B, K)``.
        policy: a name in :data:`phy.power.POWER_POLICIES`.
        generator: torch generator for the noise (and for a randomised policy's draw);
            None uses torch's global generator.
        policy_kwargs: extra keyword arguments for the policy (e.g. ``{"alpha": 0.5}``).
        h_known: the gains the receiver plans on, the shape of ``h`` (its estimates, 0
            for a user it did not hear: that user is silent, ``b_k = 0``; see
            :mod:`phy.slot_model`); None plans on ``h`` itself (perfect CSI).

    Returns:
        ``(estimate, result)``: estimate of ``sum_k w_k x_k`` as a real tensor ``(B, D)``
        (same dtype as ``payloads``), and the :class:`~phy.power.PowerControlResult`
        (batch shape ``()`` when ``h``, ``weights`` and ``noise_var`` are shared, else
        ``(B,)``).
    """
    if not isinstance(payloads, torch.Tensor) or payloads.dim() != 3:
        raise ValueError("payloads must be a real torch tensor of shape (K, B, D)")
    if payloads.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"payloads must be float32 or float64, got {payloads.dtype}")
    k, b, d = payloads.shape
    if d == 0 or d % 2:
        raise ValueError(f"payloads: D must be even and > 0 (pairs of reals), got {d}")
    if not bool(torch.isfinite(payloads).all()):
        raise ValueError("payloads contain NaN or inf")

    h_np = _to_numpy(h).astype(np.complex128)
    w_np = _to_numpy(weights).astype(np.float64)
    nv_np = _to_numpy(noise_var).astype(np.float64)
    p_np = _to_numpy(p_max).astype(np.float64)
    for name, arr in (("h", h_np), ("weights", w_np)):
        if arr.shape not in ((k,), (b, k)):
            raise ValueError(f"{name} must have shape ({k},) or ({b}, {k}), got {arr.shape}")
    if nv_np.shape not in ((), (b,)):
        raise ValueError(f"noise_var must be a scalar or shape ({b},), got {nv_np.shape}")
    per_sample = h_np.ndim == 2 or w_np.ndim == 2 or nv_np.ndim == 1 or p_np.ndim == 2
    if per_sample:
        h_np = np.broadcast_to(h_np, (b, k))
        w_np = np.broadcast_to(w_np, (b, k))

    planned = h_np
    if h_known is not None:
        planned = np.broadcast_to(_to_numpy(h_known).astype(np.complex128), h_np.shape)
    chosen = get_power_policy(policy)
    kwargs = dict(policy_kwargs or {})
    if chosen.randomised and "rng" not in kwargs:
        kwargs["rng"] = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    result = chosen(planned, w_np, p_np, nv_np, **kwargs)
    if h_known is not None:  # unheard users stay silent; the air applies the true gains
        b_np = np.where(planned == 0, 0j, np.asarray(result.tx_scaling, np.complex128))
        result = replace(result, tx_scaling=b_np)

    cdtype = torch.complex64 if payloads.dtype == torch.float32 else torch.complex128
    a_np = result.rx_scaling
    coef_np = a_np[..., None] * h_np * result.tx_scaling  # (K,) or (B, K)
    coef_kb = np.ascontiguousarray(np.atleast_2d(coef_np).T)  # (K, 1 or B)
    coef = torch.as_tensor(coef_kb, dtype=cdtype).unsqueeze(-1)  # (K, 1 or B, 1)
    symbols = torch.view_as_complex(payloads.contiguous().reshape(k, b, d // 2, 2))
    mixed = (coef * symbols).sum(dim=0)  # (B, D/2)

    noise_std = torch.as_tensor(np.sqrt(nv_np / 2.0), dtype=payloads.dtype).reshape(-1, 1, 1)
    noise = noise_std * torch.randn(b, d // 2, 2, generator=generator, dtype=payloads.dtype)
    rx = torch.as_tensor(np.asarray(a_np), dtype=cdtype).reshape(-1, 1)
    estimate = mixed + rx * torch.view_as_complex(noise.contiguous())
    return torch.view_as_real(estimate).reshape(b, d), result
