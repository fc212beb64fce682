"""Per-user link estimation from a cyclic pilot capture.

Users are separated **by time** (one acquisition capture per user, see
:mod:`radio.ota_session`) and identified **by ZC root** (:func:`user_root`). Time
slots inside one shared cyclic buffer do not work here: radio start latencies
(up to ~2 ms = 2000 samples at 1 MS/s) scramble any slot layout shorter than that, and
code separation by root leaves -17 dB cross-talk per interferer on a 52-bin ZC, too
much for gain estimates at 30 dB SNR. A per-user capture is interference-free and,
being a continuous cyclic pilot, gives a long observation for a near-CRB CFO.

Model of user ``k``'s contribution to a capture (capture index ``i``, receiver
samples; buffer index ``m``, the user's samples)::

    r[i] = gain * exp(j 2 pi cfo_hz i / fs) * s_k(m),   i = delay + m (1 + sro)

so ``delay`` is where the user's buffer index 0 lands (fractional), ``sro`` the
sample-rate offset (receiver samples per user sample minus one), ``gain`` the complex
gain on unit-power symbols referenced to capture index 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import correlate

from phy.sync import Detection, delay_from_response, detect_frames
from phy.waveform import Block, OfdmConfig, phasors, render_blocks

__all__ = [
    "NoPilotError",
    "LinkEstimate",
    "estimate_user_link",
    "pilot_blocks",
    "search_cyclic_pilot",
    "user_root",
]

#: long-block repetitions in a user pilot (a cyclic pilot period is short + CP + this)
PILOT_REPS = 60


class NoPilotError(ValueError):
    """The user's pilot was not found in the capture."""


@dataclass(frozen=True)
class LinkEstimate:
    """Plain per-user link estimate (msgpack-friendly: floats and one complex).

    Attributes:
        user: user index.
        delay_samples: capture index where the user's buffer index 0 arrives.
        cfo_hz: carrier frequency offset, Hz.
        sro: sample-rate offset (receiver samples per user sample - 1).
        gain: complex gain on unit-power symbols at capture index 0.
        snr_db: per-subcarrier SNR of a unit-power symbol sent with unit scaling, dB.
        capture_clock: receiver-sample clock of the capture start (0 if unknown).
    """

    user: int
    delay_samples: float
    cfo_hz: float
    sro: float
    gain: complex
    snr_db: float
    capture_clock: int = 0

    def to_dict(self) -> dict:
        """Plain dict for msgpack (the complex gain as ``gain_re``, ``gain_im``)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "gain"}
        return {**d, "gain_re": float(self.gain.real), "gain_im": float(self.gain.imag)}

    @classmethod
    def from_dict(cls, d: dict) -> LinkEstimate:
        """Inverse of :meth:`to_dict`."""
        fields = {k: v for k, v in d.items() if k not in ("gain_re", "gain_im")}
        return cls(**fields, gain=complex(d["gain_re"], d["gain_im"]))

    @property
    def noise_var(self) -> float:
        """Noise variance per subcarrier symbol implied by ``gain`` and ``snr_db``."""
        if self.gain == 0:
            return math.nan
        return float(abs(self.gain) ** 2 / 10 ** (self.snr_db / 10))


def user_root(user_index: int, config: OfdmConfig) -> int:
    """ZC root of user ``user_index``'s pilot: the ``user_index``-th root other than the
    frame root ``config.zc_root`` (so pilots never trigger the payload detector)."""
    roots = [r for r in range(1, 2 * config.n_used_half + 1) if r != config.zc_root]
    if isinstance(user_index, bool) or not 0 <= int(user_index) < len(roots):
        raise ValueError(f"user_index must be in [0, {len(roots)}), got {user_index}")
    return roots[int(user_index)]


def pilot_blocks(user_index: int, config: OfdmConfig, reps: int = PILOT_REPS) -> list[Block]:
    """Blocks of user ``user_index``'s cyclic pilot: short preamble, then ``reps`` long
    ZC blocks with the user's root."""
    if reps < 2:
        raise ValueError(f"reps must be >= 2, got {reps}")
    root = user_root(user_index, config)
    return [
        Block(config.short_bins, config.short_sequence(), 0, config.n_short_blocks),
        Block(config.used_bins, config.long_sequence(root), config.long_cp, reps),
    ]


