"""Over-the-air (OTA) aggregation, split by side so user and receiver code can run in
different processes; everything exchanged is a small plain dataclass.

User side: :func:`pilot_buffer` (cyclic acquisition pilot), :func:`precompensated_payload`
(frame placed, delayed, CFO-derotated and scaled so it lands aligned at the receiver).
Receiver side: :func:`estimate_links` (one capture per user, see
:mod:`phy.estimation`), :func:`predict_gains` (gains at a later capture clock),
:func:`corrections_for` and :func:`estimate_mixup`.

Alignment contract: a payload batch starts (all users' transmit calls) at the same
medium time as the receiver capture that follows; ``delay_samples`` of a
:class:`~phy.estimation.LinkEstimate` is relative to that start, and the frame of
every user is made to land at receiver index ``target_delay``. Phases are predicted
from the CFO and the receiver-sample clock elapsed since acquisition
(``gain * exp(j 2 pi cfo (clock_now - clock_acq) / fs)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from phy.estimation import (
    PILOT_REPS,
    LinkEstimate,
    NoPilotError,
    estimate_user_link,
    pilot_blocks,
    user_root,
)
from phy.sync import delay_from_response, detect_frames
from phy.waveform import (
    Block,
    OfdmConfig,
    data_subcarriers,
    frame_blocks,
    frame_length,
    render_blocks,
    symbols_to_payload,
)

__all__ = [
    "ACQUISITION_THRESHOLD",
    "ACQ_REPS",
    "BURST_GAP",
    "PAIR_LEAD",
    "acquisition_pair",
    "UserCorrection",
    "acquisition_burst",
    "composite_response",
    "estimate_burst",
    "estimate_probe",
    "probe_delay_noise",
    "precompensated_blocks",
    "probe_blocks",
    "probe_length",
    "undetected",
    "corrections_for",
    "estimate_links",
    "estimate_mixup",
    "pilot_buffer",
    "precompensated_payload",
    "predict_gains",
]


@dataclass(frozen=True)
class UserCorrection:
    """What a user needs to pre-compensate (plain floats, receiver-sample units).

    Attributes:
        user: user index.
        delay_samples: where the user's buffer index 0 lands at the receiver.
        sro: sample-rate offset (receiver samples per user sample - 1).
        cfo_hz: CFO to pre-rotate away, Hz (at ``OfdmConfig.sample_rate_hz``).
        target_delay: receiver index where the frame must start (same for all users).
    """

    user: int
    delay_samples: float
    sro: float
    cfo_hz: float
    target_delay: int


class ClippingError(ValueError):
    """A pre-compensated buffer would exceed the DAC's full scale (a payload far louder
    than the unit power its codec aims at, times the slot's scaling): it is not sent."""


def pilot_buffer(user_index: int, n_users: int, config: OfdmConfig) -> np.ndarray:
    """User ``user_index``'s cyclic acquisition pilot, complex64 ``(n,)``: short preamble
    and :data:`~phy.estimation.PILOT_REPS` long ZC blocks with the user's own root (users
    are captured one at a time; the root identifies them)."""
    if not 0 <= user_index < n_users:
        raise ValueError(f"user_index must be in [0, {n_users}), got {user_index}")
    return render_blocks(pilot_blocks(user_index, config), config).astype(np.complex64)


#: long blocks in a one-shot acquisition burst (stream and tdd time bases)
ACQ_REPS = 8
#: user samples between the two bursts of an acquisition pair (CFO refinement span)
BURST_GAP = 4000
#: zeros before an acquisition pair (the burst detector needs a lead-in)
PAIR_LEAD = 64


def acquisition_pair(user_index: int, config: OfdmConfig) -> np.ndarray:
    """Two :func:`acquisition_burst` of ``user_index``, the second ``BURST_GAP`` samples
    after the first, behind ``PAIR_LEAD`` zeros: complex64 ``(PAIR_LEAD + BURST_GAP +
    burst length,)``. The phase advance between the bursts refines the CFO."""
    burst = acquisition_burst(user_index, config)
    out = np.zeros(PAIR_LEAD + BURST_GAP + burst.size, np.complex64)
    out[PAIR_LEAD : PAIR_LEAD + burst.size] = burst
    out[PAIR_LEAD + BURST_GAP :] = burst
    return out


