"""Features over the air: the legitimate link and the eavesdropper's view, both through
the project's radio model (:mod:`phy.eavesdropper`), never a second SNR convention.

A user sends ``D`` reals per sample, power-normalised (``mean(x**2) == 0.5``), packed into
OFDM subcarrier symbols as the waveform packs them. SNRs are the radios' link-budget
convention (per sample, user at full power through a unit-gain channel,
:func:`phy.link_budget.subcarrier_noise_var`). One user per slot (``K = 1``):

* legitimate receiver: gains ``g = h b`` from its channel ``h`` (``phy.channel`` model
  ``fading``) and the power policy (:func:`phy.eavesdropper.eavesdropper_gains` with the
  receiver's own channel), equalisation by the preamble's composite-gain estimate
  (:func:`phy.eavesdropper.eavesdropper_mixture`): the received reals are ``x + n / g``;
* eavesdropper: :func:`learning.privacy_report.observe_eavesdropper` (its own fading, its
  own SNR, frames it would miss redrawn).

The noise a received real carries, relative to the signal power 0.5 of a real, is the
*channel noise-to-signal ratio* :func:`channel_nsr` ``r_c = 2 nv / |g|^2`` (``nv`` the
subcarrier noise variance): each symbol's noise ``CN(0, nv)`` divided by ``g`` and scaled
by ``sqrt 2`` on unpacking leaves variance ``nv / |g|^2`` per real. The user learns ``g``
from the closed loop's channel estimate, so it knows ``r_c`` before it transmits.

Gradients: :func:`receive` returns ``sent + (channel(sent) - sent).detach()``, the exact
gradient of an additive-noise link after equalisation (``d received / d sent = I``).
"""

from __future__ import annotations

import numpy as np
import torch

from learning.attacks import Observation
from learning.privacy_report import observe_eavesdropper
from phy.channel import make_channel_model
from phy.eavesdropper import eavesdropper_gains, eavesdropper_mixture
from phy.link_budget import subcarrier_noise_var
from phy.rng import RngLike, make_rng

__all__ = ["channel_nsr", "eavesdropper_view", "legit_gains", "receive"]


def legit_gains(
    n: int, snr_db: float, fading: str = "awgn", policy: str = "mmse", rng: RngLike = None
) -> np.ndarray:
    """The legitimate receiver's effective gains ``g = h b`` for ``n`` one-user slots,
    complex ``(n,)`` (one block-fading draw per sample)."""
    h = make_channel_model(fading).generate((n, 1), make_rng(rng))
    nv = subcarrier_noise_var(snr_db)
    return eavesdropper_gains(h, h, np.ones((n, 1)), nv, policy)[:, 0]


def channel_nsr(gains: np.ndarray, snr_db: float) -> np.ndarray:
    """Noise-to-signal power ratio per received real, ``2 nv / |g|^2``, float ``(n,)``
    (see the module doc; ``nv = subcarrier_noise_var(snr_db)``)."""
    g = np.abs(np.asarray(gains, complex))
    if np.any(g == 0):
        raise ValueError("gains must be non-zero")
    return 2.0 * subcarrier_noise_var(snr_db) / g**2


def receive(sent: torch.Tensor, gains: np.ndarray, snr_db: float, rng: RngLike = None):
    """What the legitimate receiver demodulates from ``sent`` ``(B, D)`` (float tensor,
    D even) over one-user slots with gains ``g`` ``(B,)``: float tensor ``(B, D)``, with a
    straight-through gradient (module doc)."""
    if sent.ndim != 2 or sent.shape[1] % 2:
        raise ValueError(f"sent must be (B, D) with D even, got {tuple(sent.shape)}")
    g = np.asarray(gains, complex).reshape(-1, 1)
    if g.shape[0] != sent.shape[0]:
        raise ValueError(f"gains must have shape ({sent.shape[0]},), got {np.shape(gains)}")
    x = sent.detach().cpu().double().numpy()[None]
    est = eavesdropper_mixture(x, g, subcarrier_noise_var(snr_db), rng=make_rng(rng))
    delta = torch.as_tensor(est, dtype=sent.dtype) - sent.detach()
    return sent + delta


def eavesdropper_view(
    sent: np.ndarray,
    legit_snr_db: float,
    eavesdropper_snr_db: float,
    fading: str = "awgn",
    policy: str = "mmse",
    rng: RngLike = None,
) -> Observation:
    """The eavesdropper's demodulated features of ``sent`` ``(B, D)`` one-user slots (no
    label on the air): an :class:`~learning.attacks.Observation` with payload ``(B, D)``.

    With one user the power policy only sets the phase of ``b`` (unit magnitude at full
    power), so the eavesdropper's statistics do not depend on the legitimate channel's
    draw; ``observe_eavesdropper`` draws it independently."""
    x = np.asarray(sent, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"sent must be (B, D), got {x.shape}")
    return observe_eavesdropper(
        x[None],
        None,
        np.ones((1, x.shape[0])),
        n_classes=2,  # unused without labels on the air
        snr_db=legit_snr_db,
        eavesdropper_snr_db=eavesdropper_snr_db,
        fading=fading,
        policy=policy,
        rng=rng,
    )
