"""Frame detection, timing and carrier-frequency-offset (CFO) estimation for
:mod:`phy.waveform` frames.

Pipeline of :func:`detect_frames` on a capture ``x`` (complex ``(n,)``):

1. Schmidl-Cox metric at lag ``short_period`` over the short preamble:
   ``M(d) = |P(d)|^2 / (R1(d) R2(d))`` in [0, 1], insensitive to CFO. Under noise only,
   ``M`` is about exponential with mean ``1/W`` (``W`` = window, 120 samples by default),
   so ``P(M > eta) ~ exp(-W eta)``: the default ``eta = 0.4`` gives ~1e-21 false alarms
   per sample, while a preamble at 5 dB SNR gives ``M ~ (rho/(1+rho))^2 = 0.58``.
2. Coarse CFO from ``angle P(d)`` (range ``+-fs / (2 short_period)``).
3. After coarse CFO correction, integer timing of the long ZC block by
   cross-correlation (+-``search`` samples); candidates are confirmed when the
   normalised correlation over the first two long blocks (``N = 2 n_fft`` samples)
   exceeds ``corr_threshold`` (noise only: exponential with mean ``1/N``; default
   ``ln(1e6)/N``, a 1e-6 false-alarm rate per candidate).
4. Fine CFO from the repetition of the long block (lag ``n_fft``), its ambiguity
   resolved by the coarse estimate; fractional timing from the phase slope across
   subcarriers (:func:`delay_from_response`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from phy.waveform import OfdmConfig

__all__ = [
    "Detection",
    "cfo_crb_hz",
    "correct_cfo",
    "delay_from_response",
    "detect_frames",
    "long_response",
    "schmidl_cox",
]


def _check_capture(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"capture must be 1-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("capture contains NaN or inf")
    return a.astype(np.complex128, copy=False)


@dataclass(frozen=True)
class Detection:
    """One detected frame.

    Attributes:
        start: fractional frame start, samples from the capture start.
        cfo_hz: CFO estimate, Hz (fine, ambiguity resolved by the coarse one).
        metric: Schmidl-Cox metric at the detection, [0, 1].
        correlation: normalised long-preamble correlation, [0, 1].
        gain: complex gain of the long preamble referred to unit-power symbols, with the
            CFO rotation referenced to capture index 0 (``x[i] ~ gain e^{j2pi cfo i/fs}``).
    """

    start: float
    cfo_hz: float
    metric: float
    correlation: float
    gain: complex


def schmidl_cox(x: np.ndarray, lag: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Schmidl-Cox autocorrelation at ``lag`` over ``window`` samples.

    Returns ``(metric, p)`` of shape ``(n - lag - window + 1,)``: ``p[d] =
    sum_{m<window} conj(x[d+m]) x[d+m+lag]`` and ``metric = |p|^2 / (R1 R2)`` in [0, 1]."""
    x = _check_capture(x)
    if lag < 1 or window < 1:
        raise ValueError("lag and window must be >= 1")
    n_out = x.size - lag - window + 1
    if n_out < 1:
        return np.zeros(0), np.zeros(0, complex)
    prod = np.conj(x[:-lag]) * x[lag:]
    energy = np.abs(x) ** 2

    def window_sum(v: np.ndarray, count: int) -> np.ndarray:
        c = np.concatenate([[0], np.cumsum(v)])
        return c[window : window + count] - c[:count]

    p = window_sum(prod, n_out)
    r1 = window_sum(energy, n_out)
    r2 = window_sum(energy[lag:], n_out)
    with np.errstate(invalid="ignore", divide="ignore"):
        metric = np.where(r1 * r2 > 0, np.abs(p) ** 2 / (r1 * r2), 0.0)
    return np.clip(metric, 0.0, 1.0), p


def correct_cfo(
    x: np.ndarray, cfo_hz: float, sample_rate_hz: float, start_index: float = 0.0
) -> np.ndarray:
    """Remove a CFO: ``x[i] * exp(-j 2 pi cfo (start_index + i) / fs)``, complex128."""
    x = _check_capture(x)
    if not (math.isfinite(cfo_hz) and sample_rate_hz > 0):
        raise ValueError("cfo_hz must be finite and sample_rate_hz positive")
    i = start_index + np.arange(x.size)
    return x * np.exp(-2j * np.pi * cfo_hz / sample_rate_hz * i)


