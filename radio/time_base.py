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

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from phy.estimation import LinkEstimate, NoPilotError
from phy.ota import (
    ACQ_REPS,
    BURST_GAP,
    PAIR_LEAD,
    PROBE_REPS,
    acquisition_burst,
    estimate_burst,
    estimate_mixup,
    estimate_probe,
    probe_delay_noise,
    probe_length,
)
from phy.power import get_power_policy, mse_of
from phy.tdd_timing import PulseClocks
from phy.waveform import OfdmConfig, frame_length
from radio.ota_session import MixupResult, SlotPlan
from radio.ota_transmitter import (
    KIND_ACQUISITION,
    KIND_PAYLOAD,
    KIND_PROBE,
    MODE_STREAM,
    MODE_TDD,
    OtaTransmitter,
    SlotOrder,
)

log = logging.getLogger(__name__)

__all__ = [
    "GainTrack",
    "LinkTrack",
    "StreamSlotPlan",
    "TimeBaseReceiver",
    "TimeBaseSession",
    "common_shift_hz",
    "derotate",
    "stream_truth",
]
#: receiver samples reserved per user in a batch acquisition (> start latency spread)
ACQ_SPACING = 8000
#: |probe delay| (samples) above which a user counts as having lost tracking
LOST_DELAY = 2.0
#: samples of margin around every placement and capture
MARGIN = 64
#: observations (acquisition, probes) the gain tracker fits
GAIN_POINTS = 8
#: GainTrack: receiver samples between observations beyond which the phase line restarts,
#: and the line span over which a CFO counts as settled (a restarted line shorter than
#: that only moves the phase)
PHASE_GAP, SETTLE_SPAN = 100_000, 50_000
#: the longest gap a line not yet settled unwraps (its CFO fitted over 30k samples)
FRESH_PHASE_GAP = 300_000
#: an unsettled line carries its phase at most ten times the span its CFO was measured
#: over (FRESH_PHASE_GAP at most): the acquisition's CFO alone is measured over
#: BURST_GAP samples and at low SNR is off by several Hz (default run: 3.7 Hz at -1.4 dB,
#: 8.6 Hz at 3.8 dB), which over a 77k or 181k-sample gap slipped a cycle for good
ACQ_PHASE_GAP = 10 * BURST_GAP
#: stream: the timing weight behind an offset is capped at this many acquisitions at
#: 30 dB (so a probe's residual delay still moves it)
TIMING_WEIGHT_CAP = 1
#: GainTrack: a magnitude jump counts as fading redrawn only beyond this many standard
#: deviations of the observation's noise (8 users at 10 dB: a weak user's probe is off
#: by half its magnitude about one probe in eight, and restarting on it lost the track)
JUMP_SIGMAS = 4.0
#: stream: a re-acquisition's CFO within this of the user's settled CFO keeps the
#: settled one (an underflow or a lost probe leaves the oscillator as it was; a low-SNR
#: acquisition's CFO is off by up to 15 Hz, half a cycle over two probes 37k apart)
REACQ_CFO_TOLERANCE_HZ = 60.0
#: stream: extra probes at most, right after a fresh acquisition, until its phase line
#: goes through FRESH_POINTS points (the acquisition and two probes; a restarted line: its
#: pair lay far back, or a magnitude jump). 8 users at 10 dB: a weak user's CFO from the
#: acquisition and one probe was off by 4-6 Hz, 30-40 degrees over the probe-to-frame gap
FRESH_PROBES = 3
FRESH_POINTS = 3
#: stream on the wall clock: a send's round trip assumed before the first is timed, s
REALTIME_SEND_GUESS_S = 0.01
#: stream on the wall clock: placements are this much further ahead than the sends'
#: round trips ask, for host scheduling hiccups (a busy node process, the GIL), s
REALTIME_GUARD_S = 0.03
#: on the wall clock and on tdd a settled phase line unwraps over this many samples
#: (probes lie a round trip or a few sync periods apart; its CFO, fitted over SETTLE_SPAN
#: or tdd's calibration pulses, is good to a small fraction of a cycle over a second;
#: PHASE_GAP is one to five tdd periods: the line restarted on every gap)
LONG_PHASE_GAP = 1_000_000
#: tdd on the wall clock: orders wait this long past a pulse that came too close, s,
#: and go only with at least this fraction of a period left before the next pulse
PULSE_SETTLE_S, PULSE_ROOM = 0.005, 0.6
#: stream on the wall clock: a fresh phase line gets this many probes this far apart in
#: one request (their span about twice SETTLE_SPAN; each gap within ACQ_PHASE_GAP)
TRAIN_PROBES, TRAIN_SPACING = 8, 13_000
#: tdd: pulses a user's acquisition pair is tried on before the user counts as faded
#: (8 users at 10 dB: a user 12 dB below the rest was missed on one pulse in the noise,
#: its weight lost for the round; stream searches on over a wider window)
TDD_ACQ_TRIES = 2
#: tdd: probe spacings (pulses) whose CFO aliases a gain tracker tries
CFO_ALIAS_STRIDES = (2, 3)
#: tdd: probe pulses of every acquired user right after an acquisition (the users'
#: sample-clock lag walks, :mod:`phy.tdd_timing`)
CAL_PULSES = 12
#: tdd: a payload waits up to this many pulses after its probe for one on which every
#: user's buffer start is sure to the sample (margin from the clock wraps, samples)
MAX_WAIT, SAFE_MARGIN = 10, 0.04
#: tdd: when no pulse within MAX_WAIT is sure, the slot's users probe on this many
#: consecutive pulses and the search starts again, at most this many times
UNSURE_PROBES, UNSURE_CALIBRATIONS = 4, 2
#: tdd: after those, the payload waits up to this many pulses for a sure one (then it
#: goes on the surest)
LAST_WAIT = 40
#: tdd: a payload this many pulses or more after its probe gets probes on the pulses
#: before it, at most REPROBES (its users' phases drift with their CFO errors over the
#: wait; one probe alone then sets a weak user's phase: 8 users at 10 dB, one 16 dB
#: below the strongest was 62 degrees off after a 25-pulse wait, +3.7 dB over genie)
REPROBE_AFTER, REPROBES = 3, 3
#: tdd: searches for a sure payload pulse at most (the host may reach a later one)
HOST_RETRIES = 3


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
    by its subcarrier observations; magnitude their weighted mean. An observation more
    than ``PHASE_GAP`` samples after the previous one starts the phase line anew from
    the CFO fitted so far (a CFO error of a Hz turns the phase by half a cycle in 0.5 s:
    the cycle count over such a gap is unknown; a re-acquisition or a stalled receiver
    leaves one); once a CFO was fitted over ``SETTLE_SPAN`` samples, a restarted line
    shorter than that moves only the phase. The magnitude keeps every point."""

    def __init__(
        self,
        raw: complex,
        at: float,
        nu: float,
        weight: float,
        settled: bool = False,
        bounded_unwrap: bool = True,
        settled_gap: float = PHASE_GAP,
        alias_spacing: float = 0.0,
        stamp: object = None,
    ) -> None:
        #: stream: an unsettled line unwraps over at most ``ACQ_PHASE_GAP`` per
        #: ``BURST_GAP`` of CFO span (its probes can lie a group period apart); tdd probes
        #: every pulse and its calibration pulses fit the CFO, so it keeps
        #: ``FRESH_PHASE_GAP``
        self.bounded_unwrap = bounded_unwrap
        #: a settled line's gap (PHASE_GAP; on the wall clock and tdd LONG_PHASE_GAP, where
        #: probes lie a round trip apart)
        self.settled_gap = float(settled_gap)
        #: tdd: the sync period in samples (observations lie whole periods apart)
        self.alias_spacing = float(alias_spacing)
        #: (global index, raw gain, weight, stamp): ``stamp`` is the owner's key of the
        #: index (tdd: pulse and capture index), so :meth:`retime` can move it later
        self.points: list[tuple[float, complex, float, object]] = [
            (at, complex(raw), weight, stamp)
        ]
        self.phased = 1  # the latest points the phase line goes through
        #: nu fitted over SETTLE_SPAN samples of phase line (or carried from an earlier
        #: round's track: ``settled``)
        self.settled = settled
        self.nu = self.nu0 = nu  # nu0: the CFO the track started from
        self._fit()

    def predict(self, at: float) -> complex:
        """Raw gain at global index ``at``."""
        return self.magnitude * np.exp(1j * (self.phase + 2 * np.pi * self.nu * (at - self.ref)))

    def add(
        self,
        raw: complex,
        at: float,
        weight: float,
        noise_var: float = 0.0,
        stamp: object = None,
    ) -> None:
        """Fold in an observation of ``weight`` subcarrier symbols, each with
        ``noise_var`` (``stamp``: see :attr:`points`); a jump (fading redrawn) restarts
        the track: a magnitude off the prediction by half of it and by ``JUMP_SIGMAS`` of
        the observation's noise."""
        pred = self.predict(at)
        jump = abs(abs(raw) - abs(pred))  # (phase: CFO error, fitted)
        if jump > 0.5 * abs(pred) and jump > JUMP_SIGMAS * math.sqrt(noise_var / weight):
            self.points, self.phased = [], 0
        elif at - self.points[-1][0] > self._gap():
            self.phased = 0  # too far to count the cycles in between: the line restarts
        self.points = [*self.points, (at, complex(raw), weight, stamp)][-GAIN_POINTS:]
        self.phased = min(self.phased + 1, len(self.points))
        self._fit()

    def retime(self, global_index: Callable[[object], float]) -> None:
        """Move every stamped point to ``global_index(stamp)`` and refit (tdd: a refit
        of the sample-clock walks moves the receiver's lag on past pulses; points kept
        at the indices of an older fit bent the line by tenths of a sample times the
        CFO, 1-2 degrees at 30 kHz, 2-5 dB over genie at 30 dB)."""
        if any(p[3] is None for p in self.points):
            return
        self.points = [(global_index(s), z, w, s) for _, z, w, s in self.points]
        self._fit()

    def _gap(self) -> float:
        """Samples from the latest point over which the line still counts the cycles:
        settled, ``settled_gap``; else ten times the span its CFO was measured over (the
        acquisition's ``BURST_GAP``, or the phased points'), at most ``FRESH_PHASE_GAP``."""
        if self.settled:
            return self.settled_gap
        if not self.bounded_unwrap:
            return FRESH_PHASE_GAP
        g = [p[0] for p in self.points[-self.phased :]] if self.phased else []
        span = max(g) - min(g) if g else 0.0
        return min(FRESH_PHASE_GAP, ACQ_PHASE_GAP * max(1.0, span / BURST_GAP))

    def _fit(self) -> None:
        g = np.array([p[0] for p in self.points])
        z = np.array([p[1] for p in self.points])
        w = np.array([p[2] for p in self.points])
        self.ref = float(g[-1])
        self.magnitude = float(np.sum(w * np.abs(z)) / np.sum(w))
        g, z, w = g[-self.phased :], z[-self.phased :], w[-self.phased :]
        # phases: no observation outweighs the latest (an old, heavy one would pin the
        # line and turn any offset into a CFO error); magnitude: all weights
        phase_w = np.minimum(w, w[-1])
        span = float(np.ptp(g)) if len(g) else 0.0
        if len(g) >= 2 and span > 0 and (not self.settled or span >= SETTLE_SPAN):
            self.nu, self.phase = self._unaliased_line(g, z, phase_w)
            self.settled = self.settled or span >= SETTLE_SPAN
        else:  # one point, or a restarted line too short to improve a settled CFO
            phases = np.unwrap(np.angle(z * np.exp(-2j * np.pi * self.nu * (g - self.ref))))
            self.phase = float(np.average(phases, weights=phase_w))

    def _unaliased_line(self, g: np.ndarray, z: np.ndarray, w: np.ndarray) -> tuple[float, float]:
        """The phase line through ``z`` at ``g`` (weights ``w``): (CFO, cycles per sample;
        phase at ``ref``). tdd (``alias_spacing``): probes s pulses apart only cannot tell
        the CFO from itself plus j / s cycles per period (a host that probed every other
        0.1 s pulse, with an acquisition's CFO 2.5 Hz off, kept a line 5 Hz off and turned
        payloads an odd number of pulses on by half a cycle), so those lines are fitted
        too; observations at other spacings make the wrong ones crooked. Of the straight
        lines (within 4x the least residual) the unwrapped one stays unless another, a
        different line, lies nearer the acquisition's CFO (whole cycles per period are
        never seen: they differ only by the captures' offsets within their periods)."""
        fit = self._line(self.nu, g, z, w)
        if not self.alias_spacing or len(g) < 3:
            return fit[0], fit[1]
        aliases = [
            self._line(self.nu + j / (s * self.alias_spacing), g, z, w)
            for s in CFO_ALIAS_STRIDES
            for j in (*range(1, s), *range(-s + 1, 0))
        ]
        least = min(f[2] for f in [fit, *aliases])
        straight = [f for f in aliases if f[2] <= 4 * least]
        if fit[2] <= 4 * least:  # refitted from another start, the same line would only
            # be pulled towards the acquisition's CFO: only a different line competes
            far = 0.25 / self.alias_spacing
            straight = [fit] + [f for f in straight if abs(f[0] - fit[0]) > far]
        best = min(straight, key=lambda f: abs(f[0] - self.nu0))
        return best[0], best[1]

    def _line(
        self, nu: float, g: np.ndarray, z: np.ndarray, w: np.ndarray
    ) -> tuple[float, float, float]:
        """Weighted least-squares phase line through ``z`` at ``g`` (weights ``w``),
        unwrapped about a CFO of ``nu`` cycles per sample: (fitted CFO, phase at
        ``ref``, weighted squared residual in rad^2)."""
        phases = np.unwrap(np.angle(z * np.exp(-2j * np.pi * nu * (g - self.ref))))
        slope, intercept = np.polyfit(g - self.ref, phases, 1, w=np.sqrt(w))
        residual = phases - (slope * (g - self.ref) + intercept)
        return nu + slope / (2 * np.pi), float(intercept), float(np.sum(w * residual**2))


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


