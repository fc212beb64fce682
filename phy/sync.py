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
from typing import Any

import numpy as np

from phy.waveform import OfdmConfig, phasors

__all__ = [
    "Detection",
    "Detections",
    "cfo_crb_hz",
    "correct_cfo",
    "delay_from_response",
    "detect_frame_arrays",
    "detect_frames",
    "long_response",
    "schmidl_cox",
]


def _as_capture(x: np.ndarray) -> np.ndarray:
    """``x`` as a contiguous complex128 1-D array; ValueError if it is not 1-D or holds
    NaN or inf (checked through the sum of ``|x|^2``, one fast pass; a non-finite sum
    from huge but finite values falls back to the element-wise test)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"capture must be 1-D, got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.complex128)
    flat = a.view(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.dot(flat, flat))
    if not math.isfinite(total) and not np.all(np.isfinite(flat)):
        raise ValueError("capture contains NaN or inf")
    return a


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
    x = _as_capture(x)
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
    x = _as_capture(x)
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

    A coarse delay from the phase of the adjacent-bin products is refined to the
    maximum of ``|sum_k H[k] exp(j 2 pi k tau / n_fft)|`` (the ML delay in white
    noise): a grid of +-1 sample in 1/8-sample steps, then two Gauss-Newton steps on the
    phase slope (vectorised over the leading axes).

    Args:
        response: complex ``(..., n_used)`` on :attr:`OfdmConfig.used_bins`.
    Returns:
        ``(tau, g)``: delays in samples ``(...)`` (|tau| < n_fft/2 + 1), complex gains
        ``(...)``.
    """
    bins = config.used_bins
    n = config.n_fft
    h = np.asarray(response, complex)
    adjacent = np.flatnonzero(np.diff(bins) == 1)
    c = np.sum(h[..., adjacent + 1] * np.conj(h[..., adjacent]), axis=-1)
    tau = -np.angle(c) * n / (2 * np.pi)
    grid = np.arange(-8, 9) / 8.0
    steer = np.exp(2j * np.pi * np.outer(bins, grid) / n)  # (n_used, n_grid)
    aligned = h * phasors(2 * np.pi * tau / n, bins)
    power = np.abs(aligned @ steer)
    tau = tau + grid[np.argmax(power, axis=-1)]
    k2 = float(np.sum(bins.astype(float) ** 2))
    for _ in range(2):
        aligned = h * phasors(2 * np.pi * tau / n, bins)
        g = np.mean(aligned, axis=-1)
        # aligned[k] ~ g (1 - j 2 pi k delta / n): least-squares delta
        num = np.sum(bins * np.imag(aligned * np.conj(g)[..., None]), axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.where(np.abs(g) > 0, -num * n / (2 * np.pi * k2 * np.abs(g) ** 2), 0.0)
        tau = tau + np.clip(delta, -0.25, 0.25)
    aligned = h * phasors(2 * np.pi * tau / n, bins)
    return tau, np.mean(aligned, axis=-1)


@dataclass(frozen=True)
class Detections:
    """Detected frames as arrays, one entry per frame, sorted by start (the batch form
    of :class:`Detection`, for receivers that process many frames at once).

    Attributes:
        start: fractional frame starts, float ``(n_frames,)``, samples.
        cfo_hz: CFO estimates, float ``(n_frames,)``, Hz.
        metric: Schmidl-Cox metrics, float ``(n_frames,)``, [0, 1].
        correlation: normalised long-preamble correlations, float ``(n_frames,)``, [0, 1].
        gain: complex gains, complex ``(n_frames,)`` (referenced to capture index 0).
    """

    start: np.ndarray
    cfo_hz: np.ndarray
    metric: np.ndarray
    correlation: np.ndarray
    gain: np.ndarray

    def __len__(self) -> int:
        return int(self.start.size)

    def to_list(self) -> list[Detection]:
        """The detections as :class:`Detection` objects."""
        return [
            Detection(float(s), float(f), float(m), float(c), complex(g))
            for s, f, m, c, g in zip(
                self.start.tolist(),
                self.cfo_hz.tolist(),
                self.metric.tolist(),
                self.correlation.tolist(),
                self.gain.tolist(),
                strict=True,
            )
        ]


def _no_detections() -> Detections:
    e = np.zeros(0)
    return Detections(e, e.copy(), e.copy(), e.copy(), np.zeros(0, complex))


def _ramp(nu: np.ndarray, length: int) -> np.ndarray:
    """``exp(-j 2 pi nu[c] t)`` for ``t < length``: complex ``(len(nu), length)``."""
    return phasors(-2 * np.pi * np.asarray(nu, float), np.arange(length))


def _window_sums(v: np.ndarray, window: int, count: int, first: int = 0) -> np.ndarray:
    """``sum_{m<window} v[..., first + o + m]`` for ``o < count`` along the last axis."""
    c = np.zeros(v.shape[:-1] + (v.shape[-1] + 1,), v.dtype)
    np.cumsum(v, axis=-1, out=c[..., 1:])
    return c[..., first + window : first + window + count] - c[..., first : first + count]


#: Schmidl-Cox windows with less energy than this fraction of the capture's strongest
#: count as silence: a clean capture's pre-ringing of a band-limited burst and rounding
#: residue are periodic like the short preamble (metric near 1 a hundred samples early);
#: any capture with noise has noise windows far above it
SILENT_ENERGY = 1e-5


def _schmidl_cox_peaks(
    x: np.ndarray, lag: int, window: int, threshold: float, separation: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Schmidl-Cox peaks of ``x`` above ``threshold``, at most one per ``separation``
    samples: ``(d, metric, p)``, int/float/complex ``(n_peaks,)``.

    The metric is first evaluated on a grid of step ``lag`` from per-block sums (blocks
    of ``lag`` samples; ``window`` is a multiple of ``lag``): one pass over the capture.
    A peak at full resolution is at most ``lag/2`` from a grid point, where the metric
    of a clean preamble is at least ``((window - lag/2)/window)^2`` of the peak, so grid
    points above ``threshold ((window - lag)/window)^2`` are candidates; the metric is
    then evaluated at every sample within ``+-lag`` of each candidate's grid maximum
    (vectorised over candidates) and the ``threshold`` is applied to that maximum."""
    n_x = x.size
    nb = n_x // lag
    wb = window // lag
    n_grid = nb - wb
    empty = (np.zeros(0, int), np.zeros(0), np.zeros(0, complex))
    if n_grid < 1:
        return empty
    blocks = x[: nb * lag].reshape(nb, lag)
    flat = blocks.view(np.float64)
    e_blk = np.einsum("ij,ij->i", flat, flat)
    p_blk = np.vecdot(blocks[:-1], blocks[1:])  # sum conj(x[d+m]) x[d+m+lag] per block
    p = _window_sums(p_blk, wb, n_grid)
    r = _window_sums(e_blk, wb, n_grid + 1)
    # windows below SILENT_ENERGY of the strongest are silence (see there)
    floor = SILENT_ENERGY * float(r.max(initial=0.0))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        den = r[:-1] * r[1:]
        loud = (r[:-1] > floor) & (r[1:] > floor) & (den > 0)
        coarse = np.where(loud, (p.real**2 + p.imag**2) / den, 0.0)
    above = np.flatnonzero(coarse > threshold * ((window - lag) / window) ** 2)
    if above.size == 0:
        return empty
    # group runs of crossings closer than ``separation``; keep each run's grid maximum
    run_start = np.r_[0, np.flatnonzero(np.diff(above) > separation // lag) + 1]
    run_id = np.cumsum(np.isin(np.arange(above.size), run_start)) - 1
    values = coarse[above]
    is_max = values == np.maximum.reduceat(values, run_start)[run_id]
    _, first = np.unique(run_id[is_max], return_index=True)
    grid = above[is_max][first] * lag
    # full-resolution metric at d = grid - lag .. grid + lag for every candidate
    span = 2 * lag + 1
    d0 = grid - lag
    idx = np.clip(d0[:, None] + np.arange(span - 1 + window + lag), 0, n_x - 1)
    seg = x[idx]
    prod = np.conj(seg[:, :-lag]) * seg[:, lag:]
    energy = seg.real**2 + seg.imag**2
    p_fine = _window_sums(prod, window, span)
    r1 = _window_sums(energy, window, span)
    r2 = _window_sums(energy, window, span, first=lag)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        den = r1 * r2
        metric = np.where(den > 0, (p_fine.real**2 + p_fine.imag**2) / den, 0.0)
    d_all = d0[:, None] + np.arange(span)
    metric[(d_all < 0) | (d_all > n_x - lag - window)] = -1.0
    best = np.argmax(metric, axis=1)
    rows = np.arange(best.size)
    m_best = np.clip(metric[rows, best], -1.0, 1.0)
    keep = m_best > threshold
    return d_all[rows, best][keep], m_best[keep], p_fine[rows, best][keep]


def detect_frames(x: np.ndarray, config: OfdmConfig, **options: Any) -> list[Detection]:
    """Detect frames (short + long preamble with ZC ``root``, ``n_long`` long blocks) in
    the capture ``x`` (complex ``(n,)``); returns detections sorted by start.

    List form of :func:`detect_frame_arrays`; ``options`` are its keyword arguments
    (``root``, ``n_long``, ``threshold``, ``corr_threshold``, ``search``)."""
    return detect_frame_arrays(x, config, **options).to_list()


def detect_frame_arrays(
    x: np.ndarray,
    config: OfdmConfig,
    *,
    root: int | None = None,
    n_long: int | None = None,
    threshold: float = 0.4,
    corr_threshold: float | None = None,
    search: int = 16,
) -> Detections:
    """Detect frames in the capture ``x`` (complex ``(n,)``), every step vectorised over
    all candidates (see the module doc for the pipeline).

    Args:
        x: capture, complex ``(n,)``.
        config: frame configuration.
        root: ZC root of the long preamble (default ``config.zc_root``).
        n_long: long blocks per frame (default ``config.n_long``).
        threshold: Schmidl-Cox threshold in (0, 1).
        corr_threshold: normalised long-correlation threshold (default ``ln(1e6)/N``).
        search: integer timing search of the long block, +- samples.
    Returns:
        :class:`Detections` sorted by start (frames closer than half a preamble are
        merged, keeping the larger correlation).
    """
    x = _as_capture(x)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    n_long = config.n_long if n_long is None else int(n_long)
    if n_long < 1 or search < 0:
        raise ValueError("n_long must be >= 1 and search >= 0")
    n = config.n_fft
    # the timing correlation spans two long blocks only: a residual coarse-CFO error
    # of ~1 kHz would decorrelate a longer reference; fine CFO uses all n_long blocks
    long_samples = min(n_long, 2) * n
    if corr_threshold is None:
        corr_threshold = math.log(1e6) / long_samples
    lag = config.short_period
    window = config.short_len - lag
    d, metric, p = _schmidl_cox_peaks(x, lag, window, threshold, config.short_len)
    if d.size == 0:
        return _no_detections()
    fs = config.sample_rate_hz
    coarse = np.angle(p) / (2 * np.pi * lag)  # cycles/sample
    # integer timing: coarse-CFO-corrected correlation with two long blocks at offsets
    # expect - search .. expect + search, by FFT of one (2 search + N)-sample segment
    base = d + config.long_start - search
    n_off = 2 * search + 1
    seg_len = n_off - 1 + long_samples
    idx = np.clip(base[:, None] + np.arange(seg_len), 0, x.size - 1)
    seg = x[idx] * _ramp(coarse, seg_len)
    ref = _long_reference(config, root, long_samples)
    ref_spec = np.conj(np.fft.fft(ref, seg_len))
    corr = np.fft.ifft(np.fft.fft(seg, axis=1) * ref_spec, axis=1)[:, :n_off]
    energy = _window_sums(seg.real**2 + seg.imag**2, long_samples, n_off)
    ref_energy = float(np.sum(np.abs(ref) ** 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (corr.real**2 + corr.imag**2) / (energy * ref_energy + 1e-300)
    offsets = base[:, None] + np.arange(n_off)
    rho[(offsets < 0) | (offsets > x.size - n_long * n) | ~np.isfinite(rho)] = -1.0
    best = np.argmax(rho, axis=1)
    rows = np.arange(best.size)
    rho_best = rho[rows, best]
    keep = rho_best >= corr_threshold
    if not np.any(keep):
        return _no_detections()
    t0 = offsets[rows, best][keep]
    coarse, metric, rho_best = coarse[keep], metric[keep], rho_best[keep]
    nu = coarse
    if n_long >= 2:
        span = np.arange((n_long - 1) * n)
        a = x[t0[:, None] + span]
        fine = np.angle(np.vecdot(a, x[t0[:, None] + n + span])) / (2 * np.pi * n)
        nu = fine + np.round((coarse - fine) * n) / n
    # CFO-corrected mean of the n_long blocks (x[i] exp(-j 2 pi nu i), absolute i), FFT
    blocks = x[t0[:, None, None] + n * np.arange(n_long)[:, None] + np.arange(n)]
    per_block = np.exp(-2j * np.pi * nu[:, None] * n * np.arange(n_long))
    mean_block = np.einsum("ckt,ck->ct", blocks, per_block) / n_long
    mean_block *= _ramp(nu, n) * np.exp(-2j * np.pi * nu * t0)[:, None]
    spectrum = np.fft.fft(mean_block, axis=1, norm="ortho") / config.scale
    resp = spectrum[:, config.used_bins % n] / config.long_sequence(root)
    tau, gain = delay_from_response(resp, config)
    start = t0 + tau - config.long_start
    order = np.argsort(start, kind="stable")
    keep_idx: list[int] = []
    last_start = -math.inf
    min_gap = config.preamble_len / 2
    for i, s in zip(order.tolist(), start[order].tolist(), strict=True):
        # runs split by noise dips can yield the same frame twice
        if keep_idx and s - last_start < min_gap:
            if rho_best[i] > rho_best[keep_idx[-1]]:
                keep_idx[-1] = i
                last_start = s
            continue
        keep_idx.append(i)
        last_start = s
    k = np.array(keep_idx, int)
    return Detections(start[k], nu[k] * fs, metric[k], rho_best[k], gain[k].astype(complex))


def _long_reference(config: OfdmConfig, root: int | None, length: int) -> np.ndarray:
    """``length`` samples of the repeated long ZC block (no CP), complex ``(length,)``."""

    def make() -> np.ndarray:
        body = np.fft.ifft(_long_spectrum(config, root), norm="ortho") * config.scale
        return np.resize(body, length)

    return config._cached(f"longref{root}:{length}", make)


def _long_spectrum(config: OfdmConfig, root: int | None) -> np.ndarray:
    spectrum = np.zeros(config.n_fft, complex)
    spectrum[config.used_bins % config.n_fft] = config.long_sequence(root)
    return spectrum
