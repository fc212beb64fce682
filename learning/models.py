"""Semantic models: user-side encoders, the server-side task head, and the raw-mode codec.

* :func:`build_encoder` maps images ``(B, C, H, W)`` to payloads ``(B, D)`` (``D`` even)
  whose **average power is normalised per sample**: consecutive pairs of reals form ``D/2``
  complex symbols and ``mean(x**2) == 0.5`` over each vector, i.e. unit power per complex
  symbol. This is what goes over the air (``phy.ota_model`` assumes unit-power payloads).
* :func:`build_head` maps (mixed) payloads ``(B, D)`` to class logits ``(B, n_classes)``.
* :func:`build_classifier` is encoder + head (centralized training, an attacker's
  independent evaluation classifier).
* :class:`RawCodec` is the raw-mode (AirMixML) payload: an invertible affine map from
  images to real vectors with unit power per complex symbol on average over a data set.

Encoder architectures are registered by name in :data:`ENCODERS` (``"cnn"``, ``"mlp"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "ENCODERS",
    "Classifier",
    "CnnEncoder",
    "MlpEncoder",
    "PowerNormalize",
    "RawCodec",
    "build_classifier",
    "build_encoder",
    "build_head",
]


class PowerNormalize(nn.Module):
    """Scale each row of ``(B, D)`` so that ``mean(x**2) == 0.5`` (unit power per complex
    symbol of two reals). ``eps`` guards an all-zero row."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        power = x.pow(2).mean(dim=1, keepdim=True)
        return x * torch.rsqrt(2.0 * power + self.eps)


def _check_shape(input_shape: tuple[int, int, int], feature_dim: int) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) with positive entries, got {input_shape}")
    if isinstance(feature_dim, bool) or feature_dim < 2 or feature_dim % 2:
        raise ValueError(f"feature_dim must be an even int >= 2, got {feature_dim}")
    return shape  # type: ignore[return-value]


class CnnEncoder(nn.Module):
    """Small CNN sized by the image: 3x3 conv blocks (32, 64 channels), each followed by
    2x2 max-pooling while the map is at least 8 pixels wide, then a linear layer to
    ``feature_dim`` and :class:`PowerNormalize`. ``(B, C, H, W) -> (B, feature_dim)``."""

    def __init__(self, input_shape: tuple[int, int, int], feature_dim: int) -> None:
        super().__init__()
        c, h, w = _check_shape(input_shape, feature_dim)
        layers: list[nn.Module] = []
        channels = c
        for width in (32, 64):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            if min(h, w) >= 8:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            channels = width
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.project = nn.Linear(channels * h * w, feature_dim)
        self.normalize = PowerNormalize()
        self.input_shape = (c, *input_shape[1:])
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.project(self.features(x)))


class MlpEncoder(nn.Module):
    """Flatten -> Linear(hidden) -> ReLU -> Linear(feature_dim) -> :class:`PowerNormalize`."""

    def __init__(
        self, input_shape: tuple[int, int, int], feature_dim: int, hidden: int = 256
    ) -> None:
        super().__init__()
        c, h, w = _check_shape(input_shape, feature_dim)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim)
        )
        self.normalize = PowerNormalize()
        self.input_shape = (c, h, w)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.net(x))


#: arch name -> encoder class, constructed as ``cls(input_shape, feature_dim)``
ENCODERS: dict[str, Callable[[tuple[int, int, int], int], nn.Module]] = {
    "cnn": CnnEncoder,
    "mlp": MlpEncoder,
}


def build_encoder(
    input_shape: tuple[int, int, int], feature_dim: int = 32, arch: str = "cnn"
) -> nn.Module:
    """Encoder ``(B, C, H, W) -> (B, feature_dim)``, power-normalised (see module doc)."""
    if arch not in ENCODERS:
        raise ValueError(f"unknown encoder arch {arch!r}; allowed: {sorted(ENCODERS)}")
    return ENCODERS[arch](input_shape, feature_dim)