class StreamSlotPlan(SlotPlan):
    """A :class:`radio.ota_session.SlotPlan` of the stream or tdd time base: ``orders``
    per user (mode, stream index), ``target`` (receiver stream index or tdd capture
    index of the frame) and ``shift_hz`` (the receiver-side frequency shift the users'
    pre-rotations leave, :func:`common_shift_hz`) used by
    :meth:`TimeBaseReceiver.receive`."""

    def __init__(
        self, orders: list[SlotOrder], target: int, shift_hz: float = 0.0, **kw: object
    ) -> None:
        super().__init__(**kw)
        object.__setattr__(self, "orders", orders)
        object.__setattr__(self, "target", int(target))
        object.__setattr__(self, "shift_hz", float(shift_hz))

    def order(self, k: int) -> SlotOrder:
        """What user ``k`` of the slot must do."""
        return self.orders[k]


def common_shift_hz(cfos_hz: Sequence[float]) -> float:
    """The frequency shift (Hz) the receiver removes digitally from a slot's capture, so
    each user pre-rotates only ``cfo_k - shift``: the mid-range of the users' CFOs.

    Pre-rotating the full CFO (up to +-46 kHz between two +-25 ppm radios at 915 MHz)
    pushes a frame's band-edge subcarriers (bin 26 of 64: 0.41 fs) to 0.45 fs, where a
    transmitter's interpolation filters (the AD9361's, the medium's band-limited
    interpolator) no longer pass them faithfully: at 30 dB SNR the edge bins alone then
    cost about 1 dB of mixup MSE. The mid-range halves the worst excursion. ``cfos_hz``:
    the users' CFOs (non-finite ones ignored); 0.0 if none."""
    c = np.asarray([f for f in cfos_hz if math.isfinite(f)], float)
    return float((c.max() + c.min()) / 2) if c.size else 0.0


def derotate(samples: np.ndarray, first: float, shift_hz: float, fs: float) -> np.ndarray:
    """``samples`` (complex ``(n,)``, receiver index ``first`` at position 0) with the
    receiver-side shift removed: ``samples[m] exp(-j 2 pi shift_hz (first + m) / fs)``."""
    x = np.asarray(samples)
    if shift_hz == 0.0:
        return x
    return x * np.exp(-2j * np.pi * shift_hz / fs * (first + np.arange(x.size)))


#: plays pilot orders: items (user id, pilot id, group size, order)
Send = Callable[[list[tuple[Hashable, int, int, SlotOrder]]], None]