def estimate_user_link(
    capture: np.ndarray,
    user_index: int,
    config: OfdmConfig,
    *,
    reps: int = PILOT_REPS,
    capture_clock: int = 0,
    carrier_hz: float | None = None,
) -> LinkEstimate:
    """Estimate user ``user_index``'s link from a capture of its cyclic pilot
    (complex ``(n,)``; must contain the pilot's first period in full).

    Steps: detect every period (:func:`phy.sync.detect_frames`); buffer index 0 is the
    period start within the first pilot period of the capture (start latency must be
    shorter than one period). For every long block, the per-subcarrier response gives a
    fractional arrival time and a complex gain; a least-squares line through the
    arrival times gives ``delay`` and ``sro``; one through the unwrapped gain phases
    refines the CFO to near its Cramer-Rao bound; the scatter of the gains gives SNR.
    With ``carrier_hz`` (Hz) the sample-rate offset is taken as ``-cfo / carrier_hz``
    (transmitter LO and sample clock from one oscillator, as on a Pluto and in
    :mod:`phy.medium`); without it, it is fitted to the arrival times.
    Raises ValueError when no pilot is found.
    """
    if carrier_hz is not None and not (np.isfinite(carrier_hz) and carrier_hz > 0):
        raise ValueError(f"carrier_hz must be positive, got {carrier_hz}")
    x = np.asarray(capture)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError("capture must be a finite 1-D complex array")
    root = user_root(user_index, config)
    # the pilot is known to be on the air and its long part is 60 blocks long, so a low
    # Schmidl-Cox threshold (noise only: P(M > 0.1) ~ exp(-12) per sample) is confirmed
    # by a long-correlation test with a 1e-6 false-alarm rate; a pilot too weak for the
    # 120-sample Schmidl-Cox window (deep fade, below about -5 dB per subcarrier) is
    # then searched for with the whole capture (:func:`search_cyclic_pilot`)
    dets = detect_frames(x, config, root=root, n_long=reps, threshold=0.1)
    if not dets:
        found = search_cyclic_pilot(x, config, root, reps)
        if found is None:
            raise NoPilotError(f"no pilot of user {user_index} (ZC root {root}) in the capture")
        dets = [found]
    n = config.n_fft
    period = config.preamble_len - config.n_long * n + reps * n
    fs = config.sample_rate_hz
    nu0 = float(np.median([d.cfo_hz for d in dets])) / fs
    # a weak user's first periods may be missed: the buffer start is identified by
    # requiring the start latency to be shorter than one pilot period (4000 samples =
    # 4 ms at 1 MS/s, radios start within ~2 ms), so period j0 = first // period
    first = dets[0].start
    j0 = int(first // period)
    n_periods = int((x.size - first) // period) + 1
    periods = j0 + np.arange(n_periods)
    m = (periods[:, None] * period + config.long_start + n * np.arange(reps)).ravel()
    approx = first - j0 * period + m
    ok = (approx >= 1) & (approx + n + 1 < x.size)
    m, approx = m[ok], approx[ok]
    if m.size < 2:
        raise ValueError("capture too short: fewer than two pilot blocks")
    windows = np.rint(approx).astype(int)
    idx = windows[:, None] + np.arange(n)
    corrected = x[idx] * np.exp(-2j * np.pi * nu0 * windows)[:, None]
    corrected *= np.exp(-2j * np.pi * nu0 * np.arange(n))
    spectrum = np.fft.fft(corrected, axis=1, norm="ortho") / config.scale
    bins = config.used_bins
    resp = spectrum[:, bins % n] / config.long_sequence(root)
    # remove the known fractional part of each window's misalignment, so every block
    # shares the same (small) residual delay; per-block delay estimates are too noisy
    # at low SNR (the slope estimator multiplies two noisy bins)
    frac = approx - windows
    resp = resp * phasors(2 * np.pi * frac / n, bins)
    # CFO refinement: periodogram maximum of the per-block gains (ML tone estimate)
    dnu = _periodogram_peak(resp.mean(axis=1), approx, span=1.0 / (4 * n))
    nu = nu0 + dnu
    resp = resp * np.exp(-2j * np.pi * dnu * approx)[:, None]
    # per period: coherent average over its blocks, then delay and gain
    period_of = np.repeat(np.arange(m.size // reps + 1), reps)[: m.size]
    n_p = int(period_of.max()) + 1
    mean_resp = np.stack([resp[period_of == p].mean(axis=0) for p in range(n_p)])
    tau_p, _ = delay_from_response(mean_resp, config)
    m_p = np.array([m[period_of == p].mean() for p in range(n_p)])
    a_p = np.array([approx[period_of == p].mean() for p in range(n_p)]) + tau_p
    if carrier_hz is not None:
        # one oscillator drives LO and sample clock: sro = -cfo / fc, far more precise
        # than a fit through the per-period arrival times
        slope = 1.0 - nu * fs / carrier_hz
        intercept = float(np.mean(a_p - slope * m_p))
    elif n_p >= 2:
        slope, intercept = np.polyfit(m_p, a_p, 1)
    else:
        slope, intercept = 1.0, float(a_p[0] - m_p[0])
    tau_block = (intercept + m * slope) - approx
    aligned_blocks = resp * phasors(2 * np.pi * tau_block / n, bins)
    block_gains = aligned_blocks.mean(axis=1)
    gain = complex(np.mean(block_gains))
    # each block gain averages n_used subcarriers: var(block gain) = noise_var / n_used
    resid = np.var(block_gains - gain) * bins.size if block_gains.size > 2 else 0.0
    snr = abs(gain) ** 2 / max(float(resid), 1e-30)
    return LinkEstimate(
        user=int(user_index),
        delay_samples=float(intercept),
        cfo_hz=float(nu * fs),
        sro=float(slope - 1.0),
        gain=gain,
        snr_db=float(10 * np.log10(snr)),
        capture_clock=int(capture_clock),
    )


def _periodogram_peak(values: np.ndarray, times: np.ndarray, span: float) -> float:
    """Frequency (cycles/sample, |f| <= span) maximising ``|sum v exp(-j 2 pi f t)|``:
    a grid at a quarter of the Fourier resolution, a finer grid around its peak, then
    parabolic interpolation."""
    t = times - times.mean()
    step = 0.25 / (float(np.ptp(times)) or 1.0)
    grid = np.arange(-span, span + step / 2, step)
    steer = phasors(-2 * np.pi * step * t, np.arange(grid.size))
    steer *= np.exp(2j * np.pi * span * t)[:, None]
    center = grid[int(np.argmax(np.abs(values @ steer)))]
    fine_step = step / 8
    grid = center + fine_step * np.arange(-16, 17)
    steer = phasors(-2 * np.pi * fine_step * t, np.arange(-16, 17))
    power = np.abs(values @ (steer * np.exp(-2j * np.pi * center * t)[:, None]))
    i = int(np.clip(np.argmax(power), 1, grid.size - 2))
    y0, y1, y2 = power[i - 1], power[i], power[i + 1]
    denom = y0 - 2 * y1 + y2
    return float(grid[i] + (0.5 * (y0 - y2) / denom * fine_step if denom < 0 else 0.0))


def search_cyclic_pilot(
    capture: np.ndarray,
    config: OfdmConfig,
    root: int,
    reps: int = PILOT_REPS,
    *,
    false_alarm: float = 1e-6,
    n_rows: int = 4,
) -> Detection | None:
    """Find a weak cyclic pilot (ZC ``root``, ``reps`` long blocks per period) by
    matched filtering over the whole capture (complex ``(n,)``): its first period
    start (integer, within about a sample) and CFO, as a :class:`~phy.sync.Detection`
    (``metric`` and ``correlation`` hold the test statistic, ``gain`` is 0), or None.

    The pilot is 64-periodic except for 160 samples per period, so the capture cut into
    ``n_fft``-sample rows ``X[b, t]`` is, up to noise, ``g e^{j 2 pi nu (n b + t)}``
    times one (cyclically shifted) ZC block. With ``nu = (k + delta) / n_fft``:

    1. an FFT over the rows (4x zero-padded) sums all rows coherently at the row
       frequency ``delta`` (cycles per row); the ``n_rows`` strongest frequencies are
       kept (one is the pilot's: it gains the number of rows over noise);
    2. after removing ``delta`` within the row, an FFT gives the ZC spectrum shifted by
       ``k`` bins and delayed by ``tau``; for every ``|k| <= n_fft / (2 short_period)``
       (the Schmidl-Cox CFO range) an inverse FFT of ``S[u + k] conj(Z[u])``
       (zero-padded: half-sample steps) is the correlation over ``tau``. Successive
       periods are ``4000 = 62.5 n_fft`` samples apart, so the pilot's energy sits at
       ``tau`` and ``tau + n_fft/2``: the statistic is the fraction ``T`` of the row's
       energy on these two delays (1 for a clean pilot). Under noise only ``n_fft T``
       is about Gamma(2, 1), so the threshold solves ``(1 + y) e^{-y} = false_alarm /
       n_tests`` (``T > 0.39`` for 1e-6 and 2304 tests); another user's pilot gives
       ``T < 0.22`` for every root pair of the default configuration
       (cross-correlation of distinct ZC roots). A ZC block shifted by ``k`` bins is
       close to a delayed copy of itself, so every ``k`` above the threshold keeps its
       best row and ``tau`` for step 3;
    3. ``k``: the one whose CFO-corrected correlation with the short preamble (summed
       in power over the periods, at the candidate period starts ``tau +- 1`` mod
       ``n_fft/2``) is largest: the short preamble is a comb on every
       ``short_period``-th bin, off its comb under a wrong ``k``; then the period
       start: the candidate whose correlation with the short preamble and long CP (160
       samples; 0.40 at the next best candidate) is largest.

    Works down to about -12 dB per subcarrier for a 16384-sample capture (256 rows);
    below, the start or ``k`` may be wrong, but such a user's received power is then
    below the noise anyway.
    """
    x = np.asarray(capture, complex)
    n = config.n_fft
    half = n // 2
    period = config.preamble_len - config.n_long * n + reps * n
    n_rows_x = x.size // n
    head = config.short_len + config.long_cp
    if n_rows_x < 4 or x.size < period + head:
        return None
    rows = x[: n_rows_x * n].reshape(n_rows_x, n)
    size = 4 * (1 << (n_rows_x - 1).bit_length())
    spec_rows = np.fft.fft(rows, size, axis=0)  # (size, n): row frequency x time in row
    power = np.sum(spec_rows.real**2 + spec_rows.imag**2, axis=1)
    top = np.argsort(power)[-n_rows:]
    delta = (top / size + 0.5) % 1.0 - 0.5  # cycles per row
    t = np.arange(n)
    spectra = np.fft.fft(spec_rows[top] * np.exp(-2j * np.pi * np.outer(delta, t) / n), axis=1)
    k_max = n // (2 * config.short_period)
    ks = np.arange(-k_max, k_max + 1)
    used = config.used_bins
    shifted = spectra[:, (used[None, :] + ks[:, None]) % n]  # (n_rows, n_k, n_used)
    # correlation over tau on a half-sample grid (zero-padded inverse FFT), so that a
    # fractional delay loses little: index i is tau = i / 2, its pair is i + n
    grid = np.zeros(shifted.shape[:2] + (2 * n,), complex)
    grid[:, :, used % (2 * n)] = shifted * np.conj(config.long_sequence(root))
    corr = np.fft.ifft(grid, axis=2) * (2 * n)
    pair = np.abs(corr[..., :n]) ** 2 + np.abs(corr[..., n:]) ** 2
    energy = n * np.sum(np.abs(shifted) ** 2, axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.where(energy > 0, pair / energy, 0.0)
    threshold = _gamma2_threshold(false_alarm / stat.size) / n
    # a ZC block shifted by k bins is close to a delayed copy of itself (the CFO-timing
    # ambiguity of ZC sequences), so every k keeps its best (row, tau) and the short
    # preamble (a comb on every short_period-th bin, off the comb when k is wrong)
    # decides in step 3
    per_k = stat.transpose(1, 0, 2).reshape(ks.size, -1)
    best_flat = np.argmax(per_k, axis=1)
    best_stat = per_k[np.arange(ks.size), best_flat]
    if not np.any(best_stat >= threshold):
        return None
    head_blocks = [
        Block(config.short_bins, config.short_sequence(), 0, config.n_short_blocks),
        Block(config.used_bins, config.long_sequence(root), config.long_cp, 1),
    ]
    ref = render_blocks(head_blocks, config)[:head]
    n_periods = (x.size - head - (period - 1)) // period + 1

    def scores(nu: float, tau: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidate period starts ``tau - 1 .. tau + 1`` mod ``half`` and their
        CFO-corrected correlation power with the first ``length`` samples of the
        pilot, summed over the periods every candidate has in the capture."""
        y = x * np.exp(-2j * np.pi * nu * np.arange(x.size))
        c = np.abs(correlate(y, ref[:length], mode="valid", method="fft")) ** 2
        starts = (tau + np.arange(-1, 2))[:, None] + half * np.arange(-(-period // half) + 1)
        starts = starts[(starts >= 0) & (starts < period)]
        return starts, c[starts[:, None] + period * np.arange(n_periods)].sum(axis=1)

    max_nu = 1.0 / (2 * config.short_period)
    hyps = []  # (short-preamble score, nu, tau, statistic) per k above the threshold
    for i_k in np.flatnonzero(best_stat >= threshold):
        i_row, i_tau = divmod(int(best_flat[i_k]), n)
        nu = float((ks[i_k] + delta[i_row]) / n)  # cycles/sample
        if abs(nu) <= max_nu:
            tau = int(math.floor(i_tau / 2 + 0.5)) % half
            # the short preamble alone picks k: it is a comb on every short_period-th
            # bin, off its comb under a wrong k. The 64-periodic long part leaks into
            # its correlation (ZC energy on the comb bins) at a level that depends only
            # on the candidate mod n_fft: the median removes that floor
            _, s = scores(nu, tau, config.short_len)
            hyps.append((float(s.max() - np.median(s)), nu, tau, float(best_stat[i_k])))
    if not hyps:
        return None
    _, nu, tau, value = max(hyps)
    # under the right k, short preamble + long CP pick the start (0.40 next best)
    starts, s = scores(nu, tau, head)
    start = int(starts[int(np.argmax(s))])
    return Detection(float(start), nu * config.sample_rate_hz, value, value, 0j)


def _gamma2_threshold(p: float) -> float:
    """``y`` with ``(1 + y) e^{-y} = p`` (tail of a Gamma(2, 1) variable), ``0 < p < 1``."""
    y = -math.log(p)
    for _ in range(50):
        y = -math.log(p) + math.log1p(y)
    return y
