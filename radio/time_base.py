"""Lab-real time bases of the closed loop: ``stream`` and ``tdd`` (and ``ideal``).

Stock Plutos start a pushed buffer whenever the push reaches the DMA (milliseconds of
jitter, :mod:`phy.medium`), so the cyclic loop of :mod:`radio.ota_session` (measure on
one push, transmit on the next) only holds on an ``ideal`` medium. Two time bases hold
on real radios, both on the same PHY (:mod:`phy.ota`) and the same user code
(:class:`radio.ota_transmitter.OtaTransmitter` builds every frame):

* ``stream`` (any firmware, software only): every user keeps a continuous TX stream
  (:meth:`radio.base.Radio.start_stream`), the receiver reads its RX stream contiguously,
  so user stream index ``n`` lands at receiver stream index ``offset_k + n (1 + sro_k)``
  until an underflow. **Acquisition** (once, and again only on demand): each user places
  two short one-shot bursts (:func:`phy.ota.acquisition_burst`, ``BURST_GAP`` apart) in
  its stream; they give the offset, the CFO (refined by the phase advance between the
  bursts), the sample-rate offset (tied to the CFO: one oscillator) and the SNR.
  **Per slot**: the group places one probe symbol each (:func:`phy.ota.probe_blocks`, a
  comb per user, all at the same receiver index) that tracks gain, phase and residual
  timing (:func:`phy.ota.estimate_probe`); then power control, and each user places its
  pre-compensated frame **once** at the stream index that lands at the slot's receiver
  index. A user whose TX underflow flag is set, or whose probe shows lost tracking
  (timing off by more than ``LOST_DELAY``), is re-acquired alone; an RX overflow
  (receiver indices broken) re-acquires everyone; the run goes on.
* ``tdd`` (firmware >= v0.39 and a shared sync pulse): users arm one-shot buffers
  (transmit gated to one frame) and the receiver arms its capture on the TDD engine;
  all start on the same pulse. Per slot: probe on one pulse, payload on the next. The
  buffers start on each radio's own sample-clock edge, so without a shared reference
  clock each pulse adds up to one sample of relative timing jitter per user (shown by
  ``benchmarks/time_base.py``); with ``shared_reference`` it is exact.
* ``ideal``: the cyclic :class:`radio.ota_session.OtaSession` on a constant-latency
  medium (the reference; it fails under realistic jitter).

Air-time bookkeeping (:attr:`TimeBaseSession.air`): receiver-side channel uses of
acquisition bursts, probes and payload frames, counted apart.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from phy.estimation import LinkEstimate, NoPilotError
from phy.ota import (
    ACQ_REPS,
    UserCorrection,
    acquisition_burst,
    estimate_burst,
    estimate_mixup,
    estimate_probe,
    precompensated_blocks,
    probe_blocks,
)
from phy.power import get_power_policy, mse_of
from phy.waveform import OfdmConfig, frame_length
from radio.ota_session import MixupResult
from radio.ota_transmitter import OtaTransmitter, SlotOrder

__all__ = ["BURST_GAP", "LinkTrack", "TimeBaseSession", "stream_truth"]

#: user stream samples between the two acquisition bursts (CFO refinement span)
BURST_GAP = 4000
#: receiver samples reserved per user in a batch acquisition (> start latency spread)
ACQ_SPACING = 8000
#: |probe delay| (samples) above which a user counts as having lost tracking
LOST_DELAY = 2.0
#: samples of margin around every placement and capture
MARGIN = 64
#: observations (acquisition, probes) the gain tracker fits
GAIN_POINTS = 8


@dataclass
class LinkTrack:
    """The receiver's knowledge of one user's stream: user stream index ``n`` lands at
    receiver stream index ``offset + n (1 + sro)``; ``cfo_hz`` at the OFDM rate;
    ``noise_var`` per subcarrier symbol; ``gain`` acquisition gain (magnitude check)."""

    offset: float
    sro: float
    cfo_hz: float
    noise_var: float
    gain: complex

    def rx_index(self, n: float) -> float:
        return self.offset + n * (1.0 + self.sro)

    def tx_index(self, i: float) -> float:
        return (i - self.offset) / (1.0 + self.sro)


class GainTrack:
    """Tracked raw complex gain of one user, ``raw(G) = |g| exp(j (phase + 2 pi nu
    (G - ref)))`` at global receiver index ``G`` (stream index; tdd: capture index plus
    one sync period per pulse): a weighted least-squares line through the unwrapped
    phases of the last ``GAIN_POINTS`` observations (acquisition, probes), each weighted
    by its subcarrier observations; magnitude their weighted mean."""

    def __init__(self, raw: complex, at: float, nu: float, weight: float) -> None:
        self.points: list[tuple[float, complex, float]] = [(at, complex(raw), weight)]
        self.nu = nu
        self._fit()

    def predict(self, at: float) -> complex:
        """Raw gain at global index ``at``."""
        return self.magnitude * np.exp(1j * (self.phase + 2 * np.pi * self.nu * (at - self.ref)))

    def add(self, raw: complex, at: float, weight: float) -> None:
        """Fold in an observation; a jump (fading redrawn) restarts the track."""
        pred = self.predict(at)
        if abs(abs(raw) - abs(pred)) > 0.5 * abs(pred):  # (phase: CFO error, fitted)
            self.points = []
        self.points = [*self.points, (at, complex(raw), weight)][-GAIN_POINTS:]
        self._fit()

    def _fit(self) -> None:
        g = np.array([p[0] for p in self.points])
        z = np.array([p[1] for p in self.points])
        w = np.array([p[2] for p in self.points])
        self.ref = float(g[-1])
        phases = np.unwrap(np.angle(z * np.exp(-2j * np.pi * self.nu * (g - self.ref))))
        self.magnitude = float(np.sum(w * np.abs(z)) / np.sum(w))
        if len(g) >= 2 and np.ptp(g) > 0:
            slope, intercept = np.polyfit(g - self.ref, phases, 1, w=np.sqrt(w))
            self.nu += slope / (2 * np.pi)
            self.phase = float(intercept)
        else:
            self.phase = float(phases[-1])


@dataclass
class AirTime:
    """Receiver channel uses by purpose."""

    acquisition: int = 0
    probe: int = 0
    payload: int = 0
    reacquisitions: int = 0
    underflows: int = 0
    overflows: int = 0
    lost_tracking: int = 0
    timing_errors: list[float] = field(default_factory=list)
    cfo_errors_hz: list[float] = field(default_factory=list)


class TimeBaseSession:
    """Closed-loop OTA mixup on the ``stream`` or ``tdd`` time base.

    Args:
        receiver, users: radios (stream/tdd capabilities of :class:`radio.base.Radio`).
        config: OFDM configuration; p_max, policy: power control (:mod:`phy.power`).
        time_base: "stream" or "tdd".
        carrier_hz: ties each user's sample-rate offset to its CFO (one oscillator).
        pulse: tdd only, callable that pulses the shared sync line on demand (None:
            the line pulses periodically by itself).
        sync_period_s: tdd only, the sync line's period (probe and payload use
            consecutive pulses; the phase between them is predicted from it).
        truth: genie ``truth(k) -> LinkTrack`` (true offset, sro, CFO, noise) for the
            genie-aided reference and the error statistics; ``true_gain(k, rx_index)``
            the true effective gain for the genie plan.
    Raises :class:`radio.base.TimeBaseUnsupported` (naming the cause) if a radio cannot
    run ``time_base``.
    """

    def __init__(
        self,
        receiver: object,
        users: Sequence[object],
        config: OfdmConfig | None = None,
        p_max: float = 1.0,
        *,
        time_base: str = "stream",
        policy: str = "mmse",
        carrier_hz: float | None = None,
        pulse: Callable[[], None] | None = None,
        sync_period_s: float | None = None,
        truth: Callable[[int], LinkTrack] | None = None,
        true_gain: Callable[[int, float], complex] | None = None,
    ) -> None:
        if time_base not in ("stream", "tdd"):
            raise ValueError(f"time_base must be 'stream' or 'tdd', got {time_base!r}")
        if not users:
            raise ValueError("need at least one user radio")
        self.receiver = receiver
        self.users = list(users)
        self.config = config or OfdmConfig()
        self.p_max = float(p_max)
        self.time_base = time_base
        self.policy = get_power_policy(policy)
        self.carrier_hz = carrier_hz
        self.pulse = pulse
        if time_base == "tdd" and sync_period_s is None:
            raise ValueError(
                "the tdd time base needs the sync line's period (sync_period_s): the phase "
                "between the probe's and the payload's pulses is predicted from it"
            )
        self.sync_period_s = sync_period_s
        self.truth = truth
        self.true_gain = true_gain
        self.tx = [OtaTransmitter(r, self.config, k) for k, r in enumerate(self.users)]
        for radio in [receiver, *self.users]:
            radio.check_time_base(time_base)
        self.tracks: list[LinkTrack | None] = [None] * len(self.users)
        self.air = AirTime()
        self._buf = np.zeros(0, np.complex64)
        self._buf_start = 0  # receiver stream index of _buf[0]
        self._started = False
        self.noise_var: float | None = None  # per subcarrier, measured on silence
        self.gain_tracks: list[GainTrack | None] = [None] * len(self.users)
        self._pulses = 0  # tdd: sync pulses used so far
        self._burst_len = acquisition_burst(0, self.config).size
        self._probe_len = self.config.cp_len + self.config.n_fft

    # ------------------------------------------------------------ receiver stream
    @property
    def rx_end(self) -> int:
        """Receiver stream samples read so far."""
        return self._buf_start + self._buf.size

    def _window(self, start: int, stop: int) -> np.ndarray:
        """Receiver stream samples ``[start, stop)`` (reads forward as needed; ``start``
        must not be before what is still buffered)."""
        if start < self._buf_start:
            raise RuntimeError("receiver window already dropped")
        if start > self.rx_end:  # skip ahead without computing the samples
            self.receiver.discard_stream(start - self.rx_end)
            self._buf, self._buf_start = np.zeros(0, np.complex64), start
        if stop > self.rx_end:
            new = np.asarray(self.receiver.read_stream(stop - self.rx_end), np.complex64)
            self._buf = np.concatenate([self._buf[start - self._buf_start :], new])
            self._buf_start = start
        return self._buf[start - self._buf_start : stop - self._buf_start]

    def skip(self, n: int) -> None:
        """The receiver reads on ``n`` stream samples it does not need (stream base)."""
        self._window(self.rx_end + int(n), self.rx_end + int(n))

    def start(self) -> None:
        """Start every user's TX stream and the receiver's RX stream (stream base)."""
        if self.time_base == "stream":
            for user in self.users:
                user.start_stream()
            silence = self._window(0, 4096)  # before any stream plays: noise only
            self.noise_var = float(np.mean(np.abs(silence) ** 2)) / self.config.scale**2
            for radio in [self.receiver, *self.users]:
                radio.clear_status()
        self._started = True

    # ------------------------------------------------------------ acquisition
    def _bursts(self, k: int) -> np.ndarray:
        burst = acquisition_burst(k, self.config)
        out = np.zeros(BURST_GAP + burst.size, np.complex64)
        out[: burst.size] = burst
        out[BURST_GAP:] = burst
        return out

    def _estimate(self, k: int, samples: np.ndarray, first: int) -> tuple[LinkEstimate, float]:
        """Both bursts of user ``k`` in ``samples`` (receiver index ``first``): estimate,
        with the CFO refined by the phase advance between the bursts; returns it and
        the receiver index of the first burst."""
        e1 = estimate_burst(samples, k, self.config, carrier_hz=self.carrier_hz)
        lo = int(e1.delay_samples) + BURST_GAP - 2 * MARGIN
        e2 = estimate_burst(samples[lo:], k, self.config, carrier_hz=self.carrier_hz)
        fs = self.config.sample_rate_hz
        nu = (e1.cfo_hz + e2.cfo_hz) / 2 / fs
        d1, d2 = e1.delay_samples, lo + e2.delay_samples
        p1 = e1.gain * np.exp(2j * np.pi * e1.cfo_hz / fs * d1)  # phase at each burst
        p2 = e2.gain * np.exp(2j * np.pi * e2.cfo_hz / fs * (d2 - lo))
        span = d2 - d1
        wrap = np.angle(p2 / p1 * np.exp(-2j * np.pi * nu * span))
        nu += wrap / (2 * np.pi * span)
        sro = -nu * fs / self.carrier_hz if self.carrier_hz else e1.sro
        snr = 10 ** ((e1.snr_db + e2.snr_db) / 20)
        # gain at the first burst under the refined CFO, from both bursts (referenced
        # there, not at the window start: a CFO error would turn a far reference)
        gain = (p1 + p2 * np.exp(-2j * np.pi * nu * span)) / 2
        est = LinkEstimate(k, d1 + first, nu * fs, sro, complex(gain), 10 * math.log10(snr))
        return est, d1 + first

    def acquire(self, which: Sequence[int] | None = None, max_search: int = 200_000) -> None:
        """(Re-)acquire users ``which`` (default all): each places its two bursts in its
        stream (tdd: arms them on the next pulse); the receiver finds them."""
        if not self._started:
            self.start()
        which = list(range(len(self.users))) if which is None else list(which)
        self.air.reacquisitions += len(which) if any(self.tracks) else 0
        if self.time_base == "tdd":
            for k in which:  # one user per pulse: no overlap whatever the delays
                pad = np.zeros(MARGIN, np.complex64)  # the detector needs a lead-in
                self.users[k].arm_transmit(np.concatenate([pad, self._bursts(k)]))
                capture = self._arm_receive(BURST_GAP + self._burst_len + 4 * MARGIN)
                est, d1 = self._estimate(k, capture, 0)
                self._set_track(k, est, d1 - MARGIN, 0, 0)
                self.air.acquisition += 2 * self._burst_len
            return
        base = self.rx_end
        placed = {}
        for j, k in enumerate(which):
            n = self.users[k].earliest_index() + MARGIN + j * ACQ_SPACING
            self.users[k].place(self._bursts(k), n)
            placed[k] = n
        span = (len(which) + 4) * ACQ_SPACING
        pending = list(which)
        while pending:
            window = self._window(base, base + span)
            for k in list(pending):
                try:
                    est, d1 = self._estimate(k, window, base)
                except NoPilotError:
                    continue
                self._set_track(k, est, d1, placed[k], base)
                self.air.acquisition += 2 * self._burst_len
                pending.remove(k)
            if pending and span >= max_search:
                raise RuntimeError(f"users {pending}: acquisition bursts not found")
            span *= 2
        for k in which:
            self.users[k].clear_status()

    def _set_track(self, k: int, est: LinkEstimate, d1: float, n: int, first: int) -> None:
        offset = d1 - n * (1.0 + est.sro)
        self._seed_gain(k, est, first)
        self.tracks[k] = LinkTrack(offset, est.sro, est.cfo_hz, est.noise_var, est.gain)
        if self.truth is not None:
            true = self.truth(k)
            self.air.cfo_errors_hz.append(abs(est.cfo_hz - true.cfo_hz))
            if self.time_base == "stream":
                self.air.timing_errors.append(abs(offset - true.offset))

    def _arm_receive(self, n: int) -> np.ndarray:
        """tdd capture on the next pulse (pulsed on demand if a pulse callable was
        given); every capture is assumed to take the pulse after the previous one."""
        if self.pulse is not None:
            self.pulse()
        self._pulses += 1
        return np.asarray(self.receiver.arm_receive(n))

    def _global(self, index: float, pulse: int | None = None) -> float:
        """Global receiver index of capture ``index`` (stream: the same; tdd: plus one
        sync period of samples per pulse, ``pulse`` defaulting to the latest)."""
        if self.time_base != "tdd":
            return float(index)
        pulse = self._pulses if pulse is None else pulse
        return index + pulse * self.sync_period_s * self.config.sample_rate_hz

    def reset_gains(self) -> None:
        """Forget the tracked gains (the fading changed, e.g. a new round's draw)."""
        self.gain_tracks = [None] * len(self.users)

    def _seed_gain(self, k: int, est: LinkEstimate, first: int) -> None:
        """The acquisition's gain (``est.gain`` at its first burst, capture index
        ``est.delay_samples``; the capture started at receiver index ``first``) seeds
        user ``k``'s tracker."""
        nu = est.cfo_hz / self.config.sample_rate_hz
        g0 = self._global(est.delay_samples)
        weight = 2 * ACQ_REPS * len(self.config.used_bins)
        self.gain_tracks[k] = GainTrack(est.gain, g0, nu, weight)

    def _update_gains(self, effective: np.ndarray, at: int, tracks: list[LinkTrack]) -> None:
        """Fold the probe's effective gains (at capture index ``at``, pre-rotated by each
        track's CFO) into the trackers; refine each track's CFO (and tied SRO)."""
        fs = self.config.sample_rate_hz
        n_bins = len(self.config.used_bins) / len(tracks)
        g_at = self._global(at)
        for k, t in enumerate(tracks):
            raw = effective[k] * np.exp(2j * np.pi * t.cfo_hz / fs * at)
            tr = self.gain_tracks[k]
            if tr is None:
                self.gain_tracks[k] = GainTrack(raw, g_at, t.cfo_hz / fs, n_bins)
                continue
            tr.add(raw, g_at, n_bins)
            t.cfo_hz = tr.nu * fs
            if self.carrier_hz:
                t.sro = -t.cfo_hz / self.carrier_hz

    def _predicted_gains(self, target: int, tracks: list[LinkTrack]) -> np.ndarray:
        """Effective gains of the payload landing at capture index ``target`` (tdd: on
        the next pulse), pre-rotated by each track's CFO."""
        fs = self.config.sample_rate_hz
        pulse = self._pulses + 1 if self.time_base == "tdd" else None
        g = self._global(target, pulse)
        return np.array(
            [
                tr.predict(g) * np.exp(-2j * np.pi * t.cfo_hz / fs * target)
                for tr, t in zip(self.gain_tracks, tracks, strict=True)
            ]
        )

    # ------------------------------------------------------------ slots
    def _check_flags(self) -> None:
        if self.time_base != "stream":
            return
        if self.receiver.status()["rx_overflow"]:
            self.air.overflows += 1
            self.receiver.clear_status()
            self.acquire()
        lost = [k for k, u in enumerate(self.users) if u.status()["tx_underflow"]]
        if lost:
            self.air.underflows += len(lost)
            self.acquire(lost)

    def _orders(
        self, target: int, tracks: Sequence[LinkTrack], scaling: np.ndarray
    ) -> list[tuple[int, SlotOrder]]:
        """Per user: (stream index of its buffer, the order landing it at ``target``)."""
        out = []
        for k, t in enumerate(tracks):
            n0 = 0 if self.time_base == "tdd" else int(math.floor(t.tx_index(target))) - MARGIN
            delay = t.rx_index(n0) if self.time_base == "stream" else t.offset
            order = SlotOrder(delay, t.sro, t.cfo_hz, int(target), complex(scaling[k]), 0)
            out.append((n0, order))
        return out

    def _target(self, tracks: Sequence[LinkTrack]) -> int:
        """Receiver index of the next placement: after every user's earliest index."""
        if self.time_base == "tdd":
            return int(math.ceil(max(t.offset for t in tracks))) + MARGIN
        return int(
            math.ceil(
                max(
                    t.rx_index(u.earliest_index() + 2 * MARGIN)
                    for t, u in zip(tracks, self.users, strict=True)
                )
            )
        )

    def _place(self, k: int, samples: np.ndarray, n0: int) -> None:
        if self.time_base == "tdd":
            self.users[k].arm_transmit(samples)
        else:
            self.users[k].place(samples, n0)

    def _capture(self, target: int, n: int) -> tuple[np.ndarray, int]:
        """Samples from ``target - MARGIN`` (stream) or the pulse (tdd); and the index
        of ``target`` in them."""
        if self.time_base == "tdd":
            return self._arm_receive(target + n + MARGIN), target
        return self._window(target - MARGIN, target + n + MARGIN), MARGIN

    def probe(self, tracks: Sequence[LinkTrack]) -> tuple[np.ndarray, np.ndarray, int]:
        """One probe symbol per user at the same receiver index: (effective gains,
        residual delays, receiver index of the probe)."""
        target = self._target(tracks)
        kk = len(tracks)
        for k, (n0, order) in enumerate(self._orders(target, tracks, np.ones(kk))):
            blocks = probe_blocks(k, kk, self.config)
            buf = precompensated_blocks(blocks, order.correction(k), 1.0, self.config)
            self._place(k, buf[max(0, -n0) :] if n0 < 0 else buf, n0)
        samples, at = self._capture(target, self._probe_len)
        gains, delays, _ = estimate_probe(samples, at, kk, self.config)
        self.air.probe += self._probe_len
        return gains, delays, target

    def mixup(self, payloads: np.ndarray, weights: np.ndarray, genie: bool = False) -> MixupResult:
        """One OTA mixup of ``payloads`` (real ``(K, n_reals)``) with ``weights``
        (``(K,)``): flags checked (re-acquiring whom they name), probe, power control,
        every frame placed once, the receiver's estimate. ``genie``: true links."""
        x = np.asarray(payloads, float)
        w = np.asarray(weights, float)
        kk = len(self.users)
        if x.ndim != 2 or x.shape[0] != kk:
            raise ValueError(f"payloads must have shape ({kk}, n_reals), got {x.shape}")
        if w.shape != (kk,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be finite, >= 0, shape ({kk},)")
        if genie and (self.truth is None or self.true_gain is None):
            raise ValueError("genie mode needs truth and true_gain")
        if not self._started or any(t is None for t in self.tracks):
            self.acquire([k for k, t in enumerate(self.tracks) if t is None])
        self._check_flags()
        if genie:
            tracks = [self.truth(k) for k in range(kk)]
            target = self._target(tracks)
            gains = np.array([self.true_gain(k, target) for k in range(kk)])
        else:
            tracks = list(self.tracks)
            gains, delays, at = self.probe(tracks)
            lost = [
                k
                for k in range(kk)
                if abs(delays[k]) > LOST_DELAY
                or abs(gains[k]) ** 2 < 0.01 * abs(tracks[k].gain) ** 2
            ]
            if lost:  # tracking lost: re-acquire those users, probe again
                self.air.lost_tracking += len(lost)
                self.acquire(lost)
                tracks = list(self.tracks)
                gains, delays, at = self.probe(tracks)
            self._update_gains(gains, at, tracks)
            target = self._target(tracks)
            gains = self._predicted_gains(target, tracks)
        noise = (
            self.noise_var
            if self.noise_var is not None
            else float(np.nanmedian([t.noise_var for t in tracks]))
        )
        extra = {}
        if "rng" in inspect.signature(self.policy).parameters:
            extra = {"rng": np.random.default_rng(0)}
        scaling = self.policy(gains, w, self.p_max, noise, **extra)
        b = np.asarray(scaling.tx_scaling, complex)
        a = complex(np.asarray(scaling.rx_scaling))
        n_reals = x.shape[1]
        length = frame_length(n_reals, self.config)
        for k, (n0, order) in enumerate(self._orders(target, tracks, b)):
            self._place(k, self.tx[k].payload_waveform(x[k], order), n0)
        samples, at = self._capture(target, length)
        self.air.payload += length
        wanted = w @ x
        try:
            estimate = estimate_mixup(samples, a, n_reals, self.config, frame_start=at)
        except ValueError:
            estimate = np.zeros(n_reals)
        closed = float(np.asarray(mse_of(gains, w, b, a, noise)))
        if self.truth is not None and self.true_gain is not None:
            tg = np.array([self.true_gain(k, target) for k in range(kk)])
            tn = float(np.mean([self.truth(k).noise_var for k in range(kk)]))
            closed = float(np.asarray(get_power_policy("mmse")(tg, w, self.p_max, tn).mse))
        return MixupResult(
            estimate=estimate,
            target=wanted,
            mse_vs_target=float(np.mean((estimate - wanted) ** 2)),
            closed_form_mse=closed,
            predicted_mse=float(np.asarray(mse_of(gains, w, b, a, noise))),
            tx_scaling=b,
            rx_scaling=a,
        )


def stream_truth(
    medium: object,
    user_names: Sequence[str],
    receiver_name: str,
    config: OfdmConfig,
    time_base: str = "stream",
) -> tuple[Callable[[int], LinkTrack], Callable[[int, float], complex]]:
    """Genie knowledge on a :class:`phy.medium.SharedMedium`: ``truth(k)`` (user k's
    true stream mapping, sro, CFO at the OFDM rate and noise per subcarrier) and
    ``true_gain(k, i)``: the effective complex gain at receiver index ``i`` of a unit
    symbol sent with the true CFO pre-rotated away (so phase-stable in ``i``)."""
    rx = medium.port(receiver_name)
    noise_sc = (
        medium.noise_power(receiver_name)
        * config.used_bins.size
        / (config.n_fft * config.amplitude**2)
    )

    def truth(k: int) -> LinkTrack:
        port = medium.port(user_names[k])
        t = medium.link_truth(user_names[k], receiver_name)
        fs_rx = rx.actual_sample_rate_hz
        sro = 1.0 / (1.0 + t.sro_ppm * 1e-6) - 1.0
        if time_base == "stream":
            t0 = port.stream_index_time_s(0)
            offset = (t0 + t.delay_s - rx.stream_time_s(0)) * fs_rx
        else:
            offset = math.nan
        cfo = t.cfo_hz * config.sample_rate_hz / fs_rx
        return LinkTrack(offset, sro, cfo, noise_sc, complex(t.gain))

    def true_gain(k: int, i: float) -> complex:
        t = medium.link_truth(user_names[k], receiver_name)
        t_rx0 = rx.stream_time_s(0) if time_base == "stream" else 0.0
        return complex(t.gain * np.exp(1j * t.phase_rad) * np.exp(2j * np.pi * t.cfo_hz * t_rx0))

    return truth, true_gain


_ = UserCorrection  # re-exported type of SlotOrder.correction (documentation)
