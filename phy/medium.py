"""A simulated shared radio medium: many radios, one air, real-radio impairments.

:class:`SharedMedium` holds any number of radios; each is reached through its
:class:`MediumPort` (a transmitter and a receiver, like a Pluto). What a receiver's ADC
produces is the superposition of every active transmission through its link, plus
receiver noise, quantized::

    r(t) = ADC( sum_tx  g * exp(j (2 pi cfo_hz t + phase_rad)) * s_tx(t - delay_s)  +  w(t) )

* ``s_tx`` is the transmitter's DAC output: its samples (12-bit quantized, clipped at
  +-1 per I/Q) played at its own sample clock ``fs (1 + ppm 1e-6)`` from the
  transmission's start time, band-limited interpolated
  (:class:`phy.impairments.FarrowInterpolator`);
  cyclic buffers repeat until stopped or replaced, one-shot buffers play once.
* ``g = fading * 10**(-path_loss_db/20) * 10**(-tx_attenuation_db/20) * 10**(rx_gain_db/20)``:
  block fading from the medium's channel model (:mod:`phy.channel`, redrawn by
  :meth:`SharedMedium.redraw_fading`), path loss set per link, from positions
  (log-distance) or the medium default.
* ``cfo_hz = lo_tx (1 + ppm_tx 1e-6) - lo_rx (1 + ppm_rx 1e-6)``; one oscillator per radio
  drives both LO and sample clock, so the sample-rate offset is ``ppm_tx - ppm_rx`` too.
  ``phase_rad = phi_tx - phi_rx``: each radio's LO phase is drawn anew at every retune.
  ``t`` is medium time in seconds.
* ``w``: receiver noise referred to the ADC, complex white Gaussian of power
  ``10**((noise_dbfs + rx_gain_db)/10)`` (full scale: a complex tone with |I|,|Q| peaking
  at 1 has power 1 = 0 dBFS). ``noise_dbfs`` is the receiver's input noise as it would
  appear at 0 dB RX gain: the simple noise-figure model is that the front-end noise is
  amplified with the signal, so raising the RX gain raises the noise equally (SNR stays
  put) until ADC clipping; lowering it lets ADC quantization noise dominate.
* ``ADC``: 12-bit quantization with clipping at +-1 per I and Q.

A signal couples only if the transmitter's nominal LO lies within the receiver's RF
bandwidth (``|lo_tx - lo_rx| <= rf_bandwidth_hz / 2``). A radio does not hear itself
unless a link to itself is set with :meth:`SharedMedium.set_link`.

A *passive* radio (``add_radio(..., passive=True)``, e.g. an eavesdropper) only
receives: it cannot transmit, no link from it exists, and the fading of the links *to*
it is drawn from its own generator. Adding one therefore changes no random draw of the
other radios and links: the channel everyone else sees stays exactly what it was.

Time model. The medium has a clock :attr:`SharedMedium.now_s`. Deterministic mode (the
default) advances it only when a port receives (to the time the last buffer it read was
complete) or by :meth:`SharedMedium.advance`; every random draw comes from the medium's
seeded generator (:mod:`phy.rng`), so a seed reproduces everything, including noise.
Real-time mode (``realtime=True``) uses wall time, and a read blocks until its samples
exist.

Buffer start timing (``timing``), from ADI's libiio/HDL behaviour: a pushed buffer (cyclic
or one-shot, :meth:`MediumPort.transmit`) starts at (clock at the push) + the radio's start
latency: a per-radio constant drawn at :meth:`SharedMedium.add_radio` (U(0.5, 2) ms) plus a
per-push jitter U(0, ``start_jitter_s``). ``timing="realistic"`` (the default) sets
``start_jitter_s`` to :data:`REALISTIC_START_JITTER_S` (1 ms) unless given. Calibration
(documented estimate, not a lab measurement): a push crosses USB 2.0 high speed (125 us
micro-frames, about 30-40 MB/s of bulk payload, so a 16384-sample buffer of 64 KiB needs
about 2 ms) and two schedulers (host, Pluto's ARM); libiio has no start time or
timestamp. ``timing="ideal"`` keeps only the constant part (jitter 0, the old behaviour),
as an explicit reference: a loop that measures a user's offset on one push and transmits
on the next is then exactly aligned, which no stock Pluto gives.

Continuous TX streams (the ``stream`` time base): :meth:`MediumPort.start_stream` starts
a non-cyclic stream that plays back to back, sample-contiguous: a host feeder keeps
``stream_buffers`` buffers of ``stream_block`` samples queued (zeros unless content was
placed), so content can be placed (:meth:`MediumPort.place`) at any stream index at or
after :meth:`MediumPort.earliest_index` (the end of the queue). Stream index ``n`` leaves
the antenna at ``t0 + n / fs_tx`` (``t0`` = stream start, after one jittered start
latency). A stalled feeder (:meth:`MediumPort.stall_feeder`, e.g. a host hiccup) lets the
queue run dry: the DAC sends zeros until the feeder resumes (plus one push jitter), so
every later index is shifted by an unknown gap, and the sticky underflow flag
(:attr:`MediumPort.tx_underflow`, like bit 0 of the DAC core's status register 0x80000088)
is set when the queue runs dry. RX overflow (a reader more than ``kernel_buffers``
behind) drops samples and sets :attr:`MediumPort.rx_overflow` (bit 2 of the ADC core's
register). Sample-clock drift: each radio's ppm error makes its stream index slip
against every other radio's (25 ppm = one sample per 40 ms at 1 MS/s).

TDD engine (the ``tdd`` time base, firmware v0.39+ ``axi_tdd``): an external sync line
shared by all radios of the medium pulses periodically (``sync_period_s``, like a 1 PPS or
a function generator) and on demand (:meth:`SharedMedium.pulse`). A radio with the engine
arms a one-shot TX buffer (:meth:`MediumPort.arm_transmit`, transmit gated to that one
buffer) or an RX capture (:meth:`MediumPort.arm_receive`); both start at the first pulse
after arming, delayed by the radio's fixed engine delay (``tdd_delay_s``) and aligned to
the radio's own free-running sample clock (its next sample edge: sub-sample timing that
follows the clock drift, not push jitter). A radio without the engine
(``tdd_engine=False``, firmware before v0.39) refuses to arm.
Receive streaming behaves like the Pluto's kernel buffers: the RX stream (started at a
port's first :meth:`MediumPort.receive`) is cut into buffers of ``rx_buffer_size``
samples; at most ``kernel_buffers`` filled buffers are held; a late reader first gets the
stale (old) buffers, then fresh ones; buffers older than that are dropped and
:attr:`MediumPort.overflows` counts them. :meth:`MediumPort.capture` is pure: the ADC
output for any window (it uses the *current* settings of all radios and links applied
to the transmission history kept for ``history_s`` seconds).

Media are registered by name (:func:`register_medium`) so ``sim://<medium>/<radio>``
radio URIs resolve (see :mod:`radio.sim`). All medium state is guarded by one lock.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from scipy.constants import speed_of_light

from phy.channel import ChannelModel, log_distance_path_loss_db, make_channel_model
from phy.checks import count, finite_scalar, positive_scalar
from phy.impairments import FarrowInterpolator, adc_quantize, dac_quantize
from phy.rng import RngLike, derive_seed, make_rng, spawn

__all__ = [
    "REALISTIC_START_JITTER_S",
    "TIMINGS",
    "LinkTruth",
    "NoTddEngineError",
    "StreamTooLateError",
    "MediumPort",
    "SharedMedium",
    "Transmission",
    "get_medium",
    "medium_seconds",
    "register_medium",
    "unregister_medium",
]

#: per-push start jitter of the realistic timing, seconds (see the module docstring)
REALISTIC_START_JITTER_S = 1e-3
#: push mode: a host that pushed nothing for this long (wall seconds) is not feeding
FEEDER_IDLE_S = 10.0
#: buffer start timing models: per-push jitter (realistic) or constant latency (ideal)
TIMINGS = ("realistic", "ideal")

_NOISE_BLOCK = 1 << 16  # samples per counter-based noise block
_NOISE_BLOCKS_KEPT = 16  # noise blocks cached per process (by receiver key and block)
_noise_blocks: dict[tuple[int, int], np.ndarray] = {}
_noise_lock = threading.Lock()
_seconds = [0.0, 0.0]  # process-wide: rendering, taking transmissions (medium_seconds)
_seconds_lock = threading.Lock()


def _account(kind: int, seconds: float) -> None:
    with _seconds_lock:
        _seconds[kind] += seconds


def account_render(seconds: float) -> None:
    """Count ``seconds`` of wall time as rendering (work this process waited for while
    other threads or processes rendered its windows, :class:`RenderJob`)."""
    _account(0, seconds)


def medium_seconds() -> tuple[float, float]:
    """Wall seconds every medium of this process has worked so far, from any thread:
    ``(rendering receiver captures, taking transmissions)``. A round's share is the
    difference of two readings (:class:`orchestrator.round_timing.RoundTimer`)."""
    with _seconds_lock:
        return _seconds[0], _seconds[1]


_INTERPOLATOR_CACHE = 32  # interpolators kept by content (pilots repeat across users)
_interpolators: OrderedDict[tuple[bytes, bool], FarrowInterpolator] = OrderedDict()
_interpolators_lock = threading.Lock()


def _interpolator_for(samples: np.ndarray, cyclic: bool) -> FarrowInterpolator:
    """The band-limited interpolator of ``samples`` (complex64 ``(n,)``), shared by every
    transmission of the same content: a buffer many radios push (a pilot) builds its
    table once, not once per transmit. Keyed by a BLAKE2b digest of the samples."""
    key = (hashlib.blake2b(samples.tobytes(), digest_size=16).digest(), bool(cyclic))
    with _interpolators_lock:
        interp = _interpolators.get(key)
        if interp is not None:
            _interpolators.move_to_end(key)
            return interp
    interp = FarrowInterpolator(samples, cyclic=cyclic)
    with _interpolators_lock:
        _interpolators[key] = interp
        while len(_interpolators) > _INTERPOLATOR_CACHE:
            _interpolators.popitem(last=False)
    return interp


_INTERNED_KEPT = 64  # DAC buffers kept by content (pilots repeat across users)
_interned_buffers: OrderedDict[bytes, np.ndarray] = OrderedDict()


def _interned(samples: np.ndarray) -> np.ndarray:
    """``samples`` (read-only), or an equal buffer already on the air: the users of a
    round push the same pilots, so the medium keeps one copy of each (and a planned
    wave's render jobs pickle it once per chunk)."""
    key = hashlib.blake2b(samples.tobytes(), digest_size=16).digest()
    with _interpolators_lock:
        kept = _interned_buffers.get(key)
        if kept is not None:
            _interned_buffers.move_to_end(key)
            return kept
        samples.setflags(write=False)
        _interned_buffers[key] = samples
        while len(_interned_buffers) > _INTERNED_KEPT:
            _interned_buffers.popitem(last=False)
    return samples


_ROT_BLOCK = 256  # rotation computed as outer product of blocks of this length


def _rotation(n: int, cycles0: float, dcycles: float, scale: complex) -> np.ndarray:
    """``scale * exp(j 2 pi (cycles0 + m dcycles))`` for ``m = 0..n-1`` as complex64,
    computed as an outer product of a short base and block starts (one multiply/sample)."""
    nb = -(-n // _ROT_BLOCK)
    base = np.exp(2j * np.pi * np.mod(dcycles * np.arange(_ROT_BLOCK), 1.0)).astype(np.complex64)
    blocks = scale * np.exp(
        2j * np.pi * np.mod(cycles0 + dcycles * _ROT_BLOCK * np.arange(nb), 1.0)
    )
    return (blocks.astype(np.complex64)[:, None] * base[None, :]).ravel()[:n]


def _gaussian_block(key: int, block: int) -> np.ndarray:
    """Unit-power complex Gaussian noise block number ``block`` of the stream ``key``:
    complex64 ``(_NOISE_BLOCK,)``, a pure function of (key, block). Drawn with torch's
    CPU generator (about 3x faster than numpy's for float32 normals), seeded from a
    numpy SeedSequence of (key, block) so distinct blocks/keys get independent streams."""
    import torch  # deferred: only receivers need it

    seed = int(np.random.SeedSequence([key, block % (1 << 64)]).generate_state(1, np.uint64)[0])
    gen = torch.Generator()
    gen.manual_seed(seed)
    values = torch.randn(2 * _NOISE_BLOCK, generator=gen, dtype=torch.float32).numpy()
    values *= np.float32(np.sqrt(0.5))
    return values.view(np.complex64)


@dataclass
class Transmission:
    """One transmit buffer on the air (times in medium seconds).

    Attributes:
        samples: DAC output samples, complex64 ``(n,)`` (quantized, |I|,|Q| <= 1).
        cyclic: repeat until ``end_s`` (True) or play once (False).
        start_s: time the first sample leaves the antenna.
        sample_rate_hz: the transmitter's actual sample clock, samples/s.
        latency_s: ``start_s`` minus the clock at the transmit call.
        end_s: stop time (inf for a cyclic buffer still playing; for one-shot the
            natural end or the time it was cut off).
    """

    samples: np.ndarray
    cyclic: bool
    start_s: float
    sample_rate_hz: float
    latency_s: float
    end_s: float = math.inf
    armed_at_s: float = math.nan  # TDD: when the armed buffer reached the DMA
    _interp: FarrowInterpolator | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        """Pickled without the interpolator (rebuilt on first use where it is rendered)."""
        return {**self.__dict__, "_interp": None}

    @property
    def interpolator(self) -> FarrowInterpolator:
        """The band-limited interpolator of the samples (built on first use, shared with
        earlier transmissions of the same samples)."""
        if self._interp is None:
            self._interp = _interpolator_for(self.samples, self.cyclic)
        return self._interp


class StreamTooLateError(ValueError):
    """Content placed on a TX stream before :meth:`MediumPort.earliest_index` (that part
    of the stream is already queued or on the air)."""


class NoTddEngineError(RuntimeError):
    """The radio has no TDD engine (``axi_tdd`` needs Pluto firmware v0.39 or later)."""


@dataclass
class _Epoch:
    """A contiguous stretch of a TX stream: stream index ``index`` leaves at ``time_s``."""

    time_s: float
    index: int


@dataclass
class _TxStream:
    """State of a continuous (non-cyclic, back-to-back) TX stream of one port.

    ``epochs``: index -> time anchors (a new one after each underflow); ``segments``:
    placed content as (first index, its Transmission); ``stall_until_s``: the feeder
    pushes nothing before this time; ``dry_at_s``: times at which the queue ran dry
    (the sticky underflow flag rises then)."""

    fs: float
    block: int
    buffers: int
    epochs: list[_Epoch]
    segments: list[tuple[int, Transmission]] = field(default_factory=list)
    stall_until_s: float = -math.inf
    dry_at_s: list[float] = field(default_factory=list)
    pushed_end: int | None = None  # push mode (host pushes, no modelled feeder): queue end
    pushes: int = 0  # push mode: buffers pushed
    last_push_wall: float = -math.inf  # push mode: wall time of the last push

    def feeding(self) -> bool:
        """Push mode: a host feeder is streaming (pushed more than once, within the last
        ``FEEDER_IDLE_S`` of wall time: generous, a loaded host schedules threads late)."""
        return self.pushes >= 2 and time.monotonic() - self.last_push_wall < FEEDER_IDLE_S

    @property
    def lead(self) -> int:
        """Samples the feeder keeps queued ahead of the DAC."""
        return self.block * self.buffers

    def epoch_at_time(self, t: float) -> _Epoch:
        last = self.epochs[0]
        for e in self.epochs:
            if e.time_s <= t:
                last = e
        return last

    def index_at(self, t: float) -> float:
        """Stream index playing at medium time ``t`` (fractional)."""
        e = self.epoch_at_time(t)
        return e.index + (t - e.time_s) * self.fs

    def time_of(self, index: int) -> float:
        """Medium time stream sample ``index`` leaves the antenna."""
        last = self.epochs[0]
        for e in self.epochs:
            if e.index <= index:
                last = e
        return last.time_s + (index - last.index) / self.fs


@dataclass(frozen=True)
class LinkTruth:
    """Genie view of the link ``tx -> rx`` with the current settings.

    ``gain`` = fading * path loss * TX attenuation * RX gain (complex amplitude, without
    LO phases); ``phase_rad`` = LO phase difference; ``cfo_hz``, ``sro_ppm`` =
    ``(fs_tx / fs_rx - 1) 1e6``; ``delay_s`` propagation delay; ``start_s`` /
    ``latency_s`` of tx's latest transmission (None if it never transmitted);
    ``coupled`` whether the LOs are within the receiver's bandwidth.
    """

    tx: str
    rx: str
    gain: complex
    fading: complex
    path_loss_db: float
    phase_rad: float
    cfo_hz: float
    sro_ppm: float
    delay_s: float
    start_s: float | None
    latency_s: float | None
    coupled: bool


@dataclass
class _Link:
    fading: complex
    pinned: bool = False  # gain fixed by set_link: not redrawn
    path_loss_db: float | None = None
    delay_s: float | None = None


def _non_negative(name: str, value: float, note: str = "") -> float:
    """``value`` as a float; raises (naming ``name``, then ``note``) unless finite and >= 0."""
    value = finite_scalar(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0{note}, got {value}")
    return value


class _Setting:
    """A :class:`MediumPort` setting ``name`` stored in ``_name``: read as is; written
    under the medium's lock as ``check(name, value)``, and with ``restarts_stream`` the
    RX stream restarts."""

    def __init__(
        self, doc: str, check: Callable[[str, Any], Any], restarts_stream: bool = False
    ) -> None:
        self.__doc__ = doc
        self.check = check
        self.restarts_stream = restarts_stream

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.attr = name, f"_{name}"

    def __get__(self, port: MediumPort | None, owner: type | None = None) -> Any:
        return self if port is None else getattr(port, self.attr)

    def __set__(self, port: MediumPort, value: Any) -> None:
        with port.medium.lock:
            setattr(port, self.attr, self.check(self.name, value))
            if self.restarts_stream:
                port._stream_t0 = None


class MediumPort:
    """One radio on a :class:`SharedMedium` (create with :meth:`SharedMedium.add_radio`).

    Settings are properties (units in the names); setting ``lo_hz`` draws a new random LO
    phase; changing ``sample_rate_hz`` or ``rx_buffer_size`` restarts the RX stream.
    """

    def __init__(
        self,
        medium: SharedMedium,
        name: str,
        rng: np.random.Generator,
        *,
        ppm: float,
        latency_s: float,
        position: tuple[float, float, float] | None,
        lo_hz: float,
        sample_rate_hz: float,
        rf_bandwidth_hz: float | None,
        tx_attenuation_db: float,
        rx_gain_db: float,
        rx_buffer_size: int,
        kernel_buffers: int,
        passive: bool = False,
        tdd_engine: bool = True,
        tdd_delay_s: float = 0.0,
    ) -> None:
        self.medium = medium
        self.name = name
        self._rng = rng
        self._passive = bool(passive)
        # links to a passive radio draw their fading here, not from the medium's stream
        self._fading_rng: np.random.Generator | None = spawn(rng, 1)[0] if passive else None
        self._noise_key = derive_seed(rng)
        self._ppm = finite_scalar("ppm", ppm)
        self._latency_s = _non_negative("latency_s", latency_s)
        self._position = self._check_position(position)
        self._lo_hz = positive_scalar("lo_hz", lo_hz)
        self._lo_phase = float(rng.uniform(0.0, 2.0 * np.pi))
        self._sample_rate_hz = positive_scalar("sample_rate_hz", sample_rate_hz)
        self._rf_bandwidth_hz = (
            None if rf_bandwidth_hz is None else positive_scalar("rf_bandwidth_hz", rf_bandwidth_hz)
        )
        self._tx_attenuation_db = _non_negative(
            "tx_attenuation_db", tx_attenuation_db, " (an attenuation)"
        )
        self._rx_gain_db = finite_scalar("rx_gain_db", rx_gain_db)
        self._rx_buffer_size = count("rx_buffer_size", rx_buffer_size, 1)
        self._kernel_buffers = count("kernel_buffers", kernel_buffers, 1)
        self._history: list[Transmission] = []
        self._stream_t0: float | None = None
        self._rx_pos = 0
        self._overflows = 0
        self._rx_overflow_flag = False
        self._tx_stream: _TxStream | None = None
        self._underflow_cleared_s = -math.inf
        self._tdd_engine = bool(tdd_engine)
        self._tdd_delay_s = _non_negative("latency_s", tdd_delay_s)
        # origin of this radio's free-running sample clock (TDD starts on its edges)
        self._clock_origin_s = float(rng.uniform(0.0, 1.0))
        self._armed: list[Transmission] = []  # armed TDD buffers waiting for a pulse
        self._tdd_capture: tuple[float, int] | None = None  # last armed RX capture

    # ----------------------------------------------------------------- validation
    @staticmethod
    def _check_position(position: tuple[float, float, float] | None) -> np.ndarray | None:
        if position is None:
            return None
        pos = np.asarray(position, dtype=float)
        if pos.shape not in ((2,), (3,)) or not np.all(np.isfinite(pos)):
            raise ValueError(f"position must be 2 or 3 finite metres, got {position!r}")
        return np.pad(pos, (0, 3 - pos.size))

    # ----------------------------------------------------------------- properties
    ppm = _Setting(
        "Oscillator error, parts per million (scales LO and sample clock).", finite_scalar
    )
    latency_s = _Setting(
        "Constant part of the transmit start latency, seconds (>= 0).", _non_negative
    )

    @property
    def position(self) -> np.ndarray | None:
        """Antenna position (x, y, z) in metres, or None (then links use set values)."""
        return None if self._position is None else self._position.copy()

    @position.setter
    def position(self, value: tuple[float, float, float] | None) -> None:
        with self.medium.lock:
            self._position = self._check_position(value)

    @property
    def lo_hz(self) -> float:
        """Nominal LO frequency, Hz (TX and RX). Setting it draws a new LO phase."""
        return self._lo_hz

    @lo_hz.setter
    def lo_hz(self, value: float) -> None:
        with self.medium.lock:
            self._lo_hz = positive_scalar("lo_hz", value)
            self._lo_phase = float(self._rng.uniform(0.0, 2.0 * np.pi))

    @property
    def lo_phase_rad(self) -> float:
        """Current random LO phase, radians (genie value)."""
        return self._lo_phase

    sample_rate_hz = _Setting(
        "Nominal sample rate, samples/s (the actual clock is off by ``ppm``).",
        positive_scalar,
        restarts_stream=True,
    )

    @property
    def actual_sample_rate_hz(self) -> float:
        """The sample clock including the oscillator error, samples/s."""
        return self._sample_rate_hz * (1.0 + self._ppm * 1e-6)

    @property
    def rf_bandwidth_hz(self) -> float:
        """RF bandwidth, Hz (defaults to the sample rate)."""
        return self._sample_rate_hz if self._rf_bandwidth_hz is None else self._rf_bandwidth_hz

    @rf_bandwidth_hz.setter
    def rf_bandwidth_hz(self, value: float | None) -> None:
        with self.medium.lock:
            self._rf_bandwidth_hz = (
                None if value is None else positive_scalar("rf_bandwidth_hz", value)
            )

    tx_attenuation_db = _Setting(
        "TX attenuation, dB >= 0 (signal amplitude scales by 10**(-dB/20)).",
        partial(_non_negative, note=" (an attenuation)"),
    )
    rx_gain_db = _Setting(
        "RX gain, dB (scales received signal and front-end noise alike).", finite_scalar
    )
    rx_buffer_size = _Setting(
        "Samples per RX kernel buffer (setting it restarts the RX stream).",
        partial(count, minimum=1),
        restarts_stream=True,
    )
    kernel_buffers = _Setting(
        "How many filled RX buffers the kernel holds before dropping old ones.",
        partial(count, minimum=1),
    )

    @property
    def overflows(self) -> int:
        """Number of RX buffers dropped because the reader fell behind."""
        return self._overflows

    @property
    def passive(self) -> bool:
        """Receive-only radio (see :meth:`SharedMedium.add_radio`)."""
        return self._passive

    @property
    def stream_position(self) -> int | None:
        """Index of the next RX stream sample :meth:`receive` returns (samples read or
        flushed since the stream started); None before the first receive."""
        with self.medium.lock:
            return None if self._stream_t0 is None else self._rx_pos

    @property
    def tdd_capture(self) -> tuple[float, int] | None:
        """``(medium time of its first sample, samples)`` of the last RX capture armed on
        the TDD engine (:meth:`arm_receive`), None before one; like
        :meth:`stream_time_s` for streams, it places a window this radio read."""
        with self.medium.lock:
            return self._tdd_capture

    def stream_time_s(self, index: int) -> float:
        """Medium time (seconds) of RX stream sample ``index`` at this radio's actual
        sample clock; RuntimeError before the first receive. With
        :attr:`stream_position` this places a window this radio read, e.g. for another
        receiver's :meth:`capture` of the same stretch of air."""
        with self.medium.lock:
            if self._stream_t0 is None:
                raise RuntimeError(f"radio {self.name!r} has no RX stream yet")
            return self._stream_t0 + int(index) / self.actual_sample_rate_hz

    @property
    def transmission(self) -> Transmission | None:
        """The latest transmission (possibly finished), or None."""
        return self._history[-1] if self._history else None

    # ----------------------------------------------------------------- transmit
    def transmit(self, samples: np.ndarray, cyclic: bool = False) -> Transmission:
        """Put ``samples`` (complex ``(n,)``, full scale 1.0 per I/Q; values beyond are
        clipped by the DAC) on the air, cyclically or once. Starts at the clock plus this
        radio's start latency; replaces any transmission still playing at that time."""
        if self._passive:
            raise RuntimeError(f"radio {self.name!r} is passive (receive-only)")
        x = self._dac(samples)
        with self.medium.lock:
            now = self.medium.now_s
            latency = self._push_latency()
            fs = self.actual_sample_rate_hz
            tr = Transmission(x, bool(cyclic), now + latency, fs, latency)
            if not cyclic:
                tr.end_s = tr.start_s + x.size / fs
            self._tx_stream = None
            self._armed = []
            self._replace_from(tr, now)
            return tr

    def transmit_at(
        self, samples: np.ndarray, push_s: float, end_s: float | None = None
    ) -> Transmission:
        """Put ``samples`` on the air as if pushed at medium time ``push_s`` (seconds, not
        before the clock): they start this radio's start latency later and play
        cyclically until ``end_s`` (seconds), or once when ``end_s`` is None. Unlike
        :meth:`transmit` it cuts nothing: a planned round schedules a radio's pilot and
        frames for windows of air ahead of the clock (deterministic clock only), and a
        schedule that overlaps one of this radio's transmissions is refused
        (ValueError): one radio plays one buffer at a time."""
        if self._passive:
            raise RuntimeError(f"radio {self.name!r} is passive (receive-only)")
        push_s = finite_scalar("push_s", push_s)
        x = self._dac(samples)
        with self.medium.lock:
            if self.medium.realtime:
                raise RuntimeError("transmit_at needs the deterministic clock (not realtime)")
            now = self.medium.now_s
            if push_s < now - 1e-9:
                raise ValueError(f"push_s {push_s:.6f} s is before the clock ({now:.6f} s)")
            latency = self._push_latency()
            fs = self.actual_sample_rate_hz
            tr = Transmission(x, end_s is not None, push_s + latency, fs, latency)
            if end_s is None:
                tr.end_s = tr.start_s + x.size / fs
            else:
                tr.end_s = max(tr.start_s, finite_scalar("end_s", end_s))
            for old in self._history:
                if old.start_s < tr.end_s and tr.start_s < old.end_s:
                    raise ValueError(
                        f"radio {self.name!r}: a transmission at {tr.start_s:.6f}-"
                        f"{tr.end_s:.6f} s overlaps one at {old.start_s:.6f}-{old.end_s:.6f} s"
                    )
            self._keep(tr, now)
            return tr

    def _push_latency(self) -> float:
        """Start latency of one push: the constant part plus U(0, start_jitter_s)."""
        jitter = self.medium.start_jitter_s
        return self._latency_s + (float(self._rng.uniform(0.0, jitter)) if jitter else 0.0)

    def _replace_from(self, tr: Transmission, now: float) -> None:
        """Put ``tr`` on the air, cutting every older transmission at its start."""
        for old in self._history:
            old.end_s = min(old.end_s, max(tr.start_s, old.start_s))
        self._keep(tr, now)

    def _keep(self, tr: Transmission, now: float) -> None:
        horizon = now - self.medium.history_s
        self._history = [t for t in self._history if t.end_s > horizon] + [tr]
        self.medium._on_air_add(self, tr, horizon)

    @staticmethod
    def _dac(samples: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        x = np.asarray(samples)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"samples must be a non-empty 1-D array, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("samples contain NaN or inf")
        out = _interned(dac_quantize(x.astype(np.complex64)))
        _account(1, time.perf_counter() - started)
        return out

    # ----------------------------------------------------------------- TX streams
    def start_stream(self, block: int = 4096, buffers: int = 4) -> None:
        """Start a continuous TX stream (see the module docstring): a host feeder keeps
        ``buffers`` buffers of ``block`` samples queued, zeros unless content is placed.
        The stream starts after one (jittered) start latency; stream index 0 plays then.
        Raises RuntimeError if the stream cannot be fed (sample rate above
        :attr:`SharedMedium.max_stream_rate_hz`, the host link's sustained rate)."""
        if self._passive:
            raise RuntimeError(f"radio {self.name!r} is passive (receive-only)")
        block, buffers = count("block", block, 1), count("buffers", buffers, 1)
        with self.medium.lock:
            limit = self.medium.max_stream_rate_hz
            if self._sample_rate_hz > limit:
                raise RuntimeError(
                    f"radio {self.name!r}: a continuous stream at {self._sample_rate_hz:g} S/s "
                    f"cannot be fed (the host link sustains about {limit:g} S/s); lower "
                    "sample_rate_hz or use the tdd time base"
                )
            now = self.medium.now_s
            self.stop_transmit()
            self._armed = []
            start = now + self._push_latency()
            self._tx_stream = _TxStream(
                self.actual_sample_rate_hz, block, buffers, [_Epoch(start, 0)]
            )

    def _require_stream(self) -> _TxStream:
        if self._tx_stream is None:
            raise RuntimeError(f"radio {self.name!r} has no TX stream (call start_stream)")
        return self._tx_stream

    @property
    def streaming(self) -> bool:
        """Whether a continuous TX stream is running."""
        return self._tx_stream is not None

    def earliest_index(self) -> int:
        """First stream index content can still be placed at: the end of the feeder's
        queue now (or when a stalled feeder resumes)."""
        with self.medium.lock:
            st = self._require_stream()
            now = max(self.medium.now_s, st.stall_until_s)
            return max(0, int(math.ceil(st.index_at(now) - 1e-9))) + st.lead

    def stream_index_time_s(self, index: int) -> float:
        """Genie: medium time at which TX stream sample ``index`` leaves the antenna."""
        with self.medium.lock:
            return self._require_stream().time_of(int(index))

    def place(self, samples: np.ndarray, index: int) -> Transmission:
        """Place ``samples`` (complex ``(n,)``, full scale 1.0) at TX stream ``index``
        (>= :meth:`earliest_index`, else :class:`StreamTooLateError`); they play once,
        contiguous with the stream."""
        x = self._dac(samples)
        with self.medium.lock:
            st = self._require_stream()
            earliest = self.earliest_index()
            if int(index) < earliest:
                raise StreamTooLateError(
                    f"radio {self.name!r}: stream index {int(index)} is already queued or on "
                    f"the air (earliest placeable index {earliest}, the feeder queues "
                    f"{st.lead} samples ahead)"
                )
            now = self.medium.now_s
            start = st.time_of(int(index))
            tr = Transmission(x, False, start, st.fs, start - now, start + x.size / st.fs)
            self._keep(tr, now)
            st.segments = [(i, t) for i, t in st.segments if t.end_s > now] + [(int(index), tr)]
            return tr

    def stall_feeder(self, seconds: float) -> float:
        """Stall the host feeder for ``seconds`` from now (a host hiccup). If the queue
        runs dry, the DAC sends zeros until the feeder resumes (plus one push jitter):
        every later stream index is shifted by that gap, and the sticky underflow flag
        rises when the queue runs dry. Returns the gap in seconds (0: no underflow)."""
        seconds = _non_negative("seconds", seconds)
        with self.medium.lock:
            st = self._require_stream()
            stop = max(self.medium.now_s, st.stall_until_s)
            end_index = max(0, int(math.ceil(st.index_at(stop) - 1e-9))) + st.lead
            dry_s = st.time_of(end_index)
            st.stall_until_s = stop + seconds
            # the feeder's pushes were in flight before the stall: only the first push
            # after it adds its jitter
            jitter = self.medium.start_jitter_s
            resume_s = st.stall_until_s + (float(self._rng.uniform(0.0, jitter)) if jitter else 0)
            if resume_s <= dry_s:
                return 0.0
            gap = resume_s - dry_s
            st.epochs.append(_Epoch(resume_s, end_index))
            st.dry_at_s.append(dry_s)
            for index, tr in st.segments:
                if index >= end_index:
                    tr.start_s += gap
                    tr.end_s += gap
            self.medium._on_air_version += 1  # moved later: the start-time index is stale
            return gap

    def push(self, samples: np.ndarray) -> Transmission:
        """A non-cyclic buffer pushed by the host (libiio ``iio_buffer_push``, no modelled
        feeder): it plays right after the previous push if it reached the DMA (one push
        latency from now) before the queue ran dry; otherwise the DAC sent zeros
        meanwhile (underflow: the sticky flag rises when the queue ran dry) and it
        starts when it arrives. The first push starts the stream."""
        x = self._dac(samples)
        with self.medium.lock:
            now = self.medium.now_s
            arrival = now + self._push_latency()
            st = self._tx_stream
            if st is None or st.pushed_end is None:
                self.stop_transmit()
                self._armed = []
                fs = self.actual_sample_rate_hz
                st = self._tx_stream = _TxStream(fs, x.size, 1, [_Epoch(arrival, 0)])
                st.pushed_end = 0
                self.medium._pushers[self.name] = self
            else:
                dry = st.time_of(st.pushed_end)
                if arrival > dry:
                    st.epochs.append(_Epoch(arrival, st.pushed_end))
                    st.dry_at_s.append(dry)
            start = st.time_of(st.pushed_end)
            tr = Transmission(x, False, start, st.fs, start - now, start + x.size / st.fs)
            if np.any(x):  # a block of zeros adds nothing to any capture: not kept (a
                self._keep(tr, now)  # stream is mostly zeros between placements)
            st.pushed_end += x.size
            st.pushes += 1
            st.last_push_wall = time.monotonic()
            return tr

    def queued_s(self) -> float:
        """Seconds of pushed TX stream samples still to play (push mode; 0 otherwise)."""
        with self.medium.lock:
            st = self._tx_stream
            if st is None or st.pushed_end is None:
                return 0.0
            return max(0.0, st.time_of(st.pushed_end) - self.medium.now_s)

    @property
    def tx_underflow(self) -> bool:
        """Sticky TX underflow flag: the stream's queue ran dry since the last clear."""
        with self.medium.lock:
            st = self._tx_stream
            now = self.medium.now_s
            return st is not None and any(self._underflow_cleared_s < t <= now for t in st.dry_at_s)

    def clear_tx_underflow(self) -> None:
        """Clear the sticky underflow flag (write 1 to bit 0 on the hardware)."""
        with self.medium.lock:
            self._underflow_cleared_s = self.medium.now_s

    @property
    def rx_overflow(self) -> bool:
        """Sticky RX overflow flag: samples were dropped since the last clear."""
        with self.medium.lock:
            if self._stream_t0 is not None:
                self._drop_overflowed()
            return self._rx_overflow_flag

    def clear_rx_overflow(self) -> None:
        """Clear the sticky overflow flag (write 1 to bit 2 on the hardware)."""
        with self.medium.lock:
            self._rx_overflow_flag = False

    # ----------------------------------------------------------------- TDD engine
    @property
    def tdd_engine(self) -> bool:
        """Whether this radio has the TDD engine (firmware v0.39+)."""
        return self._tdd_engine

    def _require_tdd(self) -> None:
        if not self._tdd_engine:
            raise NoTddEngineError(
                f"radio {self.name!r} has no TDD engine: the tdd time base needs the axi_tdd "
                "core of Pluto firmware v0.39 or later (use the stream time base)"
            )

    def _on_clock_edge(self, t: float) -> float:
        """The first edge of this radio's sample clock at or after medium time ``t``."""
        fs = self.actual_sample_rate_hz
        k = math.ceil((t - self._clock_origin_s) * fs - 1e-9)
        return self._clock_origin_s + k / fs

    def _tdd_start(self, pulse_s: float) -> float:
        return self._on_clock_edge(pulse_s + self._tdd_delay_s)

    def arm_transmit(self, samples: np.ndarray) -> Transmission:
        """Arm a one-shot TX buffer on the TDD engine: it plays once, starting at the
        first sync pulse after it reached the DMA (one push latency from now); transmit
        is gated to that buffer. Raises :class:`NoTddEngineError` without the engine."""
        self._require_tdd()
        x = self._dac(samples)
        with self.medium.lock:
            now = self.medium.now_s
            ready = now + self._push_latency()
            fs = self.actual_sample_rate_hz
            tr = Transmission(x, False, math.inf, fs, math.nan, math.inf, ready)
            self.stop_transmit()
            self._tx_stream = None
            self._keep(tr, now)
            self._armed.append(tr)
            pulse = self.medium._next_pulse(ready)
            if pulse is not None:
                self._fire(tr, pulse)
            return tr

    def _fire(self, tr: Transmission, pulse_s: float) -> None:
        start = self._tdd_start(pulse_s)
        tr.start_s = start
        tr.latency_s = start - tr.armed_at_s
        tr.end_s = start + tr.samples.size / tr.sample_rate_hz
        self._armed = [t for t in self._armed if t is not tr]

    def arm_receive(self, n: int) -> np.ndarray:
        """Arm an RX capture of ``n`` samples on the TDD engine and return it: it starts
        at the first sync pulse after the arming reached the radio (one push latency
        from now) (complex64 ``(n,)``). Deterministic mode
        advances the clock to its end; real-time mode sleeps until then. RuntimeError if
        no pulse is scheduled (no periodic sync and no :meth:`SharedMedium.pulse`)."""
        self._require_tdd()
        n = count("n", n, 1)
        medium = self.medium
        with medium.lock:
            # the arming request reaches the radio one push latency later
            pulse = medium._next_pulse(medium.now_s + self._push_latency())
            if pulse is None:
                raise RuntimeError(
                    "no sync pulse is coming: set sync_period_s or call SharedMedium.pulse()"
                )
            start = self._tdd_start(pulse)
            end = start + n / self.actual_sample_rate_hz
            self._tdd_capture = (start, n)
            medium._advance_to(end)
        medium._sleep_until(end)
        return self.capture(start, n)

    def stop_transmit(self) -> None:
        """Stop transmitting now (a no-op when idle); disarms armed TDD buffers and ends
        a TX stream."""
        with self.medium.lock:
            now = self.medium.now_s
            for tr in self._armed:
                tr.start_s = tr.end_s = now
            self._armed = []
            self._tx_stream = None
            for tr in self._history:
                tr.end_s = min(tr.end_s, max(now, tr.start_s))

    # ----------------------------------------------------------------- receive
    def held_buffers(self) -> int:
        """Filled RX buffers waiting in the kernel now (0 before the first receive)."""
        with self.medium.lock:
            if self._stream_t0 is None:
                return 0
            self._drop_overflowed()
            filled = self._filled_samples()
            return max(0, (filled - self._rx_pos) // self._rx_buffer_size)

    def flush(self) -> int:
        """Discard every filled RX sample not yet read (held buffers, and the rest of a
        partly read one), as reading and dropping them would; return how many buffers
        were discarded. The next :meth:`receive` starts at the buffer being filled."""
        with self.medium.lock:
            if self._stream_t0 is None:
                return 0
            self._drop_overflowed()
            filled = self._filled_samples()
            if self._rx_pos >= filled:
                return 0
            b = self._rx_buffer_size
            discarded = -(-(filled - self._rx_pos) // b)
            self._rx_pos = filled
            return discarded

    def _filled_samples(self) -> int:
        fs = self.actual_sample_rate_hz
        b = self._rx_buffer_size
        return int(math.floor((self.medium.now_s - self._stream_t0) * fs / b + 1e-9)) * b

    def _drop_overflowed(self) -> None:
        b = self._rx_buffer_size
        oldest_held = self._filled_samples() - self._kernel_buffers * b
        if self._rx_pos < oldest_held:
            first_buffer = (self._rx_pos // b) * b
            self._overflows += (oldest_held - first_buffer) // b
            self._rx_pos = oldest_held
            self._rx_overflow_flag = True

    def receive(self, n: int) -> np.ndarray:
        """Next ``n`` samples of the RX stream (complex64, full scale 1.0), with kernel
        buffer semantics: stale buffers first, dropped buffers counted in
        :attr:`overflows` (and the sticky :attr:`rx_overflow` flag). Deterministic mode
        advances the clock to the time the last needed buffer is complete; real-time
        mode sleeps until then."""
        return self.capture(self._consume(n), n)

    def discard(self, n: int) -> None:
        """Read and drop the next ``n`` RX stream samples (as :meth:`receive`, same
        timing and overflow semantics, without computing them)."""
        self._consume(n)

    def _consume(self, n: int) -> float:
        """Move the RX stream position by ``n``; returns the medium time of its first
        sample after waiting (real time) or advancing the clock (deterministic)."""
        n = count("n", n, 0)
        medium = self.medium
        if not medium.realtime:
            self._wait_for_pushers(n)
        with medium.lock:
            fs = self.actual_sample_rate_hz
            b = self._rx_buffer_size
            if self._stream_t0 is None:  # align the stream to this receiver's sample grid
                # tolerance: now_s * fs lands a hair above an integer after float rounding
                # when the clock stopped exactly on a sample; that must not skip a sample
                self._stream_t0 = math.ceil(medium.now_s * fs - 1e-6) / fs
                self._rx_pos = 0
            self._drop_overflowed()
            start_s = self._stream_t0 + self._rx_pos / fs
            end = self._rx_pos + n
            ready_s = self._stream_t0 + (-(-end // b)) * b / fs
            self._rx_pos = end
            medium._advance_to(ready_s)
        medium._sleep_until(ready_s)
        return start_s

    def _wait_for_pushers(self, n: int) -> None:
        """Deterministic clock with host-fed TX streams (:meth:`push`, a feeder pushing
        buffer after buffer): before a read moves the clock, wait (up to
        ``medium.pusher_wait_s`` of wall time) until every such stream has samples queued
        past its end, so a host that keeps up never underflows because threads were
        scheduled late; a feeder that does not come (a stalled host) underflows as on the
        hardware. One-off pushes (a single buffer, or none for FEEDER_IDLE_S) are not waited
        for."""
        medium = self.medium
        deadline = time.monotonic() + medium.pusher_wait_s
        while time.monotonic() < deadline:
            with medium.lock:
                if self._stream_t0 is None:
                    return
                fs = self.actual_sample_rate_hz
                b = self._rx_buffer_size
                end = self._rx_pos + n
                ready_s = self._stream_t0 + (-(-end // b)) * b / fs
                behind = [
                    p
                    for p in medium._pushers.values()
                    if p._tx_stream is not None
                    and p._tx_stream.pushed_end is not None
                    and p._tx_stream.feeding()
                    and p._tx_stream.time_of(p._tx_stream.pushed_end) < ready_s
                ]
            if not behind:
                return
            time.sleep(0.0005)

    def capture(self, start_s: float, n: int) -> np.ndarray:
        """What this receiver's ADC produces for ``n`` of its samples starting at medium
        time ``start_s`` (seconds); complex64 ``(n,)``. Pure: no clock or stream change."""
        start_s = finite_scalar("start_s", start_s)
        n = count("n", n, 0)
        return self.medium._render(self, start_s, n)

    def _unit_noise(self, first: int, n: int) -> np.ndarray:
        """Unit-power complex Gaussian noise for absolute sample indices first..first+n-1
        of this receiver (:func:`unit_noise` with its key)."""
        return unit_noise(self._noise_key, first, n)


def unit_noise(key: int, first: int, n: int) -> np.ndarray:
    """Unit-power complex Gaussian noise for absolute sample indices first..first+n-1 of
    the receiver whose noise key is ``key``: counter-based (the same index always gives
    the same value, in any process), complex64 ``(n,)``."""
    out = np.empty(n, np.complex64)
    pos = 0
    while pos < n:
        idx = first + pos
        block, offset = divmod(idx, _NOISE_BLOCK)
        values = _noise_blocks.get((key, block))
        if values is None:  # a pure function of (key, block): racing threads agree
            values = _gaussian_block(key, block)
            with _noise_lock:
                while len(_noise_blocks) >= _NOISE_BLOCKS_KEPT:
                    _noise_blocks.pop(next(iter(_noise_blocks)))
                _noise_blocks[key, block] = values
        take = min(n - pos, _NOISE_BLOCK - offset)
        out[pos : pos + take] = values[offset : offset + take]
        pos += take
    return out


@dataclass
class RenderJob:
    """Everything one receiver window's ADC output depends on, taken from the medium
    under its lock (:meth:`SharedMedium.render_jobs`): :meth:`render` is then pure and
    runs in any thread or process (a planned round's windows on a Ray cluster).

    Attributes:
        start_s: medium time of the window's first sample, seconds.
        n: samples.
        fs_rx: the receiver's actual sample rate, samples/s.
        noise_std: receiver noise standard deviation (full scale 1.0).
        noise_key: the receiver's counter-based noise key (:func:`unit_noise`).
        heard: ``(transmission, link truth)`` of every transmission heard in the window,
            in the medium's summation order.
    """

    start_s: float
    n: int
    fs_rx: float
    noise_std: float
    noise_key: int
    heard: list[tuple[Transmission, LinkTruth]]

    def render(self) -> np.ndarray:
        """The window's ADC output, complex64 ``(n,)``."""
        acc = np.zeros(self.n, np.complex64)
        for tr, truth in self.heard:
            SharedMedium._add_transmission(acc, tr, truth, self.start_s, self.fs_rx)
        if self.noise_std > 0:
            first = int(round(self.start_s * self.fs_rx))
            acc += np.float32(self.noise_std) * unit_noise(self.noise_key, first, self.n)
        return adc_quantize(acc)


class SharedMedium:
    """The air shared by radios (see the module docstring for the signal model).

    Args:
        rng: anything :func:`phy.rng.make_rng` accepts; reproduces every random draw.
        seed: alias of ``rng`` (give one or the other).
        channel_model: name in :data:`phy.channel.CHANNEL_MODELS` or a ChannelModel.
        noise_dbfs: receiver input noise power, dB relative to full scale at 0 dB RX gain.
        default_path_loss_db: path loss of links with neither a set value nor positions.
        path_loss_exponent: log-distance exponent for links between positioned radios.
        ppm_range: default oscillator errors are drawn U(-ppm_range, ppm_range).
        latency_range_s: default constant start latencies are drawn U(lo, hi), seconds.
        timing: "realistic" (default: per-push jitter, see the module docstring) or
            "ideal" (constant start latency: the old reference behaviour).
        start_jitter_s: per-push extra latency U(0, start_jitter_s), seconds; None takes
            the timing's value (REALISTIC_START_JITTER_S or 0).
        max_stream_rate_hz: highest sample rate a continuous TX stream can be fed at
            (the host link's sustained rate; USB 2.0 gives about 4-7 MS/s).
        sync_period_s: period of the shared TDD sync line (None: pulses only on demand
            with :meth:`pulse`); sync_phase_s: time of its first periodic pulse.
        shared_reference: all radios share one oscillator (one ppm draw for all: no
            CFO or sample-rate offset, LO phases still random).
        realtime: clock = wall time (blocking reads) instead of the deterministic clock.
        history_s: how long finished transmissions are kept for stale/past captures.
    """

    def __init__(
        self,
        *,
        rng: RngLike = None,
        seed: RngLike = None,
        channel_model: str | ChannelModel = "rayleigh",
        noise_dbfs: float = -100.0,
        default_path_loss_db: float = 60.0,
        path_loss_exponent: float = 2.0,
        ppm_range: float = 25.0,
        latency_range_s: tuple[float, float] = (0.0, 2e-3),
        timing: str = "realistic",
        start_jitter_s: float | None = None,
        max_stream_rate_hz: float = 4e6,
        sync_period_s: float | None = None,
        sync_phase_s: float = 0.0,
        shared_reference: bool = False,
        realtime: bool = False,
        history_s: float = 10.0,
    ) -> None:
        if rng is not None and seed is not None:
            raise ValueError("give rng or seed, not both")
        root = make_rng(seed if rng is None else rng)
        self._radio_seed_rng, self._fading_rng, ref_rng = spawn(root, 3)
        self.channel_model = (
            make_channel_model(channel_model) if isinstance(channel_model, str) else channel_model
        )
        if not isinstance(self.channel_model, ChannelModel):
            raise TypeError(f"channel_model must be a name or ChannelModel, got {channel_model!r}")
        self.noise_dbfs = finite_scalar("noise_dbfs", noise_dbfs)
        self.default_path_loss_db = finite_scalar("default_path_loss_db", default_path_loss_db)
        self.path_loss_exponent = positive_scalar("path_loss_exponent", path_loss_exponent)
        self.ppm_range = finite_scalar("ppm_range", ppm_range)
        if self.ppm_range < 0:
            raise ValueError(f"ppm_range must be >= 0, got {ppm_range}")
        lo, hi = (finite_scalar("latency_range_s", v) for v in latency_range_s)
        if not 0 <= lo <= hi:
            raise ValueError(f"latency_range_s must satisfy 0 <= lo <= hi, got {latency_range_s}")
        self.latency_range_s = (lo, hi)
        if timing not in TIMINGS:
            raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
        self.timing = timing
        if start_jitter_s is None:
            start_jitter_s = REALISTIC_START_JITTER_S if timing == "realistic" else 0.0
        self.start_jitter_s = finite_scalar("start_jitter_s", start_jitter_s)
        if self.start_jitter_s < 0:
            raise ValueError(f"start_jitter_s must be >= 0, got {start_jitter_s}")
        self.max_stream_rate_hz = positive_scalar("max_stream_rate_hz", max_stream_rate_hz)
        self.sync_period_s = (
            None if sync_period_s is None else positive_scalar("sync_period_s", sync_period_s)
        )
        self.sync_phase_s = finite_scalar("sync_phase_s", sync_phase_s)
        self._pulses: list[float] = []  # on-demand sync pulses
        #: deterministic clock: how long a read waits for host-pushed streams to keep up
        self.pusher_wait_s = 5.0
        self.shared_reference = bool(shared_reference)
        self._reference_ppm = float(ref_rng.uniform(-self.ppm_range, self.ppm_range))
        self.realtime = bool(realtime)
        self.history_s = positive_scalar("history_s", history_s)
        self.lock = threading.RLock()
        self._clock = 0.0
        self._wall0 = time.monotonic()
        self._ports: dict[str, MediumPort] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        # every kept transmission, in push order (pruned like the ports' histories), so a
        # render visits what was on the air, not every radio of the medium
        self._on_air: list[tuple[MediumPort, Transmission]] = []
        self._on_air_pruned = 0  # its length after the last prune
        self._on_air_version = 0  # bumped at every change of _on_air
        self._air_index: tuple | None = None  # its start-time index (_index_on_air)
        self._added: dict[str, int] = {}  # radio name -> when it was added (a count)
        self._add_count = itertools.count()
        self._linked: dict[str, int] = {}  # rx -> ports whose link to it exists (in order)
        self._pushers: dict[str, MediumPort] = {}  # ports that started a host-pushed stream

    # ----------------------------------------------------------------- time
    @property
    def now_s(self) -> float:
        """Medium time, seconds (wall time since creation in real-time mode)."""
        if self.realtime:
            return time.monotonic() - self._wall0
        return self._clock

    def advance(self, seconds: float) -> None:
        """Advance the deterministic clock by ``seconds`` (>= 0)."""
        seconds = _non_negative("seconds", seconds)
        if self.realtime:
            raise RuntimeError("advance() is for deterministic mode; real-time follows the wall")
        with self.lock:
            self._clock += seconds

    def _advance_to(self, t: float) -> None:
        """Deterministic mode: move the clock to medium time ``t`` unless it is already
        later (call with the lock held). Real-time mode: nothing (see :meth:`_sleep_until`)."""
        if not self.realtime:
            self._clock = max(self._clock, t)

    def _sleep_until(self, t: float) -> None:
        """Real-time mode: sleep until medium time ``t`` (call without the lock).
        Deterministic mode: nothing (see :meth:`_advance_to`)."""
        if self.realtime:
            delay = t - self.now_s
            if delay > 0:
                time.sleep(delay)

    # ----------------------------------------------------------------- TDD sync line
    def pulse(self, delay_s: float = 0.0) -> float:
        """Pulse the shared sync line on demand, ``delay_s`` (>= 0) from now; armed TDD
        buffers that reached their DMA by then start on it. Returns the pulse time."""
        delay_s = _non_negative("delay_s", delay_s)
        with self.lock:
            t = self.now_s + delay_s
            self._pulses.append(t)
            for port in self._ports.values():
                for tr in list(port._armed):
                    if tr.armed_at_s <= t:
                        port._fire(tr, t)
            return t

    def _next_pulse(self, t: float) -> float | None:
        """First sync pulse at or after medium time ``t`` (periodic or on demand)."""
        candidates = [p for p in self._pulses if p >= t]
        if self.sync_period_s is not None:
            k = max(0, math.ceil((t - self.sync_phase_s) / self.sync_period_s - 1e-12))
            candidates.append(self.sync_phase_s + k * self.sync_period_s)
        return min(candidates, default=None)

    # ----------------------------------------------------------------- radios
    def add_radio(
        self,
        name: str,
        *,
        ppm: float | None = None,
        latency_s: float | None = None,
        position: tuple[float, float, float] | None = None,
        lo_hz: float = 915e6,
        sample_rate_hz: float = 1e6,
        rf_bandwidth_hz: float | None = None,
        tx_attenuation_db: float = 10.0,
        rx_gain_db: float = 30.0,
        rx_buffer_size: int = 16384,
        kernel_buffers: int = 4,
        passive: bool = False,
        tdd_engine: bool = True,
        tdd_delay_s: float = 0.0,
    ) -> MediumPort:
        """Add radio ``name`` and return its port. ``ppm`` (default drawn U(+-ppm_range),
        or the shared reference) and ``latency_s`` (default drawn from latency_range_s)
        come from the medium's seeded generator; other arguments are initial settings.
        ``tdd_engine``: the radio has the TDD engine (firmware v0.39+); ``tdd_delay_s``:
        its fixed delay from a sync pulse to the first sample.

        ``passive=True`` adds a receive-only radio (an eavesdropper): it cannot
        transmit, and the fading of links to it comes from its own generator, so it
        shifts no draw of the radios and links already there (add it last so later
        radios keep their draws too)."""
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"radio name must be a non-empty string without '/', got {name!r}")
        with self.lock:
            if name in self._ports:
                raise ValueError(f"radio {name!r} already exists on this medium")
            rng = spawn(self._radio_seed_rng, 1)[0]
            drawn_ppm = float(rng.uniform(-self.ppm_range, self.ppm_range))
            drawn_latency = float(rng.uniform(*self.latency_range_s))
            if ppm is None:
                ppm = self._reference_ppm if self.shared_reference else drawn_ppm
            port = MediumPort(
                self,
                name,
                rng,
                ppm=ppm,
                latency_s=drawn_latency if latency_s is None else latency_s,
                position=position,
                lo_hz=lo_hz,
                sample_rate_hz=sample_rate_hz,
                rf_bandwidth_hz=rf_bandwidth_hz,
                tx_attenuation_db=tx_attenuation_db,
                rx_gain_db=rx_gain_db,
                rx_buffer_size=rx_buffer_size,
                kernel_buffers=kernel_buffers,
                passive=passive,
                tdd_engine=tdd_engine,
                tdd_delay_s=tdd_delay_s,
            )
            self._ports[name] = port
            self._added[name] = next(self._add_count)
            return port

    def port(self, name: str) -> MediumPort:
        """The port of radio ``name`` (KeyError with the known names otherwise)."""
        try:
            return self._ports[name]
        except KeyError:
            raise KeyError(
                f"no radio {name!r} on this medium; have {sorted(self._ports)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._ports

    @property
    def radios(self) -> list[str]:
        """Names of the radios on the medium, in insertion order."""
        return list(self._ports)

    def remove_radio(self, name: str) -> None:
        """Remove radio ``name`` and its links."""
        with self.lock:
            self.port(name)
            del self._ports[name]
            del self._added[name]
            self._links = {k: v for k, v in self._links.items() if name not in k}
            self._on_air = [(p, tr) for p, tr in self._on_air if p.name != name]
            self._on_air_version += 1
            self._pushers.pop(name, None)
            self._linked.clear()

    # ----------------------------------------------------------------- links
    def _link(self, tx: str, rx: str, create: bool = True) -> _Link | None:
        key = (tx, rx)
        link = self._links.get(key)
        if link is None and create and tx != rx and not self._ports[tx]._passive:
            fading = complex(self.channel_model.generate((1,), self._fading_source(rx))[0])
            link = self._links[key] = _Link(fading)
        return link

    def _fading_source(self, rx: str) -> np.random.Generator:
        """Generator of the fading of links to ``rx``: its own if it is passive."""
        own = self._ports[rx]._fading_rng
        return self._fading_rng if own is None else own

    def set_link(
        self,
        tx: str,
        rx: str,
        gain: complex | None = None,
        path_loss_db: float | None = None,
        delay_s: float | None = None,
    ) -> None:
        """Set the link ``tx -> rx``: ``gain`` pins the complex fading coefficient (not
        redrawn by :meth:`redraw_fading`), ``path_loss_db`` its path loss (dB, finite),
        ``delay_s`` its propagation delay (>= 0 s). None leaves a value unchanged. Also
        enables a self-link when ``tx == rx``."""
        with self.lock:
            self.port(tx), self.port(rx)
            link = self._link(tx, rx) or self._links.setdefault((tx, rx), _Link(1.0 + 0j))
            if gain is not None:
                g = complex(gain)
                if not (math.isfinite(g.real) and math.isfinite(g.imag)):
                    raise ValueError(f"gain must be finite, got {gain!r}")
                link.fading, link.pinned = g, True
            if path_loss_db is not None:
                link.path_loss_db = finite_scalar("path_loss_db", path_loss_db)
            if delay_s is not None:
                d = finite_scalar("delay_s", delay_s)
                if d < 0:
                    raise ValueError(f"delay_s must be >= 0, got {delay_s}")
                link.delay_s = d

    def redraw_fading(self) -> None:
        """Draw new block-fading coefficients for every link not pinned by set_link."""
        with self.lock:
            for (_, rx), link in self._links.items():
                if not link.pinned:
                    source = self._fading_source(rx)
                    link.fading = complex(self.channel_model.generate((1,), source)[0])

    def _path_loss_db(self, tx: MediumPort, rx: MediumPort, link: _Link) -> float:
        if link.path_loss_db is not None:
            return link.path_loss_db
        if tx._position is not None and rx._position is not None:
            d = float(np.linalg.norm(tx._position - rx._position))
            if d > 0:
                return float(
                    log_distance_path_loss_db(d, rx._lo_hz, exponent=self.path_loss_exponent)
                )
        return self.default_path_loss_db

    def _delay_s(self, tx: MediumPort, rx: MediumPort, link: _Link) -> float:
        if link.delay_s is not None:
            return link.delay_s
        if tx._position is not None and rx._position is not None:
            return float(np.linalg.norm(tx._position - rx._position)) / speed_of_light
        return 0.0

    def noise_power(self, rx: str) -> float:
        """Receiver noise power at rx's ADC (full-scale units, linear), without ADC
        quantization noise: ``10**((noise_dbfs + rx_gain_db)/10)``."""
        return 10.0 ** ((self.noise_dbfs + self.port(rx)._rx_gain_db) / 10.0)

    def set_link_snr(self, tx: str, rx: str, snr_db: float, signal_power: float = 1.0) -> float:
        """Set the path loss of ``tx -> rx`` so that a transmit signal of power
        ``signal_power`` (E|x|^2 in full-scale units) arrives with ``snr_db`` over the
        receiver noise, given the link's current fading and both radios' current
        attenuation (RX gain cancels). Returns the path loss set, dB."""
        snr_db = finite_scalar("snr_db", snr_db)
        signal_power = positive_scalar("signal_power", signal_power)
        with self.lock:
            txp = self.port(tx)
            self.port(rx)
            link = self._link(tx, rx) or self._links.setdefault((tx, rx), _Link(1.0 + 0j))
            fading_db = 10.0 * math.log10(max(abs(link.fading) ** 2, 1e-300))
            loss = (
                10.0 * math.log10(signal_power)
                + fading_db
                - txp._tx_attenuation_db
                - self.noise_dbfs
                - snr_db
            )
            link.path_loss_db = loss
            return loss

    def link_truth(self, tx: str, rx: str) -> LinkTruth:
        """Genie truth of the link ``tx -> rx`` with the current settings."""
        with self.lock:
            txp, rxp = self.port(tx), self.port(rx)
            link = self._link(tx, rx)
            if link is None:
                raise ValueError(f"no link {tx!r} -> {rx!r} (self-links must be set explicitly)")
            pl = self._path_loss_db(txp, rxp, link)
            gain = link.fading * 10.0 ** ((-pl - txp._tx_attenuation_db + rxp._rx_gain_db) / 20.0)
            cfo = txp._lo_hz * (1.0 + txp._ppm * 1e-6) - rxp._lo_hz * (1.0 + rxp._ppm * 1e-6)
            last = txp.transmission
            return LinkTruth(
                tx=tx,
                rx=rx,
                gain=complex(gain),
                fading=link.fading,
                path_loss_db=pl,
                phase_rad=float(np.mod(txp._lo_phase - rxp._lo_phase, 2.0 * np.pi)),
                cfo_hz=cfo,
                sro_ppm=(txp.actual_sample_rate_hz / rxp.actual_sample_rate_hz - 1.0) * 1e6,
                delay_s=self._delay_s(txp, rxp, link),
                start_s=None if last is None else last.start_s,
                latency_s=None if last is None else last.latency_s,
                coupled=abs(txp._lo_hz - rxp._lo_hz) <= rxp.rf_bandwidth_hz / 2.0,
            )

    # ----------------------------------------------------------------- rendering
    def capture_many(
        self, windows: list[tuple[str, float, int]], workers: int | None = None
    ) -> list[np.ndarray]:
        """Render several receiver windows at once, in parallel threads: e.g. the slots
        of different groups, which never overlap on the air. Each window is
        ``(receiver name, start_s, n)`` and gives what :meth:`MediumPort.capture` gives
        for it (complex64 ``(n,)``, the same values whatever ``workers`` is): rendering
        is pure and holds the medium's lock only to collect the transmissions on the
        air, and numpy releases the GIL for the per-sample work. ``workers``: threads
        (None: one per CPU, at most one per window)."""
        ports = [(self.port(name), finite_scalar("start_s", t), count("n", n, 0))
                 for name, t, n in windows]  # fmt: skip
        if workers is None:
            workers = os.cpu_count() or 1
        workers = max(1, min(int(workers), len(ports)))
        if workers == 1:
            return [self._render(port, t, n) for port, t, n in ports]
        started = time.perf_counter()  # wall time: the threads' times would add up to more
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="medium") as pool:
                return list(pool.map(lambda w: self._render_window(*w), ports))
        finally:
            _account(0, time.perf_counter() - started)

    def _on_air_between(self, start_s: float, end_s: float) -> list:
        """The kept transmissions that may be heard within ``[start_s, end_s)`` (a
        superset, in push order): found in a start-time index of :attr:`_on_air`, so a
        planned wave's 10,000 windows do not each visit 20,000 transmissions. Call with
        the lock held."""
        if self._air_index is None or self._air_index[0] != self._on_air_version:
            self._air_index = self._index_on_air()
        _, order, starts, longest, unbounded, margin = self._air_index
        lo = int(np.searchsorted(starts, start_s - margin - longest, "left"))
        hi = int(np.searchsorted(starts, end_s + margin, "right"))
        picked = np.sort(np.concatenate([order[lo:hi], unbounded]))
        return [self._on_air[i] for i in picked]

    def _index_on_air(self) -> tuple:
        """``(version, positions by start time, their start times, the longest finite
        duration, positions without a finite start or end, a bound on any link's
        delay)``. Later changes of a transmission's times either shrink it (a stop cuts its
        end, a TDD pulse fires an armed buffer, unbounded until then), so the index stays
        a superset, or bump the version (a feeder stall moves queued buffers later)."""
        starts = np.array([tr.start_s for _, tr in self._on_air], float)
        ends = np.array([tr.end_s for _, tr in self._on_air], float)
        bounded = np.isfinite(starts) & np.isfinite(ends)
        order = np.flatnonzero(bounded)
        order = order[np.argsort(starts[order], kind="stable")]
        longest = float(np.max(ends[order] - starts[order], initial=0.0))
        delays = [link.delay_s for link in self._links.values() if link.delay_s is not None]
        radius = max((float(np.linalg.norm(p._position)) for p in self._ports.values()
                      if p._position is not None), default=0.0)  # fmt: skip
        margin = max(max(delays, default=0.0), 2.0 * radius / speed_of_light) + 1e-6
        unbounded = np.flatnonzero(~bounded)
        return (self._on_air_version, order, starts[order], longest, unbounded, margin)

    def _on_air_add(self, port: MediumPort, tr: Transmission, horizon: float) -> None:
        """Index ``tr`` (just kept by ``port``); entries that ended before ``horizon``
        are pruned once the index doubled since the last prune (amortised O(1))."""
        self._on_air.append((port, tr))
        self._on_air_version += 1
        if len(self._on_air) > 2 * max(64, self._on_air_pruned):
            self._on_air = [(p, t) for p, t in self._on_air if t.end_s > horizon]
            self._on_air_pruned = len(self._on_air)

    def _ensure_links(self, rx: MediumPort) -> None:
        """Create the links to ``rx`` from every radio added since the last render, in
        the radios' order: the fading draws are those of a render visiting every radio."""
        done = self._linked.get(rx.name, 0)
        if done < len(self._ports):
            for txp in list(self._ports.values())[done:]:
                self._link(txp.name, rx.name, create=txp is not rx)
            self._linked[rx.name] = len(self._ports)

    def _jobs(self, rx: MediumPort, start_s: float, end_s: float) -> list:
        """(transmission, link truth) of every kept transmission heard by ``rx`` within
        ``[start_s, end_s)``, by transmitter in the order the radios were added, then in
        push order: the sum does not depend on which node process pushed first (float
        sums in another order differ in the last bits). Call with the lock held."""
        self._ensure_links(rx)
        jobs, truths = [], {}
        for txp, tr in self._on_air_between(start_s, end_s):
            link = self._links.get((txp.name, rx.name))
            if link is None:
                continue
            delay = self._delay_s(txp, rx, link)
            if not (tr.start_s + delay < end_s and tr.end_s + delay > start_s):
                continue
            if not any(t is tr for t in txp._history):
                continue  # pruned from the radio's history: gone
            truth = truths.get(txp.name)
            if truth is None:
                truth = truths[txp.name] = self.link_truth(txp.name, rx.name)
            if truth.coupled and truth.gain != 0:
                jobs.append((self._added[txp.name], tr, truth))
        jobs.sort(key=lambda job: job[0])  # stable: push order within a transmitter
        return [(tr, truth) for _, tr, truth in jobs]

    def _render(self, rx: MediumPort, start_s: float, n: int) -> np.ndarray:
        """The ADC output of ``rx`` for ``n`` samples from ``start_s`` (see module doc).
        Its cost follows the samples on the air in the window (transmissions overlapping
        it), not the number of radios on the medium."""
        started = time.perf_counter()
        try:
            return self._render_window(rx, start_s, n)
        finally:
            _account(0, time.perf_counter() - started)

    def _render_window(self, rx: MediumPort, start_s: float, n: int) -> np.ndarray:
        return self._render_job(rx, start_s, n).render()

    def _render_job(self, rx: MediumPort, start_s: float, n: int) -> RenderJob:
        with self.lock:
            fs_rx = rx.actual_sample_rate_hz
            heard = self._jobs(rx, start_s, start_s + n / fs_rx)
            noise_std = math.sqrt(self.noise_power(rx.name))
            return RenderJob(start_s, n, fs_rx, noise_std, rx._noise_key, heard)

    def render_jobs(self, windows: list[tuple[str, float, int]]) -> list[RenderJob]:
        """A :class:`RenderJob` per receiver window ``(receiver name, start_s, n)``: its
        :meth:`RenderJob.render` gives what :meth:`MediumPort.capture` gives for it, in
        any thread or process (windows of a planned round rendered elsewhere)."""
        return [
            self._render_job(self.port(name), finite_scalar("start_s", t), count("n", n, 0))
            for name, t, n in windows
        ]

    @staticmethod
    def _add_transmission(
        acc: np.ndarray, tr: Transmission, truth: LinkTruth, start_s: float, fs_rx: float
    ) -> None:
        """Add one transmission's contribution to ``acc`` (rx samples from ``start_s``)."""
        n = acc.size
        fs_tx = tr.sample_rate_hz
        ratio = fs_tx / fs_rx
        eps = ratio - 1.0
        # tx sample position of rx sample m: p0 + m * ratio
        p0 = (start_s - truth.delay_s - tr.start_s) * fs_tx
        interp = tr.interpolator
        half = interp.taps // 2
        # rx samples whose time lies in [start, end) of the transmission (+ ringing tails)
        t_lo = tr.start_s + truth.delay_s
        t_hi = tr.end_s + truth.delay_s
        if not tr.cyclic:
            t_lo -= half / fs_tx
            t_hi = min(t_hi, tr.start_s + truth.delay_s + (tr.samples.size + half) / fs_tx)
        m_lo = max(0, math.ceil((t_lo - start_s) * fs_rx - 1e-9))
        m_hi = n if math.isinf(t_hi) else min(n, math.ceil((t_hi - start_s) * fs_rx - 1e-9))
        if m_hi <= m_lo:
            return
        # runs where floor(p0 + m*ratio) - m = floor(p0 + m*eps) is constant
        values = np.empty(m_hi - m_lo, np.complex64)
        m = m_lo
        while m < m_hi:
            q = p0 + m * eps
            c = math.floor(q)
            if eps > 0:
                m_next = min(m_hi, max(m + 1, math.ceil((c + 1 - p0) / eps)))
            elif eps < 0:
                m_next = min(m_hi, max(m + 1, math.floor((c - p0) / eps) + 1))
            else:
                m_next = m_hi
            values[m - m_lo : m_next - m_lo] = interp.run(m + c, q - c, eps, m_next - m)
            m = m_next
        cycles0 = truth.cfo_hz * (start_s + m_lo / fs_rx)
        scale = truth.gain * np.exp(1j * truth.phase_rad)
        values *= _rotation(values.size, cycles0 % 1.0, truth.cfo_hz / fs_rx, scale)
        acc[m_lo:m_hi] += values


_MEDIA: dict[str, SharedMedium] = {}
_MEDIA_LOCK = threading.Lock()


def register_medium(name: str, medium: SharedMedium) -> SharedMedium:
    """Register ``medium`` under ``name`` (replacing any previous one) and return it."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"medium name must be a non-empty string without '/', got {name!r}")
    if not isinstance(medium, SharedMedium):
        raise TypeError(f"medium must be a SharedMedium, got {type(medium).__name__}")
    with _MEDIA_LOCK:
        _MEDIA[name] = medium
    return medium


def get_medium(name: str) -> SharedMedium:
    """The medium registered as ``name`` (KeyError listing the known names otherwise)."""
    with _MEDIA_LOCK:
        if name not in _MEDIA:
            raise KeyError(f"no medium registered as {name!r}; have {sorted(_MEDIA)}")
        return _MEDIA[name]


def unregister_medium(name: str) -> None:
    """Forget the medium registered as ``name`` (no-op if absent)."""
    with _MEDIA_LOCK:
        _MEDIA.pop(name, None)