def acquisition_burst(user_index: int, config: OfdmConfig, reps: int = ACQ_REPS) -> np.ndarray:
    """User ``user_index``'s one-shot acquisition burst, complex64 ``(n,)``: short
    preamble and ``reps`` long ZC blocks with the user's root (one period of the cyclic
    pilot, :func:`pilot_buffer`, with fewer blocks): ``n = 288 + 64 (reps - 2)`` samples
    with the default configuration."""
    if user_index < 0:
        raise ValueError(f"user_index must be >= 0, got {user_index}")
    return render_blocks(pilot_blocks(user_index, config, reps), config).astype(np.complex64)


#: Schmidl-Cox threshold of the acquisition-burst detector (no long-capture search behind
#: it, unlike the cyclic loop's pilot): a burst whose metric stays below is not heard
ACQUISITION_THRESHOLD = 0.1


def estimate_burst(
    capture: np.ndarray,
    user_index: int,
    config: OfdmConfig,
    *,
    reps: int = ACQ_REPS,
    capture_clock: int = 0,
    carrier_hz: float | None = None,
) -> LinkEstimate:
    """Link estimate of user ``user_index`` from a capture (complex ``(n,)``) holding its
    one-shot :func:`acquisition_burst`: ``delay_samples`` is the capture index where
    the burst's first sample arrives; CFO, sample-rate offset (tied to the CFO with
    ``carrier_hz``), gain at capture index 0 and SNR as
    :func:`phy.estimation.estimate_user_link`. Raises :class:`NoPilotError` if absent."""
    x = np.asarray(capture)
    root = user_root(user_index, config)
    dets = detect_frames(x, config, root=root, n_long=reps, threshold=ACQUISITION_THRESHOLD)
    period = config.preamble_len - config.n_long * config.n_fft + reps * config.n_fft
    tail = config.long_start  # the detector needs some samples after the burst
    dets = [d for d in dets if d.start + period + tail <= x.size]
    if not dets:
        raise NoPilotError(f"no acquisition burst of user {user_index} in the capture")
    est = None
    for det in dets:  # the short preamble is common: another user's burst may come first
        lo = max(0, int(math.floor(det.start)) - 8)
        part = x[lo : lo + period + 8 + tail]
        try:
            est = estimate_user_link(
                part, user_index, config, reps=reps, capture_clock=capture_clock,
                carrier_hz=carrier_hz,
            )  # fmt: skip
            break
        except ValueError:
            continue
    if est is None:
        raise NoPilotError(f"no acquisition burst of user {user_index} in the capture")
    gain = est.gain * np.exp(-2j * np.pi * est.cfo_hz / config.sample_rate_hz * lo)
    return LinkEstimate(
        est.user,
        est.delay_samples + lo,
        est.cfo_hz,
        est.sro,
        complex(gain),
        est.snr_db,
        capture_clock,
    )


#: repetitions of the probe symbol (one cyclic prefix for all)
PROBE_REPS = 2


def probe_length(config: OfdmConfig) -> int:
    """Samples of a probe: ``cp_len + PROBE_REPS * n_fft``."""
    return config.cp_len + PROBE_REPS * config.n_fft


def probe_blocks(position: int, group_size: int, config: OfdmConfig) -> list[Block]:
    """The probe of the user at ``position`` in a group of ``group_size``:
    ``PROBE_REPS`` OFDM symbols behind one cyclic prefix (``cp_len``) on every
    ``group_size``-th used subcarrier from ``position`` (a comb: the group probes at
    once without interference), carrying the frame's long ZC values there."""
    if not 0 <= position < group_size:
        raise ValueError(f"position must be in [0, {group_size}), got {position}")
    if group_size > config.used_bins.size // 2:
        raise ValueError(f"group_size {group_size} leaves fewer than 2 probe bins per user")
    sl = slice(position, None, group_size)
    return [Block(config.used_bins[sl], config.long_sequence()[sl], config.cp_len, PROBE_REPS)]


