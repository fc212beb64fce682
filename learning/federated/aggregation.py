"""How the server obtains the weighted sum of model updates, and what it costs.

One interface, :class:`Aggregator`: :meth:`Aggregator.aggregate` takes the participants'
updates ``(K, P)`` and their FedAvg weights ``(K,)`` (``p_k = n_k / sum n``) and returns an
:class:`AggregateResult`: the server's estimate ``(P,)`` of ``sum_k p_k delta_k``, the
channel uses and digital bytes it took, and its predicted mean squared error per
parameter. Registry :data:`AGGREGATORS` / :func:`make_aggregator`:

* ``"digital"`` (:class:`DigitalAggregator`) - each user sends its float32 update over the
  digital link; the sum is exact. Bytes: ``4 P`` per user. Channel uses are counted as
  what a capacity-achieving code would need on the user's own orthogonal slot at the
  receive SNR, ``ceil(32 P / log2(1 + SNR))`` per user - a lower bound on any real digital
  scheme, so the comparison with over-the-air aggregation is generous to digital.
* ``"ota"`` (:class:`OtaAggregator`) - participants are cut into groups of ``group_size``;
  each group's updates are superposed in one slot of ``ceil(P/2)`` channel uses through an
  :class:`~learning.channels.OtaChannel` (default ``"fading"``: Rayleigh block fading, the
  closed-form MSE-optimal power control of :mod:`phy.power`, receiver noise at ``snr_db``
  with the link-budget convention of :mod:`learning.channels`), and the server adds the
  groups' estimates. Payload convention (the one :mod:`phy.ota_model` assumes): user ``k``
  sends its update divided by its RMS per real, ``x_k = delta_k / s_k`` with
  ``s_k = sqrt(mean(delta_k^2))`` (unit-power reals; the channel packs pairs of reals as
  ``(x[2i] + j x[2i+1]) / sqrt 2``, so unit-power symbols), and the target weight of the
  slot is ``w_k = p_k s_k``, so the
  receiver's estimate of ``sum_k w_k x_k`` is ``sum_k p_k delta_k``. The scalar ``s_k``
  goes over the digital link (4 bytes). The predicted MSE per parameter is the channel's
  MSE per real of unit-power payloads (:mod:`learning.channels`), summed over groups; it
  is exact in expectation when the users' normalised updates are uncorrelated.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from learning.channels import OtaChannel, make_channel
from phy.channel import db_to_linear
from phy.rng import RngLike

__all__ = [
    "AGGREGATORS",
    "AggregateResult",
    "Aggregator",
    "DigitalAggregator",
    "OtaAggregator",
    "check_updates",
    "make_aggregator",
]

#: bits per parameter of a float32 update on the digital link
BITS_PER_PARAMETER = 32


@dataclass
class AggregateResult:
    """One aggregation.

    Attributes:
        estimate: float32 ``(P,)``, the server's estimate of ``sum_k p_k delta_k``.
        channel_uses: complex channel uses spent (see the module docstring).
        digital_bytes: bytes sent on the digital link.
        predicted_mse: expected squared error per parameter of ``estimate`` (0 if exact).
        effective_weights: float64 ``(K,)``, the weights the server actually applied to
            each update (``p_k`` for digital; realised by the channel for OTA).
        slots: transmission slots used (one per user for digital, one per group for OTA).
    """

    estimate: torch.Tensor
    channel_uses: int
    digital_bytes: int
    predicted_mse: float
    effective_weights: np.ndarray
    slots: int


def check_updates(updates: torch.Tensor, weights: Any) -> tuple[torch.Tensor, np.ndarray]:
    """Validate updates ``(K, P)`` (finite float) and weights ``(K,)`` (finite, >= 0).

    Returns ``(updates as float32, weights as float64)``.
    """
    u = torch.as_tensor(updates)
    if u.ndim != 2 or u.shape[0] < 1 or u.shape[1] < 1:
        raise ValueError(f"updates must have shape (K, P) with K, P >= 1, got {tuple(u.shape)}")
    if u.is_complex() or not u.is_floating_point():
        raise ValueError(f"updates must be real floats, got {u.dtype}")
    if not bool(torch.isfinite(u).all()):
        raise ValueError("updates contain NaN or inf")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (u.shape[0],):
        raise ValueError(f"weights must have shape ({u.shape[0]},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    return u.float(), w


class Aggregator(ABC):
    """Maps participants' updates and weights to the server's estimate of their sum."""

    name: str = ""

    @abstractmethod
    def aggregate(self, updates: torch.Tensor, weights: Any) -> AggregateResult:
        """``updates (K, P)``, ``weights (K,)`` -> :class:`AggregateResult`."""


class DigitalAggregator(Aggregator):
    """Exact weighted sum over the digital link.

    Args:
        snr_db: receive SNR used only to count capacity-equivalent channel uses.
        rng: accepted so every aggregator is built alike (unused: deterministic).
    """

    name = "digital"

    def __init__(self, snr_db: float = 20.0, rng: RngLike = None) -> None:
        del rng
        if not np.isfinite(snr_db):
            raise ValueError(f"snr_db must be finite, got {snr_db}")
        self.snr_db = float(snr_db)
        self.bits_per_use = math.log2(1.0 + float(db_to_linear(self.snr_db)))

    def channel_uses_per_user(self, n_parameters: int) -> int:
        """Capacity-equivalent channel uses of one user's float32 update."""
        return math.ceil(BITS_PER_PARAMETER * n_parameters / self.bits_per_use)

    def aggregate(self, updates: torch.Tensor, weights: Any) -> AggregateResult:
        u, w = check_updates(updates, weights)
        k, p = u.shape
        estimate = torch.einsum("k,kp->p", torch.as_tensor(w, dtype=torch.float64), u.double())
        return AggregateResult(
            estimate.float(),
            channel_uses=k * self.channel_uses_per_user(p),
            digital_bytes=k * p * BITS_PER_PARAMETER // 8,
            predicted_mse=0.0,
            effective_weights=w.copy(),
            slots=k,
        )


