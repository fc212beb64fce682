"""The pluggable channel between a group of users and the server.

One interface, :class:`OtaChannel`: given the real payloads of a group ``(K, B, D)`` (each
user's ``B`` vectors of ``D`` reals = ``D/2`` unit-power complex symbols) and the target
mixing weights ``(K,)``, :meth:`OtaChannel.transmit` returns an :class:`OtaOutput` with the
server's estimate ``(B, D)`` of ``sum_k w_k x_k`` and the weights the channel actually
realised; :meth:`OtaChannel.mix` returns only the estimate.

Registry :data:`OTA_CHANNELS` / :func:`make_channel`:

* ``"ideal"`` - the exact weighted sum (no noise, realised weights = targets);
* ``"awgn"`` - unit gains, receiver noise at ``snr_db``, through the differentiable phy model
  ``phy.ota_model.ota_mixture`` with the chosen power-control policy;
* ``"fading"`` - the same with block-fading gains drawn per transmission from
  ``phy.channel.make_channel_model(fading_model)`` (Rayleigh by default).

``snr_db`` is the per-user receive SNR at unit channel gain and full power, per sample
over the full band as in a run (:mod:`phy.link_budget`): the payload symbols see
``noise_var = p_max * subcarrier_noise_var(snr_db)``. Reals are packed into symbols as the
radios' waveform packs them (:func:`phy.waveform.payload_to_symbols`,
``X = (x[2i] + j x[2i+1]) / sqrt 2``: unit-power reals give unit-power symbols), so after
equalisation each received real carries the noise ``noise_var`` at unit gain, as over the
sim radios, the virtual Plutos and :mod:`learning.diffsem.air`; the MSE is per complex
symbol, which is per real of unit-power payloads (:mod:`orchestrator.mixup_error`). The
estimate is differentiable with respect to the payloads for every channel here. Received
samples from real radios plug in as a peer subclass implementing
:meth:`OtaChannel.transmit` (the orchestrator provides it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from phy.channel import make_channel_model
from phy.link_budget import subcarrier_noise_var
from phy.registry import Registry
from phy.rng import RngLike, make_rng, torch_generator

__all__ = [
    "OTA_CHANNELS",
    "IdealChannel",
    "OtaChannel",
    "OtaOutput",
    "PhyChannel",
    "make_channel",
]

#: two reals per subcarrier symbol, divided by this on packing (phy.waveform)
SQRT2 = math.sqrt(2.0)


@dataclass
class OtaOutput:
    """Result of one group transmission.

    Attributes:
        estimate: float tensor ``(B, D)``, the server's estimate of ``sum_k w_k x_k``.
        effective_weights: float64 ``(K,)``, realised weights ``Re(a h_k b_k)``.
        mse: expected MSE per complex symbol of the estimate (0 for the ideal channel).
    """

    estimate: torch.Tensor
    effective_weights: np.ndarray
    mse: float


def check_payloads(payloads: torch.Tensor, weights: Any) -> np.ndarray:
    """Validate ``payloads (K, B, D)`` (real, finite, D even) and ``weights (K,)`` (finite,
    >= 0); return the weights as float64."""
    if not isinstance(payloads, torch.Tensor) or payloads.ndim != 3:
        raise ValueError(
            f"payloads must be a (K, B, D) tensor, got {getattr(payloads, 'shape', payloads)}"
        )
    if payloads.is_complex():
        raise ValueError("payloads must be real (pairs of reals form complex symbols)")
    if payloads.shape[2] % 2:
        raise ValueError(f"payload dimension D must be even, got {payloads.shape[2]}")
    if not bool(torch.isfinite(payloads).all()):
        raise ValueError("payloads contain NaN or inf")
    w = np.asarray(
        weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights, dtype=np.float64
    )
    if w.shape != (payloads.shape[0],):
        raise ValueError(f"weights must have shape ({payloads.shape[0]},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    return w


class OtaChannel(ABC):
    """Maps a group's payloads and target weights to the server's mixture estimate."""

    name: str = ""

    @abstractmethod
    def transmit(self, payloads: torch.Tensor, weights: Any) -> OtaOutput:
        """One group slot: ``payloads (K, B, D)`` real, ``weights (K,)`` -> :class:`OtaOutput`."""

    def mix(self, payloads: torch.Tensor, weights: Any) -> torch.Tensor:
        """The estimate ``(B, D)`` of ``sum_k w_k x_k`` (see :meth:`transmit`)."""
        return self.transmit(payloads, weights).estimate


class IdealChannel(OtaChannel):
    """Exact weighted sum: ``estimate = sum_k w_k x_k``."""

    name = "ideal"

    def __init__(self, rng: RngLike = None) -> None:
        del rng  # deterministic; accepted so every channel is built the same way

    def transmit(self, payloads: torch.Tensor, weights: Any) -> OtaOutput:
        w = check_payloads(payloads, weights)
        wt = torch.as_tensor(w, dtype=payloads.dtype)
        return OtaOutput(torch.einsum("k,kbd->bd", wt, payloads), w, 0.0)


class PhyChannel(OtaChannel):
    """The differentiable phy model ``phy.ota_model.ota_mixture``.

    Args:
        snr_db: per-user receive SNR at unit gain and full power, dB (finite).
        fading_model: ``phy.channel`` model name for the gains (``"awgn"``: all ones).
        power_policy: ``phy.power`` policy name (``"mmse"`` = closed-form optimum).
        p_max: per-user transmit power limit (> 0).
        rng: seed or Generator; gains and noise are drawn from it.
    """

    name = "phy"

    def __init__(
        self,
        snr_db: float = 20.0,
        fading_model: str = "rayleigh",
        power_policy: str = "mmse",
        p_max: float = 1.0,
        rng: RngLike = None,
    ) -> None:
        if not np.isfinite(snr_db):
            raise ValueError(f"snr_db must be finite, got {snr_db}")
        if not np.isfinite(p_max) or p_max <= 0:
            raise ValueError(f"p_max must be finite and > 0, got {p_max}")
        self.snr_db = float(snr_db)
        self.p_max = float(p_max)
        self.noise_var = self.p_max * subcarrier_noise_var(self.snr_db)
        self.fading = make_channel_model(fading_model)
        self.power_policy = power_policy
        self._rng = make_rng(rng)
        self._generator = torch_generator(self._rng)

    def transmit(self, payloads: torch.Tensor, weights: Any) -> OtaOutput:
        from phy.ota_model import ota_mixture  # differentiable phy model

        w = check_payloads(payloads, weights)
        h = self.fading.generate((payloads.shape[0],), self._rng)
        # ota_mixture pairs reals as x[2i] + j x[2i+1]; the waveform divides by sqrt 2
        estimate, result = ota_mixture(
            payloads / SQRT2,
            w,
            h,
            self.noise_var,
            p_max=self.p_max,
            policy=self.power_policy,
            generator=self._generator,
        )
        return OtaOutput(
            estimate * SQRT2,
            np.asarray(result.effective_weights, dtype=np.float64).reshape(-1),
            float(np.mean(result.mse)),
        )


def _awgn(**kwargs: Any) -> PhyChannel:
    return PhyChannel(fading_model="awgn", **kwargs)


def _fading(**kwargs: Any) -> PhyChannel:
    kwargs.setdefault("fading_model", "rayleigh")
    return PhyChannel(**kwargs)


#: name -> factory(**kwargs) -> OtaChannel
OTA_CHANNELS: Registry[Any] = Registry(
    "OTA channel", {"ideal": IdealChannel, "awgn": _awgn, "fading": _fading}
)


def make_channel(name: str, **kwargs: Any) -> OtaChannel:
    """Build the channel registered as ``name`` (e.g. ``"fading", snr_db=20, rng=1``)."""
    return OTA_CHANNELS[name](**kwargs)