def estimate_probe(
    capture: np.ndarray, start: int, group_size: int, config: OfdmConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user (gain, residual delay, noise variance) from the group's superposed probe
    symbols (:func:`probe_blocks`) starting at capture index ``start``.

    Returns complex gains ``(K,)`` on unit-power symbols (each realigned by the whole
    samples of its delay), delays ``(K,)`` in samples (positive = late, unambiguous within
    ``+-n_fft / (2 K)``) and the noise variance per subcarrier ``(K,)`` from each comb's
    scatter around its delay fit."""
    x = np.asarray(capture)
    n = config.n_fft
    # FFT window centred in the cyclic prefix, as the frame's data symbols
    # (phy.waveform.symbol_grid): a band-limited fractional delay rings a burst up and
    # down over a few samples on both sides, so a window ending at the probe's last
    # sample would see the ring-down, which leaks between the combs (a per-user gain
    # bias of a few hundredths of a radian); the known cyclic shift is undone.
    off = config.cp_len // 2
    lo = start + config.cp_len - off
    body = x[lo : lo + PROBE_REPS * n] if lo >= 0 else x[:0]
    if body.size != PROBE_REPS * n:
        raise ValueError("the probe does not fit in the capture")
    k = np.fft.fftfreq(n, 1.0 / n)
    ramp = np.exp(2j * np.pi * k * off / n)
    spectrum = (
        np.fft.fft(body.reshape(PROBE_REPS, n), norm="ortho").mean(axis=0) * ramp / config.scale
    )
    gains, delays, noise = [], [], []
    for j in range(group_size):
        (block,) = probe_blocks(j, group_size, config)
        r = spectrum[block.bins % n] / block.values
        step = np.angle(np.sum(r[1:] * np.conj(r[:-1])))
        tau = -step * n / (2 * np.pi * group_size)
        aligned = r * np.exp(2j * np.pi * block.bins * tau / n)
        # the whole-sample part of the delay realigned (a probe a sample off would average
        # its comb's phase ramp to nearly zero); the fraction is known to a small part of
        # a sample: no noisy slope
        g = np.mean(r * np.exp(2j * np.pi * block.bins * round(tau) / n))
        gains.append(g)
        delays.append(tau)
        noise.append(float(np.mean(np.abs(aligned - g) ** 2)) if r.size > 2 else math.nan)
    return np.array(gains), np.array(delays), np.array(noise)


def probe_delay_noise(
    gains: np.ndarray, noise: np.ndarray, group_size: int, config: OfdmConfig
) -> np.ndarray:
    """Standard deviation (samples) of :func:`estimate_probe`'s residual delays ``(K,)``
    from its gains and noise variances ``(K,)``: the delay is the phase step between a
    comb's adjacent bins (``group_size`` apart), averaged over its steps."""
    steps = max(config.used_bins[::group_size].size - 1, 1)
    power = np.maximum(np.abs(np.asarray(gains)) ** 2, 1e-30)
    step_std = np.sqrt(np.asarray(noise, float) / (power * steps))
    return step_std * config.n_fft / (2 * np.pi * group_size)


def estimate_links(
    captures: Sequence[np.ndarray],
    n_users: int,
    config: OfdmConfig,
    clocks: Sequence[int] | None = None,
    carrier_hz: float | None = None,
) -> list[LinkEstimate]:
    """Estimate every user's link: ``captures[k]`` is the capture of user ``k``'s pilot
    (complex ``(n,)``) starting at receiver clock ``clocks[k]``; ``carrier_hz`` ties the
    sample-rate offset to the CFO (see :func:`~phy.estimation.estimate_user_link`).

    A user whose pilot is not found (deep fade) gets :func:`undetected` (gain 0): the
    power policy then leaves it silent."""
    if len(captures) != n_users:
        raise ValueError(f"need one capture per user ({n_users}), got {len(captures)}")
    clocks = [0] * n_users if clocks is None else list(clocks)
    out = []
    for k, (c, t) in enumerate(zip(captures, clocks, strict=True)):
        try:
            est = estimate_user_link(
                c, k, config, reps=PILOT_REPS, capture_clock=t, carrier_hz=carrier_hz
            )
        except NoPilotError:
            est = undetected(k, t)
        out.append(est)
    return out


def undetected(user: int, clock: int = 0) -> LinkEstimate:
    """Estimate for a user whose pilot was not found: zero gain, NaN delay and CFO."""
    return LinkEstimate(user, math.nan, math.nan, 0.0, 0j, -math.inf, clock)


def predict_gains(estimates: Sequence[LinkEstimate], clock: int, config: OfdmConfig) -> np.ndarray:
    """Complex gains ``(K,)`` referenced to a capture starting at receiver ``clock``."""
    fs = config.sample_rate_hz
    return np.array(
        [
            e.gain * np.exp(2j * np.pi * e.cfo_hz / fs * (clock - e.capture_clock))
            if e.gain != 0
            else 0j
            for e in estimates
        ]
    )


def corrections_for(
    estimates: Sequence[LinkEstimate], target_delay: int | None = None
) -> list[UserCorrection]:
    """Corrections for every user; ``target_delay`` defaults to the largest delay
    rounded up plus 16 samples of margin."""
    if not estimates:
        raise ValueError("no estimates")
    known = [e.delay_samples for e in estimates if math.isfinite(e.delay_samples)]
    if target_delay is None:
        target_delay = int(math.ceil(max(known, default=0.0))) + 16
    for e in estimates:
        if math.isfinite(e.delay_samples) and e.delay_samples > target_delay:
            raise ValueError(f"target_delay {target_delay} is before user {e.user}'s arrival")
    return [
        UserCorrection(e.user, e.delay_samples, e.sro, e.cfo_hz, int(target_delay))
        for e in estimates
    ]


def precompensated_payload(
    payload: np.ndarray,
    correction: UserCorrection,
    tx_scaling: complex,
    config: OfdmConfig,
    buffer_len: int | None = None,
) -> np.ndarray:
    """The user's transmit buffer, complex64 ``(buffer_len,)``.

    The frame carrying ``payload`` (real ``(n_reals,)``) is placed at the buffer index
    that lands at ``target_delay`` (integer rotation), each block delayed by the
    remaining fraction plus the sample-clock drift (per-subcarrier phase ramp), the
    whole buffer derotated by the CFO it will see and multiplied by ``tx_scaling``
    (``b_k``, which also inverts the channel phase). Raises ValueError if it would clip.
    """
    return precompensated_blocks(
        frame_blocks(payload, config), correction, tx_scaling, config, buffer_len
    )


def precompensated_blocks(
    blocks: list[Block],
    correction: UserCorrection,
    tx_scaling: complex,
    config: OfdmConfig,
    buffer_len: int | None = None,
) -> np.ndarray:
    """:func:`precompensated_payload` for any blocks (a frame, a probe symbol):
    complex64 ``(buffer_len,)``, the first block landing at ``target_delay``;
    ``buffer_len`` None or 0: just long enough for the blocks."""
    b = complex(tx_scaling)
    if not (math.isfinite(b.real) and math.isfinite(b.imag)):
        raise ValueError(f"tx_scaling must be finite, got {tx_scaling!r}")
    c = correction
    if b == 0 or not (math.isfinite(c.delay_samples) and math.isfinite(c.cfo_hz)):
        if b != 0:
            raise ValueError(f"user {c.user} has no link estimate but tx_scaling {b}")
        return np.zeros(buffer_len or 1, np.complex64)  # silent user
    lengths = [blk.cp + blk.reps * config.n_fft for blk in blocks]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total = int(sum(lengths))
    ratio = 1.0 + c.sro
    position = (c.target_delay + starts - c.delay_samples) / ratio
    m0 = int(math.floor(position[0]))
    delays = position - m0 - starts
    if not buffer_len:  # None or 0: just long enough
        buffer_len = m0 + total
    if m0 < 0 or m0 + total > buffer_len:
        raise ValueError(f"frame [{m0}, {m0 + total}) does not fit a {buffer_len}-sample buffer")
    buffer = np.zeros(buffer_len, complex)
    buffer[m0 : m0 + total] = render_blocks(blocks, config, delays)
    arrival = c.delay_samples + np.arange(buffer_len) * ratio
    buffer *= b * np.exp(-2j * np.pi * c.cfo_hz / config.sample_rate_hz * arrival)
    peak = max(float(np.abs(buffer.real).max()), float(np.abs(buffer.imag).max()))
    if peak > 1.0:
        raise ClippingError(f"precompensated payload peaks at {peak:.2f} of full scale")
    return buffer.astype(np.complex64)


def estimate_mixup(
    capture: np.ndarray,
    rx_scaling: complex,
    n_reals: int,
    config: OfdmConfig,
    *,
    frame_start: int | None = None,
    common_phase: bool = False,
) -> np.ndarray:
    """Receiver estimate of ``sum_k w_k x_k``, float ``(n_reals,)``, from a capture
    (complex ``(n,)``) of the superposed aligned frames scaled by ``rx_scaling``.

    The frame is located by :func:`phy.sync.detect_frames` (the detection nearest to
    ``frame_start`` when given, else the first); raises ValueError if none is found.
    ``common_phase``: also remove the phase and the delay every user's frame shares (a
    receiver-side timing or phase reference error common to the slot): the users'
    pre-compensation makes the composite response ``a sum_k h_k b_k`` of the long
    preamble real, positive and flat, so its measured phase and phase slope are that
    error (:func:`composite_response`; a common landing error of 0.006 sample alone is
    1-2 dB over genie at 30 dB SNR)."""
    x = np.asarray(capture)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError("capture must be a finite 1-D complex array")
    a = complex(rx_scaling)
    if not (math.isfinite(a.real) and math.isfinite(a.imag)):
        raise ValueError(f"rx_scaling must be finite, got {rx_scaling!r}")
    length = frame_length(n_reals, config)
    dets = detect_frames(x, config)
    if frame_start is not None:
        dets = [d for d in dets if abs(d.start - frame_start) <= config.cp_len / 2]
    if not dets:
        raise ValueError("no payload frame detected in the capture")
    start = int(round(dets[0].start))
    if start < 0 or start + length > x.size:
        raise ValueError("the detected frame does not fit in the capture")
    data = data_subcarriers(x[start : start + length], n_reals, config)
    if common_phase:
        response = a * composite_response(x[start : start + length], config)
        tau, g = delay_from_response(response, config)
        tau, g = float(tau), complex(g)
        if g != 0:
            a *= abs(g) / g  # the composite's phase turned back to 0
            data = data * np.exp(2j * np.pi * config.data_bins * tau / config.n_fft)
    return symbols_to_payload(a * data, n_reals, config)


def composite_response(frame: np.ndarray, config: OfdmConfig) -> np.ndarray:
    """The response of an aligned frame's long preamble (``frame`` complex, from the
    frame start) on each used bin, averaged over its blocks, unit-power symbols, complex
    ``(n_used,)``: for superposed pre-compensated frames, ``sum_k h_k b_k`` times the
    phase ramp of any delay they share. FFT window centred in the preamble's cyclic
    prefix (as :func:`phy.waveform.symbol_grid`)."""
    x = np.asarray(frame)
    n = config.n_fft
    off = config.long_cp // 2
    lo = config.long_start - off
    body = x[lo : lo + config.n_long * n]
    if body.size != config.n_long * n:
        raise ValueError("the frame does not hold its long preamble")
    k = np.fft.fftfreq(n, 1.0 / n)
    spectrum = np.fft.fft(body.reshape(config.n_long, n), norm="ortho").mean(axis=0)
    spectrum *= np.exp(2j * np.pi * k * off / n) / config.scale
    return spectrum[config.used_bins % n] / config.long_sequence()