class OtaAggregator(Aggregator):
    """Over-the-air aggregation of each group's updates (see the module docstring).

    Args:
        channel: a name in :data:`learning.channels.OTA_CHANNELS` (``"fading"``,
            ``"awgn"``, ``"ideal"``) or an :class:`~learning.channels.OtaChannel`.
        snr_db: per-user receive SNR at unit gain and full power (named channels).
        group_size: users superposed per slot (>= 1); the last group may be smaller.
        power_policy: :mod:`phy.power` policy name (named non-ideal channels).
        rng: seeds the channel's fading and noise.
    """

    name = "ota"

    def __init__(
        self,
        channel: str | OtaChannel = "fading",
        snr_db: float = 20.0,
        group_size: int = 8,
        power_policy: str = "mmse",
        rng: RngLike = None,
    ) -> None:
        if isinstance(group_size, bool) or int(group_size) < 1:
            raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
        self.group_size = int(group_size)
        if isinstance(channel, str):
            kwargs: dict[str, Any] = {"rng": rng}
            if channel != "ideal":
                kwargs.update(snr_db=snr_db, power_policy=power_policy)
            channel = make_channel(channel, **kwargs)
        self.channel = channel

    def aggregate(self, updates: torch.Tensor, weights: Any) -> AggregateResult:
        u, w = check_updates(updates, weights)
        k, p = u.shape
        d = p + (p % 2)
        x = torch.nn.functional.pad(u, (0, d - p)) if d != p else u
        scale = torch.sqrt(x.double().pow(2).mean(dim=1))  # RMS per real: unit-power reals
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        payloads = (x.double() / safe[:, None]).float()
        target = w * scale.numpy()
        estimate = torch.zeros(d, dtype=torch.float64)
        realised = np.zeros(k)
        mse = 0.0
        slots = 0
        for start in range(0, k, self.group_size):
            sl = slice(start, min(start + self.group_size, k))
            out = self.channel.transmit(payloads[sl, None, :], target[sl])
            estimate += out.estimate[0].double()
            with np.errstate(divide="ignore", invalid="ignore"):
                s = scale[sl].numpy()
                realised[sl] = np.where(s > 0, out.effective_weights / np.where(s > 0, s, 1), 0)
            mse += out.mse  # per real of unit-power payloads (learning.channels)
            slots += 1
        return AggregateResult(
            estimate[:p].float(),
            channel_uses=slots * (d // 2),
            digital_bytes=4 * k,
            predicted_mse=float(mse),
            effective_weights=realised,
            slots=slots,
        )


#: name -> aggregator class, built as ``cls(**kwargs)``
AGGREGATORS: dict[str, type[Aggregator]] = {
    "digital": DigitalAggregator,
    "ota": OtaAggregator,
}


def make_aggregator(name: str, **kwargs: Any) -> Aggregator:
    """Build the aggregator registered as ``name`` (e.g. ``"ota", snr_db=20, rng=1``)."""
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregation {name!r}; allowed: {sorted(AGGREGATORS)}")
    return AGGREGATORS[name](**kwargs)
