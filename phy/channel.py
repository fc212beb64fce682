"""Channel models: *generation* of block-fading gains kept apart from their *application*.

Generation (Sionna style): a :class:`ChannelModel` draws complex block-fading gains
``h`` with ``E|h|^2 = 1`` for any requested shape; large-scale loss comes separately from
:func:`log_distance_path_loss_db`. Application: :func:`apply_flat_channel` multiplies a
signal by its gains and adds circularly-symmetric complex Gaussian noise.

Models are selected by name through :data:`CHANNEL_MODELS` / :func:`make_channel_model`
(``"awgn"``, ``"rayleigh"``, ``"rician"``), so a TOML experiment file can pick one.
Power values in dB are power ratios (``10 log10``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from scipy.constants import speed_of_light

from phy.registry import Registry
from phy.rng import RngLike, make_rng

__all__ = [
    "CHANNEL_MODELS",
    "AwgnChannel",
    "ChannelModel",
    "RayleighFading",
    "RicianFading",
    "apply_flat_channel",
    "complex_normal",
    "db_to_linear",
    "linear_to_db",
    "log_distance_path_loss_db",
    "make_channel_model",
]


def db_to_linear(value_db: float | np.ndarray) -> float | np.ndarray:
    """Power ratio in dB -> linear power ratio (``10 ** (dB / 10)``); NaN raises ValueError."""
    value = np.asarray(value_db, dtype=float)
    if np.any(np.isnan(value)):
        raise ValueError("value_db contains NaN")
    out = np.power(10.0, value / 10.0)
    return float(out) if out.ndim == 0 else out


def linear_to_db(value: float | np.ndarray) -> float | np.ndarray:
    """Linear power ratio (>= 0) -> dB (``10 log10``); 0 maps to -inf, negative/NaN raise."""
    array = np.asarray(value, dtype=float)
    if np.any(np.isnan(array)):
        raise ValueError("value contains NaN")
    if np.any(array < 0):
        raise ValueError("value must be a non-negative power ratio")
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(array)
    return float(out) if out.ndim == 0 else out


def complex_normal(shape: tuple[int, ...] | int, variance: float, rng: RngLike) -> np.ndarray:
    """Circularly-symmetric complex Gaussian samples CN(0, variance), complex128 ``shape``."""
    if not np.isfinite(variance) or variance < 0:
        raise ValueError(f"variance must be finite and >= 0, got {variance}")
    gen = make_rng(rng)
    scale = np.sqrt(variance / 2.0)
    return scale * (gen.standard_normal(shape) + 1j * gen.standard_normal(shape))


def _check_shape(shape: tuple[int, ...] | int) -> tuple[int, ...]:
    shape_t = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    if any(int(s) < 0 for s in shape_t):
        raise ValueError(f"shape must have non-negative entries, got {shape_t}")
    return tuple(int(s) for s in shape_t)


class ChannelModel(ABC):
    """Small-scale block-fading model: one complex gain per (link, block), ``E|h|^2 = 1``."""

    name: str = ""

    @abstractmethod
    def generate(self, shape: tuple[int, ...] | int, rng: RngLike) -> np.ndarray:
        """Draw gains.

        Args:
            shape: output shape, e.g. ``(n_blocks, n_users)``.
            rng: anything :func:`phy.rng.make_rng` accepts.

        Returns:
            complex128 array of ``shape`` with unit average power.
        """


class AwgnChannel(ChannelModel):
    """No fading: every gain is exactly 1 (noise is added at application)."""

    name = "awgn"

    def generate(self, shape: tuple[int, ...] | int, rng: RngLike = None) -> np.ndarray:
        return np.ones(_check_shape(shape), dtype=np.complex128)


class RayleighFading(ChannelModel):
    """Rayleigh block fading: ``h ~ CN(0, 1)`` i.i.d."""

    name = "rayleigh"

    def generate(self, shape: tuple[int, ...] | int, rng: RngLike) -> np.ndarray:
        return complex_normal(_check_shape(shape), 1.0, rng)


class RicianFading(ChannelModel):
    """Rician block fading with K-factor ``k_factor_db`` (LOS power / scattered power).

    ``h = sqrt(K/(K+1)) exp(j phi) + sqrt(1/(K+1)) g``, ``g ~ CN(0, 1)``; the LOS phase
    ``phi`` is ``los_phase_rad`` if given, otherwise uniform on [0, 2 pi) per gain (an
    unknown path length). ``E|h|^2 = 1``.
    """

    name = "rician"

    def __init__(self, k_factor_db: float = 6.0, los_phase_rad: float | None = None) -> None:
        if not np.isfinite(k_factor_db):
            raise ValueError(f"k_factor_db must be finite, got {k_factor_db}")
        if los_phase_rad is not None and not np.isfinite(los_phase_rad):
            raise ValueError(f"los_phase_rad must be finite or None, got {los_phase_rad}")
        self.k_factor_db = float(k_factor_db)
        self.los_phase_rad = los_phase_rad

    def generate(self, shape: tuple[int, ...] | int, rng: RngLike) -> np.ndarray:
        shape_t = _check_shape(shape)
        gen = make_rng(rng)
        k = db_to_linear(self.k_factor_db)
        if self.los_phase_rad is None:
            phase = gen.uniform(0.0, 2.0 * np.pi, shape_t)
        else:
            phase = np.full(shape_t, float(self.los_phase_rad))
        los = np.sqrt(k / (k + 1.0)) * np.exp(1j * phase)
        return los + complex_normal(shape_t, 1.0 / (k + 1.0), gen)


#: name -> ChannelModel class (constructed with keyword arguments by make_channel_model)
CHANNEL_MODELS: Registry[type[ChannelModel]] = Registry(
    "channel model", {cls.name: cls for cls in (AwgnChannel, RayleighFading, RicianFading)}
)


def make_channel_model(name: str, **kwargs: Any) -> ChannelModel:
    """Construct the channel model registered as ``name`` with ``kwargs``.

    Example: ``make_channel_model("rician", k_factor_db=10.0)``.
    """
    return CHANNEL_MODELS[name](**kwargs)


def log_distance_path_loss_db(
    distance_m: float | np.ndarray,
    carrier_hz: float,
    exponent: float = 2.0,
    ref_distance_m: float = 1.0,
) -> float | np.ndarray:
    """Log-distance path loss in dB (a positive loss).

    ``PL(d) = 20 log10(4 pi d0 f / c) + 10 n log10(d / d0)``: free-space (Friis) loss at the
    reference distance ``d0 = ref_distance_m``, slope ``n = exponent`` beyond it.

    Args:
        distance_m: link distance(s), metres, > 0 (any shape).
        carrier_hz: carrier frequency, Hz, > 0.
        exponent: path-loss exponent (2 = free space), > 0.
        ref_distance_m: reference distance, metres, > 0.

    Returns:
        loss in dB, same shape as ``distance_m`` (float for a scalar).
    """
    d = np.asarray(distance_m, dtype=float)
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise ValueError("distance_m must be finite and > 0")
    for arg, value in (
        ("carrier_hz", carrier_hz),
        ("exponent", exponent),
        ("ref_distance_m", ref_distance_m),
    ):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{arg} must be finite and > 0, got {value}")
    free_space_ref = 20.0 * np.log10(4.0 * np.pi * ref_distance_m * carrier_hz / speed_of_light)
    out = free_space_ref + 10.0 * exponent * np.log10(d / ref_distance_m)
    return float(out) if out.ndim == 0 else out


def apply_flat_channel(
    x: np.ndarray, h: complex | np.ndarray, noise_var: float, rng: RngLike
) -> np.ndarray:
    """Flat-fading channel: ``y = h * x + n``, ``n ~ CN(0, noise_var)`` i.i.d. per sample.

    Args:
        x: complex (or real) signal, any shape ``S``.
        h: complex gain(s) broadcastable to ``S`` (e.g. shape ``(..., 1)`` for one gain per
            block of samples along the last axis).
        noise_var: noise power per complex sample, >= 0 (same units as ``|x|^2``).
        rng: anything :func:`phy.rng.make_rng` accepts.

    Returns:
        complex array of shape ``S`` (complex64 if ``x`` and ``h`` are single precision,
        else complex128).
    """
    x_arr = np.asarray(x)
    h_arr = np.asarray(h)
    if not np.all(np.isfinite(x_arr)):
        raise ValueError("x contains NaN or inf")
    if not np.all(np.isfinite(h_arr)):
        raise ValueError("h contains NaN or inf")
    if not np.isfinite(noise_var) or noise_var < 0:
        raise ValueError(f"noise_var must be finite and >= 0, got {noise_var}")
    try:
        shape = np.broadcast_shapes(x_arr.shape, h_arr.shape)
    except ValueError as err:
        raise ValueError(f"h of shape {h_arr.shape} does not broadcast to x {x_arr.shape}") from err
    if shape != x_arr.shape:
        raise ValueError(f"h of shape {h_arr.shape} would change the shape of x {x_arr.shape}")
    dtype = np.result_type(x_arr.dtype, h_arr.dtype, np.complex64)
    y = h_arr * x_arr
    if noise_var > 0:
        y = y + complex_normal(x_arr.shape, float(noise_var), rng)
    return y.astype(dtype, copy=False)
