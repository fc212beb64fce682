"""Settings of a semantic link and of its training, validated field by field.

:class:`LinkSettings` holds what every link of :mod:`learning.diffsem` shares (feature
size, encoder, training SNR range, optimiser); :class:`DiffSemSettings` adds the
self-noise target and the diffusion receiver; :class:`IbalSettings` the information
bottleneck and the simulated adversary. Every invalid value raises
:class:`SettingsError` (a ``ValueError``) whose message starts with the field's name,
e.g. ``noise_level: must be >= 0, got -1.0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "CONDITIONINGS",
    "DiffSemSettings",
    "IbalSettings",
    "LinkSettings",
    "SettingsError",
    "settings_from_dict",
]

#: receiver conditioning: ``"none"`` (unconditional denoiser) or ``"label"`` (the
#: denoiser is conditioned on the receiver's own previous predicted label, iterated)
CONDITIONINGS = ("none", "label")


class SettingsError(ValueError):
    """An invalid setting; the message names the field first."""


def _fail(field: str, message: str, value: Any) -> SettingsError:
    return SettingsError(f"{field}: {message}, got {value!r}")


def _positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(field, "must be an int >= 1", value)


def _finite(field: str, value: Any, minimum: float | None = None, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(field, "must be a finite number", value)
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise _fail(field, f"must be {'>' if strict else '>='} {minimum}", value)


@dataclass(frozen=True)
class LinkSettings:
    """What every link shares.

    Attributes:
        feature_dim: reals per sample on the air (even; 64 as in IBAL).
        encoder: ``learning.models.ENCODERS`` name of the user-side encoder.
        train_snr_db: ``(low, high)`` legitimate SNR range (dB, the radios' per-sample
            convention) drawn uniformly per training batch: one model serves the grid.
        fading: ``phy.channel`` model of the legitimate (and eavesdropper) link.
        policy: ``phy.power`` policy name.
        epochs, batch_size, lr: optimiser settings of the link (encoder + head).
    """

    feature_dim: int = 64
    encoder: str = "cnn"
    train_snr_db: tuple[float, float] = (7.0, 23.0)
    fading: str = "awgn"
    policy: str = "mmse"
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3

    def __post_init__(self) -> None:
        from learning.models import ENCODERS
        from phy.channel import CHANNEL_MODELS
        from phy.power import POWER_POLICIES

        _positive_int("feature_dim", self.feature_dim)
        if self.feature_dim % 2:
            raise _fail(
                "feature_dim", "must be even (pairs of reals are symbols)", self.feature_dim
            )
        if self.encoder not in ENCODERS:
            raise _fail("encoder", f"must be one of {sorted(ENCODERS)}", self.encoder)
        snr = tuple(self.train_snr_db)
        if len(snr) != 2:
            raise _fail("train_snr_db", "must be (low, high)", self.train_snr_db)
        for value in snr:
            _finite("train_snr_db", value)
        if snr[0] > snr[1]:
            raise _fail("train_snr_db", "low must not exceed high", self.train_snr_db)
        object.__setattr__(self, "train_snr_db", (float(snr[0]), float(snr[1])))
        if self.fading not in CHANNEL_MODELS:
            raise _fail("fading", f"must be one of {sorted(CHANNEL_MODELS)}", self.fading)
        if self.policy not in POWER_POLICIES:
            raise _fail("policy", f"must be one of {sorted(POWER_POLICIES)}", self.policy)
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _finite("lr", self.lr, 0.0, strict=True)


@dataclass(frozen=True)
class DiffSemSettings(LinkSettings):
    """DiffSem's link: self-noise target and diffusion receiver (see the package doc).

    Attributes:
        noise_level: target total noise-to-signal power ratio ``r_T`` (linear, per real,
            >= 0) the features carry at the receiver: self-noise fills the gap between
            the channel's own ratio and ``r_T`` (0: no self-noise). Default 2.5 (-4.0 dB):
            on digits, the largest of 2, 2.5, 3 whose legitimate accuracy at 23 dB stays
            within 2 points of the no-channel classifier (``benchmarks/diffsem.py``).
        conditioning: one of :data:`CONDITIONINGS`.
        label_iterations: passes of label-conditioned denoising after the first
            (unconditional) pass (``conditioning="label"`` only), >= 1.
        sampling_steps: DDIM steps from the matched timestep down to 0, >= 1.
        denoiser_width: hidden width of the feature U-Net.
        denoiser_epochs: epochs of diffusion training on the encoder's clean features.
        head_epochs: epochs fine-tuning the head on the receiver's denoised features.
        label_dropout: probability a training label is replaced by the null (no
            label) embedding, in [0, 1).
    """

    noise_level: float = 2.5
    conditioning: str = "label"
    label_iterations: int = 2
    sampling_steps: int = 4
    denoiser_width: int = 256
    denoiser_epochs: int = 300
    head_epochs: int = 20
    label_dropout: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite("noise_level", self.noise_level, 0.0)
        if self.conditioning not in CONDITIONINGS:
            raise _fail("conditioning", f"must be one of {list(CONDITIONINGS)}", self.conditioning)
        _positive_int("label_iterations", self.label_iterations)
        _positive_int("sampling_steps", self.sampling_steps)
        _positive_int("denoiser_width", self.denoiser_width)
        _positive_int("denoiser_epochs", self.denoiser_epochs)
        _positive_int("head_epochs", self.head_epochs)
        _finite("label_dropout", self.label_dropout, 0.0)
        if self.label_dropout >= 1.0:
            raise _fail("label_dropout", "must be < 1", self.label_dropout)


@dataclass(frozen=True)
class IbalSettings(LinkSettings):
    """IBAL's link: information bottleneck and simulated inversion adversary.

    Attributes:
        beta: weight of the log-uniform KL (information bottleneck) term, >= 0.
        kl_warmup_epochs: epochs before the KL term starts (then annealed over as many).
        adversary_weight: multiplier of IBAL's ``1 / (1 + sigma)`` weight on the
            simulated adversary's reconstruction MSE (subtracted from the loss), >= 0.
    """

    beta: float = 1e-3
    kl_warmup_epochs: int = 5
    adversary_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite("beta", self.beta, 0.0)
        _positive_int("kl_warmup_epochs", self.kl_warmup_epochs)
        _finite("adversary_weight", self.adversary_weight, 0.0)


def settings_from_dict(cls: type[LinkSettings], values: dict[str, Any]) -> LinkSettings:
    """Build ``cls`` from a mapping; an unknown key raises :class:`SettingsError` naming it."""
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise SettingsError(f"{key}: unknown setting; known: {sorted(known)}")
    return cls(**values)