def cfo_crb_hz(snr_linear: float, n_samples: int, sample_rate_hz: float) -> float:
    """Cramer-Rao bound (standard deviation, Hz) of the frequency of a complex tone of
    unknown phase in white noise: ``fs/(2 pi) sqrt(6 / (snr N (N^2 - 1)))``.

    ``snr_linear`` is the per-sample SNR (> 0), ``n_samples`` the observation length."""
    if not (math.isfinite(snr_linear) and snr_linear > 0):
        raise ValueError(f"snr_linear must be positive, got {snr_linear}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    n = float(n_samples)
    return sample_rate_hz / (2 * math.pi) * math.sqrt(6.0 / (snr_linear * n * (n * n - 1)))


def long_response(
    x: np.ndarray, starts: np.ndarray, config: OfdmConfig, root: int | None = None
) -> np.ndarray:
    """Per-subcarrier response of ``n_fft``-sample windows starting at integer
    ``starts`` against the long ZC sequence: complex ``(len(starts), n_used)``
    (``1`` = unit gain, window exactly aligned)."""
    idx = np.asarray(starts, int)[:, None] + np.arange(config.n_fft)
    spectrum = np.fft.fft(x[idx], axis=1, norm="ortho") / config.scale
    return spectrum[:, config.used_bins % config.n_fft] / config.long_sequence(root)


def delay_from_response(response: np.ndarray, config: OfdmConfig) -> tuple[np.ndarray, np.ndarray]:
    """Fractional delay and gain from responses ``H[k] = g exp(-j 2 pi k tau / n_fft)``.

    Args:
        response: complex ``(..., n_used)`` on :attr:`OfdmConfig.used_bins`.
    Returns:
        ``(tau, g)``: delays in samples ``(...)`` (|tau| < n_fft/2), complex gains ``(...)``.
    """
    bins = config.used_bins
    adjacent = np.flatnonzero(np.diff(bins) == 1)
    c = np.sum(response[..., adjacent + 1] * np.conj(response[..., adjacent]), axis=-1)
    tau = -np.angle(c) * config.n_fft / (2 * np.pi)
    ramp = np.exp(2j * np.pi * np.multiply.outer(tau, bins) / config.n_fft)
    return tau, np.mean(response * ramp, axis=-1)


def detect_frames(
    x: np.ndarray,
    config: OfdmConfig,
    *,
    root: int | None = None,
    n_long: int | None = None,
    threshold: float = 0.4,
    corr_threshold: float | None = None,
    search: int = 16,
) -> list[Detection]:
    """Detect frames (short + long preamble with ZC ``root``, ``n_long`` long blocks) in
    the capture ``x`` (complex ``(n,)``); returns detections sorted by start."""
    x = _check_capture(x)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    n_long = config.n_long if n_long is None else int(n_long)
    n = config.n_fft
    # the timing correlation spans two long blocks only: a residual coarse-CFO error
    # of ~1 kHz would decorrelate a longer reference; fine CFO uses all n_long blocks
    long_samples = min(n_long, 2) * n
    if corr_threshold is None:
        corr_threshold = math.log(1e6) / long_samples
    lag = config.short_period
    window = config.short_len - lag
    metric, p = schmidl_cox(x, lag, window)
    above = np.flatnonzero(metric > threshold)
    if above.size == 0:
        return []
    # group runs of threshold crossings; one candidate (the metric maximum) per run
    breaks = np.flatnonzero(np.diff(above) > config.short_len) + 1
    fs = config.sample_rate_hz
    body = np.fft.ifft(_long_spectrum(config, root), norm="ortho") * config.scale
    ref = np.tile(body, long_samples // n)
    ref_energy = float(np.sum(np.abs(ref) ** 2))
    found: list[Detection] = []
    for run in np.split(above, breaks):
        d = int(run[np.argmax(metric[run])])
        coarse = float(np.angle(p[d])) / (2 * np.pi * lag)  # cycles/sample
        expect = d + config.long_start
        lo = max(0, expect - search)
        hi = min(x.size - n_long * n, expect + search)
        if hi < lo:
            continue
        offsets = np.arange(lo, hi + 1)
        seg_idx = offsets[:, None] + np.arange(long_samples)
        seg = x[seg_idx] * np.exp(-2j * np.pi * coarse * seg_idx)
        corr = np.abs(seg @ np.conj(ref)) ** 2
        energy = np.sum(np.abs(seg) ** 2, axis=1)
        rho = np.where(energy > 0, corr / (energy * ref_energy + 1e-300), 0.0)
        best = int(np.argmax(rho))
        if rho[best] < corr_threshold:
            continue
        t0 = int(offsets[best])
        nu = coarse
        if n_long >= 2:
            a = x[t0 : t0 + (n_long - 1) * n]
            b = x[t0 + n : t0 + n_long * n]
            fine = float(np.angle(np.sum(b * np.conj(a)))) / (2 * np.pi * n)
            nu = fine + round((coarse - fine) * n) / n
        starts = t0 + n * np.arange(n_long)
        idx = starts[:, None] + np.arange(n)
        corrected = x[idx] * np.exp(-2j * np.pi * nu * idx)
        spectrum = np.fft.fft(corrected, axis=1, norm="ortho") / config.scale
        resp = spectrum[:, config.used_bins % n] / config.long_sequence(root)
        tau, gain = delay_from_response(resp.mean(axis=0), config)
        found.append(
            Detection(
                start=float(t0 + tau - config.long_start),
                cfo_hz=nu * fs,
                metric=float(metric[d]),
                correlation=float(rho[best]),
                gain=complex(gain),
            )
        )
    found.sort(key=lambda det: det.start)
    kept: list[Detection] = []
    for det in found:  # runs split by noise dips can yield the same frame twice
        if kept and det.start - kept[-1].start < config.preamble_len / 2:
            if det.correlation > kept[-1].correlation:
                kept[-1] = det
            continue
        kept.append(det)
    return kept


def _long_spectrum(config: OfdmConfig, root: int | None) -> np.ndarray:
    spectrum = np.zeros(config.n_fft, complex)
    spectrum[config.used_bins % config.n_fft] = config.long_sequence(root)
    return spectrum