class TimeBaseReceiver:
    """The receiver half of the ``stream`` and ``tdd`` time bases (the peer of
    :class:`radio.ota_transmitter.OtaTransmitter`, which plays every order).

    Args:
        radio: the receiving radio (stream: ``read_stream``/``discard_stream``/
            ``status``; tdd: ``arm_receive``).
        config, p_max, policy: OFDM configuration and power control (:mod:`phy.power`).
        time_base: "stream" or "tdd".
        send: plays pilot orders at the users: ``send([(user id, pilot id, group size,
            order), ...])`` (:meth:`OtaTransmitter.play_pilot` locally or at the nodes).
        carrier_hz: ties each user's sample-rate offset to its CFO (one oscillator).
        sync_period_s: tdd: the sync line's period (probe and payload on consecutive
            pulses; the phase in between is predicted from it). pulse: tdd: pulses the
            line on demand before each capture (None: it pulses by itself).
        user_lead: samples a user's feeder keeps queued (stream: placements must be
            that far ahead); slack_s: extra time for a request to reach the users (on
            the wall clock, ``radio.realtime``, twice the slowest recent ``send`` is added).
        underflowed: optional ``f(user ids) -> ids`` whose sticky TX underflow flag is
            up (read and cleared); without it, a shifted user is found by its probe.
        reach_s: a re-acquisition asks for the pairs that many seconds later and
            searches that much longer: the shift it can recover from (an RX overflow's
            dropped samples, an underflow's gap, a host stall).
        truth, true_gain: genie ``truth(user id) -> LinkTrack`` and ``true_gain(user id,
            receiver index)`` for genie plans and error statistics.
        state, streams_restarted: continue from a checkpoint (:meth:`state_dict`, see
            :meth:`load_state_dict`) instead of measuring the noise on silence.
    Raises :class:`radio.base.TimeBaseUnsupported` if the radio cannot run ``time_base``.
    """

    def __init__(
        self,
        radio: object,
        config: OfdmConfig | None = None,
        p_max: float = 1.0,
        *,
        time_base: str = "stream",
        send: Send,
        policy: str = "mmse",
        carrier_hz: float | None = None,
        sync_period_s: float | None = None,
        pulse: Callable[[], None] | None = None,
        user_lead: int = 4096,
        slack_s: float = 0.0,
        underflowed: Callable[[list], list] | None = None,
        reach_s: float = 0.5,
        truth: Callable[[Hashable], LinkTrack] | None = None,
        true_gain: Callable[[Hashable, float], complex] | None = None,
        state: dict | None = None,
        streams_restarted: bool = True,
    ) -> None:
        if time_base not in ("stream", "tdd"):
            raise ValueError(f"time_base must be 'stream' or 'tdd', got {time_base!r}")
        if time_base == "tdd" and sync_period_s is None:
            raise ValueError(
                "the tdd time base needs the sync line's period (sync_period_s): the phase "
                "between the probe's and the payload's pulses is predicted from it"
            )
        radio.check_time_base(time_base)
        self.radio = radio
        self.config = config or OfdmConfig()
        self.p_max = float(p_max)
        self.time_base = time_base
        self.send = send
        self.policy = get_power_policy(policy)
        self.carrier_hz = carrier_hz
        self.sync_period_s = sync_period_s
        self.pulse = pulse
        self.user_lead = int(user_lead)
        self.slack = int(round(slack_s * self.config.sample_rate_hz))
        self.realtime = bool(getattr(radio, "realtime", False))
        self._send_seconds: deque[float] = deque(maxlen=16)  # recent send round trips
        self._phase_gap = LONG_PHASE_GAP if self.realtime or time_base == "tdd" else PHASE_GAP
        self._alias_spacing = (
            sync_period_s * self.config.sample_rate_hz if time_base == "tdd" else 0.0
        )
        self.underflowed = underflowed
        self.reach_s = float(reach_s)
        self.truth = truth
        self.true_gain = true_gain
        cfg = getattr(radio, "config", None)
        self.rx_block = int(getattr(cfg, "rx_buffer_size", 4096) or 4096)
        self.tracks: dict[Hashable, LinkTrack] = {}
        self.gain_tracks: dict[Hashable, GainTrack] = {}
        self.roots: dict[Hashable, int] = {}
        self.silent: set[Hashable] = set()  # not heard at acquisition (deep fade)
        #: users whose CFO was fitted over SETTLE_SPAN (a re-acquisition keeps it)
        self.settled_cfo: set[Hashable] = set()
        #: timing of users silenced after being tracked: their streams run on, so a later
        #: acquisition places its pair by this track, not as on a fresh stream
        self.parked: dict[Hashable, LinkTrack] = {}
        #: stream: per user, the weight (observations x SNR) behind its track's offset;
        #: each probe's residual delay moves the offset by its share (:meth:`_retime`)
        self.timing_weight: dict[Hashable, float] = {}
        self.air = AirTime()
        #: per user: "reacquisitions" and "underflows" (the live view's link table)
        self.counters: dict[Hashable, dict[str, int]] = {}
        self.noise_var: float | None = None  # per subcarrier, measured on silence
        self._buf = np.zeros(0, np.complex64)
        self._buf_start = 0  # receiver stream index of _buf[0]
        self._pulses = 0  # tdd: sync pulses used so far
        #: tdd on the wall clock with a free-running sync line (no pulse callable)
        self._wall_pulses = time_base == "tdd" and self.realtime and pulse is None
        self._pulse_anchor: float | None = None  # its monotonic time of pulse 0
        self._payload_pulse = 0  # tdd: the pulse the planned payload takes
        self.clocks = (  # tdd: per-pulse buffer timing of free-running sample clocks
            PulseClocks(sync_period_s * self.config.sample_rate_hz) if time_base == "tdd" else None
        )
        self._tdd_delays: dict[Hashable, float] = {}  # tdd: delays ordered for next pulse
        self.burst_len = acquisition_burst(0, self.config).size
        self._probe_len = probe_length(self.config)
        self.restarted: set[Hashable] = set()  # tracked before a restart: re-acquire
        if state is not None:  # a checkpoint (no silence to measure: users may stream)
            self.load_state_dict(state, streams_restarted)
            if time_base == "stream":
                radio.clear_status()
        elif time_base == "stream":
            silence = self._window(0, 4096)  # no user streams yet: noise only
            self.noise_var = float(np.mean(np.abs(silence) ** 2)) / self.config.scale**2
            radio.clear_status()

    # ------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        """The receiver's link knowledge as plain state (numbers, strings, lists: what
        ``torch.load(weights_only=True)`` reads): per-user stream tracks and parked
        tracks ``[offset, sro, cfo_hz, noise_var, gain re, gain im]`` and the timing
        weight behind each offset, ZC roots, silent
        users, per-user counters, air-time totals, the noise variance, the receiver
        stream position and (tdd) the pulse count and lag-walk observations. Gain
        trackers are left out: a checkpoint is taken between rounds, whose fading is
        redrawn (:meth:`new_round`)."""

        def plain(t: LinkTrack) -> list[float]:
            values = [t.offset, t.sro, t.cfo_hz, t.noise_var, t.gain.real, t.gain.imag]
            return [float(v) for v in values]

        air = {
            k: [float(x) for x in v] if isinstance(v, list) else int(v)
            for k, v in asdict(self.air).items()
        }

        return {
            "time_base": self.time_base,
            "tracks": {u: plain(t) for u, t in self.tracks.items()},
            "parked": {u: plain(t) for u, t in self.parked.items()},
            "timing_weight": {u: float(w) for u, w in self.timing_weight.items()},
            "roots": {u: int(r) for u, r in self.roots.items()},
            "silent": sorted(self.silent, key=str),
            "restarted": sorted(self.restarted, key=str),
            "counters": {u: {k: int(n) for k, n in c.items()} for u, c in self.counters.items()},
            "air": air,
            "noise_var": None if self.noise_var is None else float(self.noise_var),
            "rx_end": int(self.rx_end),
            "pulses": int(self._pulses),
            "clock_obs": {
                u: [[int(p), float(d)] for p, d in rows] for u, rows in self.clocks.obs.items()
            }
            if self.clocks is not None
            else {},
        }

    def load_state_dict(self, state: dict, streams_restarted: bool = True) -> None:
        """Continue from :meth:`state_dict`. ``streams_restarted`` (a resumed run: new
        processes, so every TX and RX stream and the pulse count started anew): the
        stream mappings are void, each tracked user is re-acquired at its next slot
        (counted as a re-acquisition) and the receiver's stream starts at 0; otherwise
        (the same radios streaming on) tracks, stream position and pulse count continue.
        Counters, air-time totals, roots and the noise variance continue either way."""
        if state.get("time_base") != self.time_base:
            raise ValueError(
                f"checkpoint of the {state.get('time_base')!r} time base, receiver runs "
                f"{self.time_base!r}"
            )

        def track(v: list[float]) -> LinkTrack:
            return LinkTrack(v[0], v[1], v[2], v[3], complex(v[4], v[5]))

        self.roots = {u: int(r) for u, r in state["roots"].items()}
        self.counters = {u: {k: int(n) for k, n in c.items()} for u, c in state["counters"].items()}
        air = state["air"]
        self.air = AirTime(
            **{k: list(v) if isinstance(v, list) else int(v) for k, v in air.items()}
        )
        self.noise_var = None if state["noise_var"] is None else float(state["noise_var"])
        self.silent = set(state["silent"])
        self.gain_tracks = {}
        tracks = {u: track(v) for u, v in state["tracks"].items()}
        parked = {u: track(v) for u, v in state["parked"].items()}
        if streams_restarted:
            self.tracks, self.parked = {}, {}
            self.restarted = set(tracks) | set(parked) | set(state.get("restarted", []))
            return
        self.tracks, self.parked = tracks, parked
        self.timing_weight = {u: float(w) for u, w in state.get("timing_weight", {}).items()}
        self.restarted = set(state.get("restarted", []))
        self._buf, self._buf_start = np.zeros(0, np.complex64), int(state["rx_end"])
        self._pulses = int(state["pulses"])
        if self.clocks is not None:
            for uid, rows in state["clock_obs"].items():
                for pulse, delay in rows:
                    self.clocks.observe(uid, int(pulse), float(delay))
            self._fit_clocks()

    # ------------------------------------------------------------ receiver stream
    @property
    def rx_end(self) -> int:
        """Receiver stream samples read so far."""
        return self._buf_start + self._buf.size

    @property
    def clock(self) -> int:
        """Acquisition and probe channel uses so far (what the engine books as pilot
        channel uses)."""
        return self.air.acquisition + self.air.probe

    def _window(self, start: int, stop: int) -> np.ndarray:
        """Receiver stream samples ``[start, stop)`` (read forward; ``start`` must not be
        before what is still buffered)."""
        if start < self._buf_start:
            raise RuntimeError("receiver window already dropped")
        if start > self.rx_end:  # read on without computing the samples
            self.radio.discard_stream(start - self.rx_end)
            self._buf, self._buf_start = np.zeros(0, np.complex64), start
        if stop > self.rx_end:
            new = np.asarray(self.radio.read_stream(stop - self.rx_end), np.complex64)
            self._buf = np.concatenate([self._buf[start - self._buf_start :], new])
            self._buf_start = start
        return self._buf[start - self._buf_start : stop - self._buf_start]

    def skip(self, n: int) -> None:
        """Read on ``n`` stream samples nobody needs (stream base)."""
        self._window(self.rx_end + int(n), self.rx_end + int(n))

    def _arm_receive(self, n: int, pulse: int | None = None) -> np.ndarray:
        """tdd capture on the next pulse (pulsed on demand if a pulse callable was
        given), counted as pulse ``pulse`` (default: the one after the previous
        capture's). On the wall clock with a free-running sync line the pulse a capture
        took is read from when it returned (:meth:`_next_pulse`)."""
        if self.pulse is not None:
            self.pulse()
        pulse = self._pulses + 1 if pulse is None else int(pulse)
        samples = np.asarray(self.radio.arm_receive(n))
        if self._wall_pulses:
            period = float(self.sync_period_s)
            started = time.monotonic() - n / self.config.sample_rate_hz  # >= its pulse
            if self._pulse_anchor is not None:  # the pulse it took, by the wall clock
                pulse = max(self._pulses + 1, round((started - self._pulse_anchor) / period))
            anchor = started - pulse * period  # late by the transfer: keep the earliest
            self._pulse_anchor = min(anchor, self._pulse_anchor or anchor)
        self._pulses = pulse
        return samples

    def _next_pulse(self) -> int:
        """tdd: the pulse the next capture (and the orders sent before it) will take.
        Pulsed on demand, or on a deterministic clock: the one after the previous. On
        the wall clock with a free-running line: the first pulse far enough ahead for
        the orders' round trip and the arming (``REALTIME_GUARD_S``; at least
        ``PULSE_ROOM`` of a period); when the coming one is too close, wait until it has
        passed (a buffer armed before a pulse starts on it)."""
        if not self._wall_pulses:
            return self._pulses + 1
        if self._pulse_anchor is None:  # an idle capture first: the pulses' phase
            self._arm_receive(1)
        period = float(self.sync_period_s)
        need = max(self._round_trip_s(), PULSE_ROOM * period)  # the first payload's arming
        # is not timed yet
        now = time.monotonic()
        k = max(self._pulses + 1, math.floor((now - self._pulse_anchor) / period) + 1)
        at = self._pulse_anchor + k * period
        if at - now < need:
            time.sleep(max(0.0, at - now) + PULSE_SETTLE_S)
            k += 1
        return k

    def _global(self, index: float, pulse: int | None = None) -> float:
        """Global receiver index of capture ``index`` (stream: the same; tdd: plus one
        sync period of samples per pulse and the receiver's own start lag on that pulse,
        ``pulse`` defaulting to the latest)."""
        if self.time_base != "tdd":
            return float(index)
        pulse = self._pulses if pulse is None else pulse
        lag = self.clocks.receiver_lag(pulse) if self.clocks.fitted else 0.0
        return index + lag + pulse * self.sync_period_s * self.config.sample_rate_hz

    # ------------------------------------------------------------ tdd timing
    def _fit_clocks(self) -> None:
        """Refit the sample-clock lag walks with every tracked user's drift per pulse."""
        period = self.sync_period_s * self.config.sample_rate_hz
        self.clocks.fit({u: -period * t.sro for u, t in self.tracks.items()})
        for track in self.gain_tracks.values():  # the receiver's lags on past pulses moved
            track.retime(lambda stamp: self._global(stamp[1], stamp[0]))

    def _stamp(self, index: float) -> tuple[int, float] | None:
        """The :class:`GainTrack` stamp of capture index ``index`` on the latest pulse
        (tdd; stream: None, its indices never move)."""
        return (self._pulses, float(index)) if self.time_base == "tdd" else None

    def _pulse_delays(self, uids: Sequence[Hashable], pulse: int) -> tuple[list[float], float]:
        """tdd: where each user's buffer index 0 lands on ``pulse`` (capture index) and
        the smallest margin of those predictions (:meth:`phy.tdd_timing.PulseClocks.
        predict`; 0 for a user whose walk is not known yet: its acquisition offset)."""
        delays, margin = [], math.inf
        for uid in uids:
            if uid in self.clocks.obs:
                d, m = self.clocks.predict(uid, pulse)
            else:
                d, m = self.tracks[uid].offset, 0.0
            delays.append(d)
            margin = min(margin, m)
        return delays, margin

    def _calibrate(self, uids: Sequence[Hashable] | None = None, pulses: int = CAL_PULSES) -> None:
        """tdd: users ``uids`` (default: every tracked user) probe on ``pulses``
        consecutive pulses, so the lag walks are known before the first payload and each
        gain tracker's phase line is fitted over pulses a CFO error cannot turn by half a
        cycle."""
        uids = list(self.tracks if uids is None else uids)
        for k in range(pulses if uids else 0):
            if self._wall_pulses and k == pulses - CFO_ALIAS_STRIDES[-1] - 1:
                # a host probing every s-th pulse leaves the CFO aliased (see
                # GainTrack): one idle pulse makes a gap of another length
                self._arm_receive(1, self._next_pulse())
            gains, delays, at = self.probe(uids)
            ok = [j for j, tau in enumerate(delays) if abs(tau) <= LOST_DELAY]
            # a probe every pulse also keeps the gain trackers' phase unambiguous
            self._update_gains([uids[j] for j in ok], gains[ok], at)

    def _wait_for_safe_pulse(self, uids: Sequence[Hashable]) -> list[float]:
        """tdd: the payload's delays on its pulse (:attr:`_payload_pulse`), one on which
        every user's buffer start is sure to the sample (:meth:`_search_safe_pulse`;
        earlier pulses pass as idle captures). A payload several pulses after its probe
        gets up to :data:`REPROBES` probes on the pulses before it (its users' phases
        drift with their CFO errors over the wait: on the wall clock, a payload 18
        pulses after its probe was +25 dB over genie at 20 dB SNR); on the wall clock
        they leave a spare pulse for the refit.
        If the host reached a later pulse than planned and that one is less sure, the
        search starts again from there, at most :data:`HOST_RETRIES` times."""
        for _attempt in range(HOST_RETRIES):
            planned, margin, delays = self._search_safe_pulse(uids)
            ahead = planned - (self._next_pulse() - 1)
            spare = 1 if self.realtime else 0  # the wall clock: a pulse for the refit
            reprobes = max(0, min(REPROBES, ahead - 2 - spare)) if ahead >= REPROBE_AFTER else 0
            for _ in range(ahead - 1 - reprobes - spare):
                self._arm_receive(1, self._next_pulse())
            if reprobes:
                self._calibrate(uids, reprobes)
            while self._next_pulse() < planned:  # the refit was quick: the spare passes
                self._arm_receive(1, self._next_pulse())
            self._payload_pulse = self._next_pulse()
            if self._payload_pulse == planned:  # after a probe: its refit's delays
                return self._pulse_delays(uids, planned)[0] if reprobes else delays
            delays, now = self._pulse_delays(uids, self._payload_pulse)
            if now >= min(margin, SAFE_MARGIN):
                return delays
        return delays

    def _search_safe_pulse(self, uids: Sequence[Hashable]) -> tuple[int, float, list[float]]:
        """tdd: (pulse, margin, delays) of the first pulse within :data:`MAX_WAIT` on which
        every user's buffer start is sure. If none is, the users probe on
        :data:`UNSURE_PROBES` consecutive pulses (measure rather than guess: a frame one
        sample off is 10-20 dB over genie) and the search starts again, at most
        :data:`UNSURE_CALIBRATIONS` times, the last over :data:`LAST_WAIT` pulses; then
        the surest pulse. Static walks (a shared reference: every pulse alike) take the
        next pulse: neither probing nor waiting changes them."""
        for attempt in range(UNSURE_CALIBRATIONS + 1):
            base = self._next_pulse() - 1
            found = []
            for m in range(1, (LAST_WAIT if attempt == UNSURE_CALIBRATIONS else MAX_WAIT) + 1):
                delays, margin = self._pulse_delays(uids, base + m)
                found.append((margin, m, delays))
                if margin >= SAFE_MARGIN:
                    break
            best = max(found, key=lambda f: f[0])
            if best[0] >= SAFE_MARGIN or attempt == UNSURE_CALIBRATIONS:
                break
            if all(np.allclose(f[2], found[0][2], atol=1e-3) for f in found):
                best = found[0]
                break
            self._calibrate(uids, UNSURE_PROBES)
        margin, m, delays = best
        return base + m, margin, delays

    def new_round(self) -> None:
        """The fading was redrawn: forget the tracked gains (timing and CFO stay) and
        try the users not heard before again."""
        self.gain_tracks = {}
        self.silent.clear()

    def _rx_ahead(self) -> int:
        """Receiver index every user can still place at: the host's position
        (:meth:`_now`) lags the air by up to two receive buffers, then the feeders'
        queues and the slack (:meth:`_slack`)."""
        return self._now() + 2 * self.rx_block + self.user_lead + self._slack() + MARGIN

    def _now(self) -> int:
        """Receiver stream index the host has reached: what it read, or (a real-time
        radio draining in the background) what the drain holds, read or not."""
        head = getattr(self.radio, "rx_stream_head", lambda: None)()
        return self.rx_end if head is None else max(self.rx_end, head)

    def _send(self, items: list[tuple[Hashable, int, int, SlotOrder]]) -> None:
        """:attr:`send`, timed: on the wall clock its round trip is what a placement
        must be ahead by (see :meth:`_slack`)."""
        started = time.perf_counter()
        self.send(items)
        self._send_seconds.append(time.perf_counter() - started)

    def observe_send(self, seconds: float) -> None:
        """A request to the users made elsewhere (the payload's) took ``seconds``: later
        placements allow for it as for :meth:`_send`'s own."""
        self._send_seconds.append(float(seconds))

    def _slack(self) -> int:
        """Samples a placement allows for its order to reach the users: ``slack_s``, and
        on the wall clock twice the slowest of the last sends (``REALTIME_SEND_GUESS_S``
        before the first) and ``REALTIME_GUARD_S``."""
        if not self.realtime:
            return self.slack
        return self.slack + int(self._round_trip_s() * self.config.sample_rate_hz)

    def _round_trip_s(self) -> float:
        """On the wall clock, seconds an order needs to be played: twice the slowest of
        the last sends (``REALTIME_SEND_GUESS_S`` before the first) and
        ``REALTIME_GUARD_S``."""
        return 2 * max(self._send_seconds, default=REALTIME_SEND_GUESS_S) + REALTIME_GUARD_S

    # ------------------------------------------------------------ acquisition
    def _root(self, uid: Hashable) -> int:
        return self.roots.setdefault(uid, len(self.roots))

    def _estimate(self, root: int, samples: np.ndarray, first: int) -> tuple[LinkEstimate, float]:
        """Both bursts of ZC root index ``root`` in ``samples`` (receiver index ``first``):
        the estimate (CFO refined by the phase advance between the bursts, gain at the
        first burst) and the receiver index of the first burst."""
        e1 = estimate_burst(samples, root, self.config, carrier_hz=self.carrier_hz)
        lo = int(e1.delay_samples) + BURST_GAP - 2 * MARGIN
        e2 = estimate_burst(samples[lo:], root, self.config, carrier_hz=self.carrier_hz)
        fs = self.config.sample_rate_hz
        nu = (e1.cfo_hz + e2.cfo_hz) / 2 / fs
        d1, d2 = e1.delay_samples, lo + e2.delay_samples
        p1 = e1.gain * np.exp(2j * np.pi * e1.cfo_hz / fs * d1)  # phase at each burst
        p2 = e2.gain * np.exp(2j * np.pi * e2.cfo_hz / fs * (d2 - lo))
        span = d2 - d1
        nu += np.angle(p2 / p1 * np.exp(-2j * np.pi * nu * span)) / (2 * np.pi * span)
        sro = -nu * fs / self.carrier_hz if self.carrier_hz else e1.sro
        snr = max(10 ** ((e1.snr_db + e2.snr_db) / 20), 1e-12)  # a burst's scatter may be 0
        # gain at the first burst (a far reference would turn with any CFO error)
        gain = (p1 + p2 * np.exp(-2j * np.pi * nu * span)) / 2
        est = LinkEstimate(root, d1 + first, nu * fs, sro, complex(gain), 10 * math.log10(snr))
        return est, d1 + first

    def acquire(self, uids: Sequence[Hashable], reach: int = 0, max_search: int = 200_000) -> None:
        """(Re-)acquire users ``uids``: each plays its acquisition pair once (stream:
        spaced ``ACQ_SPACING`` apart in one request; tdd: one user per pulse).

        ``reach`` (stream, samples): the receiver's indices may run up to that much
        behind the air (after an RX overflow dropped an unknown number of samples), so
        the pairs are asked that much later and searched for over that much more."""
        uids = list(uids)
        if not uids:
            return
        again = sum(u in self.tracks or u in self.restarted for u in uids)
        self.air.reacquisitions += again
        for uid in uids:
            if uid in self.tracks or uid in self.restarted:
                self._count(uid, "reacquisitions")
        self.restarted.difference_update(uids)
        known = sum(u in self.tracks or u in self.parked for u in uids)  # streams run on
        if known and self.time_base == "stream":
            reach = max(reach, int(self.reach_s * self.config.sample_rate_hz))
        if self.realtime:  # a fresh stream starts when its order arrives: look further
            max_search += int(self.reach_s * self.config.sample_rate_hz)
        group = max(len(self.roots), 1)
        if self.time_base == "tdd":
            order = SlotOrder(0.0, 0.0, 0.0, 0, 1.0, 0, MODE_TDD, 0, KIND_ACQUISITION)
            n = PAIR_LEAD + BURST_GAP + self.burst_len + 4 * MARGIN
            for uid in uids:
                for _ in range(TDD_ACQ_TRIES):
                    pulse = self._next_pulse()
                    self._send([(uid, self._root(uid), group, order)])
                    try:
                        est, d1 = self._estimate(self._root(uid), self._arm_receive(n, pulse), 0)
                        break
                    except NoPilotError:  # missed in the noise, or a deep fade
                        continue
                else:  # a deep fade: silent until the fading changes
                    self._silence(uid)
                    continue
                self._set_track(uid, est, d1, PAIR_LEAD, first=0)
                self.clocks.observe(uid, self._pulses, self.tracks[uid].offset)
            self._fit_clocks()
            self._calibrate()
            return
        base = self._now()
        ahead = self._rx_ahead()
        spacing = ACQ_SPACING
        if self.realtime and known < len(uids):  # fresh streams start one after the other,
            spacing += self._slack()  # each when its order arrives: keep their pairs apart
        items, placed = [], {}
        for j, uid in enumerate(uids):
            track = self.tracks.get(uid) or self.parked.get(uid)
            extra = j * spacing
            if track is None:  # a fresh stream: index 0 plays about now
                n = self.user_lead + self._slack() + (ahead - base) + extra
            else:
                n = int(math.ceil(track.tx_index(ahead + reach + extra)))
            placed[uid] = n
            order = SlotOrder(0.0, 0.0, 0.0, 0, 1.0, 0, MODE_STREAM, n, KIND_ACQUISITION)
            items.append((uid, self._root(uid), group, order))
        self._send(items)
        span = ahead - base + reach + (len(uids) + 4) * spacing
        max_search += reach
        pending = list(uids)
        while pending:
            window = self._window(base, base + span)
            for uid in list(pending):
                try:
                    est, d1 = self._estimate(self._root(uid), window, base)
                except NoPilotError:
                    continue
                self._set_track(uid, est, d1, placed[uid] + PAIR_LEAD, first=base)
                pending.remove(uid)
            if pending and span >= max_search:  # deep fades: silent until the fading changes
                for uid in pending:
                    if uid not in self.tracks and uid not in self.parked:
                        # a fresh stream runs on from about now: its next pair is
                        # placed (and searched for) as for a user silenced later
                        self.parked[uid] = LinkTrack(float(base), 0.0, 0.0, math.nan, 0j)
                    self._silence(uid)
                break
            span *= 2

    def _count(self, uid: Hashable, name: str) -> None:
        counts = self.counters.setdefault(uid, {"reacquisitions": 0, "underflows": 0})
        counts[name] += 1

    def user_counters(self, uid: Hashable) -> dict[str, int]:
        """``uid``'s re-acquisitions and TX underflows so far (zeros if none)."""
        return dict(self.counters.get(uid, {"reacquisitions": 0, "underflows": 0}))

    def tracked_gain(self, uid: Hashable) -> complex:
        """``uid``'s tracked raw gain at the end of the receiver's stream (0 if untracked)."""
        track = self.gain_tracks.get(uid)
        return complex(track.predict(self._global(self.rx_end))) if track is not None else 0j

    def _silence(self, uid: Hashable) -> None:
        """``uid`` was not heard at acquisition: it stays silent (b = 0) this round."""
        log.info("user %s not heard at acquisition: silent until the fading changes", uid)
        self.silent.add(uid)
        track = self.tracks.pop(uid, None)
        if track is not None:
            self.parked[uid] = track
        self.gain_tracks.pop(uid, None)

    def _set_track(self, uid: Hashable, est: LinkEstimate, d1: float, n: int, first: int) -> None:
        """Track of ``uid`` whose stream index ``n`` arrived at receiver index ``d1``."""
        before = self.tracks.get(uid) or self.parked.get(uid)
        settled = (
            before is not None
            and uid in self.settled_cfo
            and abs(est.cfo_hz - before.cfo_hz) < REACQ_CFO_TOLERANCE_HZ
        )
        if settled:
            est = replace(est, cfo_hz=before.cfo_hz, sro=before.sro)
        offset = d1 - n * (1.0 + est.sro)
        self.parked.pop(uid, None)
        self.tracks[uid] = LinkTrack(offset, est.sro, est.cfo_hz, est.noise_var, est.gain)
        self.timing_weight[uid] = (
            2 * ACQ_REPS * len(self.config.used_bins) * 10 ** (est.snr_db / 10)
        )
        weight = 2 * ACQ_REPS * len(self.config.used_bins)
        g0 = self._global(est.delay_samples)  # stream: receiver index; tdd: capture index
        self.gain_tracks[uid] = GainTrack(
            est.gain,
            g0,
            est.cfo_hz / self.config.sample_rate_hz,
            weight,
            settled=settled,
            bounded_unwrap=self.time_base == "stream",
            settled_gap=self._phase_gap,
            alias_spacing=self._alias_spacing,
            stamp=self._stamp(est.delay_samples),
        )
        self.air.acquisition += 2 * self.burst_len
        if self.truth is not None:
            true = self.truth(uid)
            self.air.cfo_errors_hz.append(abs(est.cfo_hz - true.cfo_hz))
            if self.time_base == "stream":
                self.air.timing_errors.append(abs(offset - true.offset))

    # ------------------------------------------------------------ slots
    def _check_flags(self, uids: list[Hashable]) -> None:
        """Overflow: every user's mapping broke (re-acquire all tracked); underflow:
        re-acquire the users whose flag is up."""
        if self.time_base != "stream":
            return
        if self.radio.status()["rx_overflow"]:
            self.air.overflows += 1
            self.radio.clear_status()
            self.acquire(list(self.tracks))
        if self.underflowed is not None:
            lost = [u for u in self.underflowed(uids) if u in self.tracks]
            if lost:
                self.air.underflows += len(lost)
                for uid in lost:
                    self._count(uid, "underflows")
                self.acquire(lost)

    def _target(self, tracks: Sequence[LinkTrack], delays: Sequence[float] = ()) -> int:
        """Receiver index of the next placement (tdd: capture index after the pulse,
        behind every user's ``delays`` or else acquisition offset)."""
        if self.time_base == "tdd":
            return int(math.ceil(max(delays or [t.offset for t in tracks]))) + MARGIN
        return self._rx_ahead()

    def _orders(
        self,
        target: int,
        tracks: Sequence[LinkTrack],
        scaling: np.ndarray,
        kind: int,
        shift_hz: float = 0.0,
        delays: Sequence[float] = (),
    ) -> list[SlotOrder]:
        """Per user, the order landing its buffer's first block at ``target``, its CFO
        pre-rotated but for the receiver's ``shift_hz`` (:func:`common_shift_hz`); tdd:
        ``delays`` per user on the pulse (default: the acquisition offsets)."""
        out = []
        delays = list(delays) or [t.offset for t in tracks]
        for t, b, pulse_delay in zip(tracks, scaling, delays, strict=True):
            if self.time_base == "tdd":
                n0, delay, mode = 0, pulse_delay, MODE_TDD
            else:
                n0 = int(math.floor(t.tx_index(target))) - MARGIN
                delay, mode = t.rx_index(n0), MODE_STREAM
            out.append(
                SlotOrder(
                    delay, t.sro, t.cfo_hz - shift_hz, int(target), complex(b), 0, mode, n0, kind
                )
            )
        return out

    def _capture(self, target: int, n: int, pulse: int | None = None) -> tuple[np.ndarray, int]:
        """Samples around ``target`` (stream) or from the pulse (tdd: ``pulse``, see
        :meth:`_arm_receive`) and the index of ``target`` in them."""
        if self.time_base == "tdd":
            return self._arm_receive(target + n + MARGIN, pulse), target
        return self._window(target - MARGIN, target + n + MARGIN), MARGIN

    def probe(self, uids: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray, int]:
        """Every user of ``uids`` plays its probe symbol at the same receiver index:
        (effective gains ``(K,)``, residual delays ``(K,)``, capture index)."""
        tracks = [self.tracks[u] for u in uids]
        kk = len(uids)
        ordered: list[float] = []
        pulse = None
        if self.time_base == "tdd":
            pulse = self._next_pulse()
            ordered, _ = self._pulse_delays(uids, pulse)
        target = self._target(tracks, ordered)
        shift = common_shift_hz([t.cfo_hz for t in tracks])
        orders = self._orders(target, tracks, np.ones(kk), KIND_PROBE, shift, ordered)
        self._send(_probe_items(uids, orders))
        gains, delays, noise = self._read_probe(orders, target, shift, pulse)
        if self.time_base == "tdd":  # where each buffer really landed on this pulse
            for uid, d, tau, sigma in zip(uids, ordered, delays, noise, strict=True):
                if abs(tau) <= LOST_DELAY:
                    self.clocks.observe(uid, self._pulses, d + tau, sigma)
            self._fit_clocks()
        return gains, delays, target

    def _read_probe(
        self, orders: list[SlotOrder], target: int, shift: float, pulse: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Capture the probe ``orders`` placed at ``target``: effective gains, residual
        delays and the delays' standard deviations (samples) per order."""
        samples, at = self._capture(target, self._probe_len, pulse)
        samples = derotate(samples, target - at, shift, self.config.sample_rate_hz)
        gains, delays, noise = estimate_probe(samples, at, len(orders), self.config)
        delay_noise = probe_delay_noise(gains, noise, len(orders), self.config)
        # a buffer landing tau late was pre-rotated for the wrong receiver indices: the
        # gain of one landing where ordered turns back by the CFO over tau
        fs = self.config.sample_rate_hz
        gains = gains * np.exp(-2j * np.pi * np.array([o.cfo_hz for o in orders]) * delays / fs)
        self.air.probe += self._probe_len
        return gains, delays, delay_noise

    def _fresh_line(self, uids: Sequence[Hashable]) -> bool:
        """Some user's phase line restarted and goes through fewer than
        ``FRESH_POINTS`` points (its CFO not yet its own, or measured over one gap)."""
        return any(
            not self.gain_tracks[u].settled and self.gain_tracks[u].phased < FRESH_POINTS
            for u in uids
        )

    def _probe_train(self, uids: Sequence[Hashable]) -> None:
        """Stream on the wall clock: ``TRAIN_PROBES`` probes of ``uids``,
        ``TRAIN_SPACING`` apart, in one request, each folded into the gain trackers: a
        fresh phase line gets a CFO measured over their span (``SETTLE_SPAN``) before
        the frame, a round trip later, relies on it (probes a round trip apart each
        would be too far apart to count the cycles between them)."""
        tracks = [self.tracks[u] for u in uids]
        kk = len(uids)
        shift = common_shift_hz([t.cfo_hz for t in tracks])
        first = self._target(tracks)  # the later probes: one request, so no round trip
        trains = []
        for j in range(TRAIN_PROBES):
            target = first + j * TRAIN_SPACING
            trains.append((target, self._orders(target, tracks, np.ones(kk), KIND_PROBE, shift)))
        self._send([item for _, orders in trains for item in _probe_items(uids, orders)])
        for target, orders in trains:
            gains, delays, _ = self._read_probe(orders, target, shift)
            ok = [j for j, tau in enumerate(delays) if abs(tau) <= LOST_DELAY]
            if ok:  # pre-rotated with the CFOs of before the train's first update
                ordered = np.array([orders[j].cfo_hz + shift for j in ok])
                self._update_gains([uids[j] for j in ok], gains[ok], target, ordered)

    def _update_gains(
        self,
        uids: Sequence[Hashable],
        effective: np.ndarray,
        at: int,
        ordered_cfo_hz: np.ndarray | None = None,
    ) -> None:
        """Fold the probe's effective gains (at capture index ``at``, pre-rotated by each
        track's CFO, or by ``ordered_cfo_hz`` if the orders were made with others) into
        the trackers; refine each track's CFO (and tied SRO)."""
        if not uids:
            return
        fs = self.config.sample_rate_hz
        n_bins = PROBE_REPS * len(self.config.used_bins) / len(uids)
        g_at = self._global(at)
        if ordered_cfo_hz is None:
            ordered_cfo_hz = np.array([self.tracks[u].cfo_hz for u in uids])
        for uid, eff, cfo in zip(uids, effective, ordered_cfo_hz, strict=True):
            t = self.tracks[uid]
            raw = eff * np.exp(2j * np.pi * cfo / fs * at)
            tr = self.gain_tracks.get(uid)
            if tr is None:  # a new round: the CFO is the one tracked in earlier rounds
                self.gain_tracks[uid] = GainTrack(
                    raw,
                    g_at,
                    t.cfo_hz / fs,
                    n_bins,
                    settled=True,
                    settled_gap=self._phase_gap,
                    alias_spacing=self._alias_spacing,
                    stamp=self._stamp(at),
                )
                continue
            noise_var = t.noise_var if t.noise_var > 0 else 0.0
            tr.add(raw, g_at, n_bins, noise_var, stamp=self._stamp(at))
            if tr.settled:
                self.settled_cfo.add(uid)
            t.cfo_hz = tr.nu * fs
            if self.carrier_hz:
                sro = -t.cfo_hz / self.carrier_hz
                if self.time_base == "stream":  # the new SRO turns the mapping about now
                    t.offset -= t.tx_index(at) * (sro - t.sro)
                t.sro = sro

    def _retime(self, uids: Sequence[Hashable], effective: np.ndarray, delays: np.ndarray) -> None:
        """Stream: fold the probe's residual delays into the tracks' offsets, each by its
        share of the weight (subcarrier observations x SNR) behind the offset (capped at
        ``TIMING_WEIGHT_CAP`` acquisitions at 30 dB, so a drift still moves it). A
        low-SNR re-acquisition's offset is off by up to half a sample (default run:
        u000 at 0.1 dB, 0.46 samples, a phase ramp across the band on every payload);
        its probes see the same residual every slot."""
        n_bins = PROBE_REPS * len(self.config.used_bins) / len(uids)
        cap = TIMING_WEIGHT_CAP * 2 * ACQ_REPS * len(self.config.used_bins) * 1e3
        for uid, eff, tau in zip(uids, effective, delays, strict=True):
            t = self.tracks[uid]
            if not abs(tau) <= LOST_DELAY or not t.noise_var > 0:
                continue
            w = n_bins * abs(eff) ** 2 / t.noise_var
            total = self.timing_weight.get(uid, 0.0) + w
            t.offset += float(tau) * w / total
            self.timing_weight[uid] = min(total, cap)

    def _known_gain(self, uid: Hashable) -> float:
        """``uid``'s gain magnitude as last known: tracked, or (fading redrawn since) the
        acquisition's; a probe 20 dB below it means the user is no longer heard."""
        track = self.gain_tracks.get(uid)
        return track.magnitude if track is not None else abs(self.tracks[uid].gain)

    def _predicted_gains(self, uids: Sequence[Hashable], target: int) -> np.ndarray:
        """Effective gains of a frame landing at capture index ``target`` (tdd: on the
        next pulse), pre-rotated by each track's CFO."""
        fs = self.config.sample_rate_hz
        pulse = self._payload_pulse if self.time_base == "tdd" else None
        g = self._global(target, pulse)
        return np.array(
            [
                self.gain_tracks[u].predict(g)
                * np.exp(-2j * np.pi * self.tracks[u].cfo_hz / fs * target)
                for u in uids
            ]
        )

    def plan(
        self,
        uids: Sequence[Hashable],
        weights: np.ndarray,
        n_reals: int,
        rng: object = None,
        genie: bool = False,
    ) -> StreamSlotPlan:
        """Everything the slot of ``uids`` needs: untracked users acquired, flags
        handled, the probe (a user whose probe shows lost tracking is re-acquired and
        the group probes again), the tracked gains carried to the frame, power control
        (``weights`` ``(K,)``, payload ``n_reals``) and each user's order. ``genie``:
        true timing, CFO and gains instead (needs ``truth``)."""
        uids = list(uids)
        kk = len(uids)
        w = np.asarray(weights, float)
        if w.shape != (kk,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be finite, >= 0, shape ({kk},)")
        self._check_flags(uids)  # first: an overflow before anyone was tracked breaks nothing
        self.acquire([u for u in uids if u not in self.tracks and u not in self.silent])
        heard = [u for u in uids if u in self.tracks]  # the others are silent (deep fade)
        if not heard:  # nobody to plan for: a silent slot (receive finds no frame)
            return self._silent_plan(uids, n_reals)
        if genie:
            if self.truth is None or self.true_gain is None:
                raise ValueError("genie plans need truth and true_gain")
            tracks = {u: self.truth(u) for u in uids}
            self._payload_pulse = self._next_pulse()
            target = self._target(list(tracks.values()))
            heard_gains = np.array([self.true_gain(u, target) for u in heard])
        else:
            gains, delays, at = self.probe(heard)
            lost = [
                u
                for j, u in enumerate(heard)
                if abs(delays[j]) > LOST_DELAY or abs(gains[j]) < 0.1 * self._known_gain(u)
            ]
            if lost:  # tracking lost: re-acquire those users, probe again
                self.air.lost_tracking += len(lost)
                self.acquire(lost)
                heard = [u for u in heard if u in self.tracks]
                if not heard:
                    return self._silent_plan(uids, n_reals)
                gains, delays, at = self.probe(heard)
            self._update_gains(heard, gains, at)
            if self.time_base == "stream" and self.realtime and self._fresh_line(heard):
                self._probe_train(heard)  # a round trip per probe is too far apart
            for _ in range(0 if self.realtime else FRESH_PROBES):
                if self.time_base != "stream" or not self._fresh_line(heard):
                    break
                # a fresh acquisition's phase line restarted (its pair lay far back, or a
                # magnitude jump at low SNR): probe again until the line has two points
                # a probe apart, so it has a CFO before the frame relies on it and before
                # the next probe, maybe a group period later, unwraps across that gap (on
                # the acquisition's CFO alone, a low-SNR one slipped a cycle there)
                gains, delays, at = self.probe(heard)
                self._update_gains(heard, gains, at)
            if self.time_base == "stream":
                self._retime(heard, gains, delays)
            tracks = {u: self.tracks[u] for u in heard}
            if self.time_base == "tdd":
                self._tdd_delays = dict(zip(heard, self._wait_for_safe_pulse(heard), strict=True))
            target = self._target(list(tracks.values()), list(self._tdd_delays.values()))
            heard_gains = self._predicted_gains(heard, target)
        silent_track = LinkTrack(0.0, 0.0, 0.0, math.nan, 0j)
        tracks = [tracks.get(u, silent_track) for u in uids]
        gains = np.zeros(len(uids), complex)
        gains[[uids.index(u) for u in heard]] = heard_gains
        noise = self.noise_var
        if noise is None:
            noise = float(np.nanmedian([t.noise_var for t in tracks]))
        scaling = self.policy(gains, w, self.p_max, noise, rng=rng)
        b = np.where(gains == 0, 0j, np.asarray(scaling.tx_scaling, complex))
        a = complex(np.asarray(scaling.rx_scaling))
        shift = common_shift_hz([t.cfo_hz for t, g in zip(tracks, gains, strict=True) if g != 0])
        delays = [self._tdd_delays.get(u, t.offset) for u, t in zip(uids, tracks, strict=True)]
        orders = self._orders(target, tracks, b, KIND_PAYLOAD, shift, delays)
        return StreamSlotPlan(
            orders,
            target,
            shift,
            corrections=[o.correction(j) for j, o in enumerate(orders)],
            tx_scaling=b,
            rx_scaling=a,
            effective_weights=np.real(a * gains * b),
            predicted_mse=float(np.asarray(mse_of(gains, w, b, a, noise))),
            target_delay=int(target),
            buffer_len=frame_length(n_reals, self.config) + 2 * MARGIN,  # the capture
            clock=self.clock,
        )

    def _silent_plan(self, uids: list[Hashable], n_reals: int) -> StreamSlotPlan:
        """A slot nobody transmits in (no user of it was heard): every order silent."""
        kk = len(uids)
        silent = LinkTrack(0.0, 0.0, 0.0, math.nan, 0j)
        orders = self._orders(self.rx_end, [silent] * kk, np.zeros(kk), KIND_PAYLOAD)
        return StreamSlotPlan(
            orders,
            -1,
            corrections=[o.correction(j) for j, o in enumerate(orders)],
            tx_scaling=np.zeros(kk, complex),
            rx_scaling=0j,
            effective_weights=np.zeros(kk),
            predicted_mse=math.nan,
            target_delay=-1,
            buffer_len=frame_length(n_reals, self.config) + 2 * MARGIN,
            clock=self.clock,
        )

    def receive(self, plan: StreamSlotPlan, n_reals: int) -> np.ndarray:
        """Capture the slot planned by ``plan`` (users must have played their orders)
        and return the estimate of ``sum_k w_k x_k``, float ``(n_reals,)``; ValueError
        if the frame is not found."""
        length = frame_length(n_reals, self.config)
        if plan.target < 0:
            raise ValueError("no user of the slot was heard: nothing on the air")
        if self.time_base == "stream":  # whole receive buffers from the window start, so
            # the run's eavesdropper (orchestrator.radios) finds the same window of air
            start = plan.target - MARGIN
            reads = -(-plan.buffer_len // self.rx_block) * self.rx_block
            samples, at = self._window(start, start + reads)[: plan.buffer_len], MARGIN
        else:
            samples, at = self._capture(plan.target, length, self._payload_pulse)
        self.air.payload += length
        self.last_capture = samples  # the air as received (the live view's spectrum)
        samples = derotate(samples, plan.target - at, plan.shift_hz, self.config.sample_rate_hz)
        return estimate_mixup(
            samples, plan.rx_scaling, n_reals, self.config, frame_start=at, common_phase=True
        )


def _probe_items(uids: Sequence[Hashable], orders: Sequence[SlotOrder]) -> list[tuple]:
    """The ``send`` items of one probe: user ``uids[j]`` plays comb ``j`` of the group."""
    return [(u, j, len(uids), o) for j, (u, o) in enumerate(zip(uids, orders, strict=True))]


class TimeBaseSession:
    """Closed-loop OTA mixup on the ``stream`` or ``tdd`` time base with local users:
    :class:`TimeBaseReceiver` on ``receiver`` and one
    :class:`~radio.ota_transmitter.OtaTransmitter` per radio of ``users`` (user ids are
    their positions). Keyword arguments go to :class:`TimeBaseReceiver`; ``truth`` and
    ``true_gain`` take user positions. The users' sticky underflow flags are read
    directly (``status``), as a node reads its radio's status register."""

    def __init__(
        self,
        receiver: object,
        users: Sequence[object],
        config: OfdmConfig | None = None,
        p_max: float = 1.0,
        **kwargs: object,
    ) -> None:
        if not users:
            raise ValueError("need at least one user radio")
        self.users = list(users)
        time_base = kwargs.get("time_base", "stream")
        for radio in self.users:
            radio.check_time_base(time_base)
        self.config = config or OfdmConfig()
        self.tx = [OtaTransmitter(r, self.config, k) for k, r in enumerate(self.users)]
        kwargs.setdefault("user_lead", max(int(getattr(r, "stream_lead", 4096)) for r in users))
        self.rx = TimeBaseReceiver(
            receiver,
            self.config,
            p_max,
            send=self._send,
            underflowed=self._underflowed,
            **kwargs,
        )

    def _send(self, items: list[tuple[Hashable, int, int, SlotOrder]]) -> None:
        for uid, pilot_id, group_size, order in items:
            self.tx[uid].play_pilot(pilot_id, group_size, order)

    def _underflowed(self, uids: list) -> list:
        out = []
        for uid in uids:
            radio = self.users[uid]
            if self.tx[uid].streaming and radio.status()["tx_underflow"]:
                radio.clear_status()
                out.append(uid)
        return out

    @property
    def air(self) -> AirTime:
        return self.rx.air

    @property
    def tracks(self) -> list[LinkTrack | None]:
        return [self.rx.tracks.get(k) for k in range(len(self.users))]

    def skip(self, n: int) -> None:
        """The receiver reads on ``n`` stream samples."""
        self.rx.skip(n)

    def probe(self) -> tuple[np.ndarray, np.ndarray, int]:
        """A probe of every user (see :meth:`TimeBaseReceiver.probe`)."""
        return self.rx.probe(range(len(self.users)))

    def mixup(self, payloads: np.ndarray, weights: np.ndarray, genie: bool = False) -> MixupResult:
        """One OTA mixup of ``payloads`` (real ``(K, n_reals)``) with ``weights``
        (``(K,)``); ``genie``: true links. A frame not found gives a zero estimate."""
        x = np.asarray(payloads, float)
        w = np.asarray(weights, float)
        kk = len(self.users)
        if x.ndim != 2 or x.shape[0] != kk:
            raise ValueError(f"payloads must have shape ({kk}, n_reals), got {x.shape}")
        plan = self.rx.plan(range(kk), w, x.shape[1], genie=genie)
        started = time.perf_counter()
        for k in range(kk):
            self.tx[k].play_payload(x[k], plan.order(k))
        self.rx.observe_send(time.perf_counter() - started)
        try:
            estimate = self.rx.receive(plan, x.shape[1])
        except ValueError:
            estimate = np.zeros(x.shape[1])
        closed = plan.predicted_mse
        rx = self.rx
        if rx.truth is not None and rx.true_gain is not None:
            tg = np.array([rx.true_gain(k, plan.target) for k in range(kk)])
            tn = float(np.mean([rx.truth(k).noise_var for k in range(kk)]))
            closed = float(np.asarray(get_power_policy("mmse")(tg, w, rx.p_max, tn).mse))
        return MixupResult.scored(estimate, x, w, plan, closed)


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