def build_head(feature_dim: int, n_classes: int, hidden: int = 128) -> nn.Module:
    """Task head ``(B, feature_dim) -> (B, n_classes)`` logits: Linear-ReLU-Linear."""
    if feature_dim < 1 or n_classes < 2 or hidden < 1:
        raise ValueError(
            f"need feature_dim >= 1, n_classes >= 2, hidden >= 1; got {feature_dim}, "
            f"{n_classes}, {hidden}"
        )
    return nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


class Classifier(nn.Module):
    """``head(encoder(x))``: images ``(B, C, H, W)`` -> logits ``(B, n_classes)``."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def build_classifier(
    input_shape: tuple[int, int, int],
    n_classes: int,
    arch: str = "cnn",
    feature_dim: int = 32,
) -> Classifier:
    """Encoder + head as one :class:`Classifier` (``.encoder``, ``.head``)."""
    return Classifier(
        build_encoder(input_shape, feature_dim, arch), build_head(feature_dim, n_classes)
    )


class RawCodec:
    """Raw-mode payload: ``v = pad((x - mean) / scale)``, invertible by :meth:`decode`.

    ``mean`` is a per-pixel mean image ``(C, H, W)`` and ``scale`` a positive scalar, fitted
    by :meth:`fit` so the payloads of the fitting set have ``mean(v**2) == 0.5`` on average
    (unit power per complex symbol). ``D = C*H*W`` rounded up to even (one zero is appended
    when ``C*H*W`` is odd and dropped by :meth:`decode`). Because the map is affine with
    unit-sum weights preserved, ``decode(sum_k w_k encode(x_k)) == sum_k w_k x_k`` whenever
    ``sum_k w_k == 1``.
    """

    def __init__(self, mean: torch.Tensor, scale: float) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32)
        if mean.ndim != 3:
            raise ValueError(f"mean must have shape (C, H, W), got {tuple(mean.shape)}")
        if not bool(torch.isfinite(mean).all()):
            raise ValueError("mean contains NaN or inf")
        if not (scale > 0 and torch.isfinite(torch.tensor(scale))):
            raise ValueError(f"scale must be finite and > 0, got {scale}")
        self.mean = mean
        self.scale = float(scale)
        self.input_shape: tuple[int, int, int] = tuple(mean.shape)  # type: ignore[assignment]
        n = mean.numel()
        self.payload_dim = n + (n % 2)

    @classmethod
    def fit(cls, x: torch.Tensor) -> RawCodec:
        """Fit to images ``x`` ``(N, C, H, W)`` (e.g. ``dataset.x``)."""
        if x.ndim != 4 or x.shape[0] < 1:
            raise ValueError(f"x must have shape (N, C, H, W) with N >= 1, got {tuple(x.shape)}")
        mean = x.mean(dim=0)
        n = mean.numel()
        # mean square over the payload, counting the zero appended when n is odd
        power = float((x - mean).pow(2).mean()) * n / (n + n % 2)
        return cls(mean, (2.0 * power) ** 0.5 if power > 0 else 1.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> payloads ``(B, payload_dim)``."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected images of shape (B, {self.input_shape}), got {x.shape}")
        v = ((x - self.mean) / self.scale).flatten(1)
        if self.payload_dim != v.shape[1]:
            v = torch.nn.functional.pad(v, (0, 1))
        return v

    def decode(self, v: torch.Tensor) -> torch.Tensor:
        """Payloads ``(B, payload_dim)`` -> images ``(B, C, H, W)`` (not clipped)."""
        if v.ndim != 2 or v.shape[1] != self.payload_dim:
            raise ValueError(f"expected payloads (B, {self.payload_dim}), got {tuple(v.shape)}")
        n = self.mean.numel()
        return v[:, :n].reshape(-1, *self.input_shape) * self.scale + self.mean
