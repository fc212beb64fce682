"""The `Radio` interface every back-end implements, its configuration, its errors, and
the URI registry that opens a back-end by scheme.

Sample conventions (all back-ends):

* complex baseband, ``numpy.complex64`` arrays of shape ``(n_samples,)``;
* **full scale is 1.0**: transmit samples must satisfy ``|Re|, |Im| <= 1`` (the DAC
  range; back-ends raise :class:`TransmitClippingError` instead of clipping silently);
  received samples are ADC codes divided by the ADC full scale, so ``|Re|, |Im| <= 1``.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the radio interface (re-exported by the :mod:`radio` package)
__all__ = [
    "Radio",
    "RadioConfig",
    "RadioConfigError",
    "RadioDisconnected",
    "RadioError",
    "RadioTimeout",
    "StreamTooLate",
    "TIME_BASES",
    "TimeBaseUnsupported",
    "TransmitClippingError",
    "open_radio",
    "register_backend",
    "stream_lead_of",
]


class RadioError(RuntimeError):
    """Base class of all radio errors."""


class RadioConfigError(RadioError, ValueError):
    """A configuration value is out of the device's range or inconsistent."""


class RadioTimeout(RadioError, TimeoutError):
    """A transmit or receive did not complete in time."""


class RadioDisconnected(RadioError, ConnectionError):
    """The connection to the radio was lost; :meth:`Radio.reconnect` may restore it."""


class TransmitClippingError(RadioError, ValueError):
    """Transmit samples exceed the DAC full scale (|I| or |Q| > 1)."""


class TimeBaseUnsupported(RadioConfigError):
    """The radio cannot run the requested time base (no TDD engine, a stream it cannot
    feed, a back-end without streaming); the message names the cause."""


class StreamTooLate(RadioError, ValueError):
    """Content was to be placed at a TX stream index already queued or on the air."""


#: the closed loop's time bases (see radio.time_base): continuous sample-indexed
#: streaming, TDD-triggered buffers on a shared sync pulse, or the cyclic loop on an
#: ideal (constant-latency) medium as a reference
TIME_BASES = ("stream", "tdd", "ideal")


@dataclass(frozen=True)
class RadioConfig:
    """RF and buffer settings shared by all back-ends (units in the names).

    Attributes:
        center_hz: LO frequency for both TX and RX, Hz.
        sample_rate_hz: baseband sample rate, samples/s.
        rf_bandwidth_hz: analog filter bandwidth, Hz (None: equal to the sample rate).
        tx_attenuation_db: TX attenuation, dB, 0 (full power) .. 89.75 in 0.25 dB steps.
        rx_gain_db: RX gain, dB (on a Pluto in manual mode -1 .. 73 below 1.3 GHz, -3 .. 71
            up to 4 GHz: :mod:`radio.pluto_limits`).
        rx_gain_mode: "manual", "slow_attack" or "fast_attack".
        rx_buffer_size: samples per receive buffer.
    """

    center_hz: float = 915e6
    sample_rate_hz: float = 1e6
    rf_bandwidth_hz: float | None = None
    tx_attenuation_db: float = 10.0
    rx_gain_db: float = 30.0
    rx_gain_mode: str = "manual"
    rx_buffer_size: int = 16384

    GAIN_MODES = ("manual", "slow_attack", "fast_attack")

    def __post_init__(self) -> None:
        for name in ("center_hz", "sample_rate_hz", "tx_attenuation_db", "rx_gain_db"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise RadioConfigError(f"{name} must be finite, got {value!r}")
        if self.center_hz <= 0 or self.sample_rate_hz <= 0:
            raise RadioConfigError("center_hz and sample_rate_hz must be positive")
        if self.rf_bandwidth_hz is not None and not self.rf_bandwidth_hz > 0:
            raise RadioConfigError(f"rf_bandwidth_hz must be positive, got {self.rf_bandwidth_hz}")
        if self.tx_attenuation_db < 0:
            raise RadioConfigError(
                f"tx_attenuation_db must be >= 0 (attenuation), got {self.tx_attenuation_db}"
            )
        if self.rx_gain_mode not in self.GAIN_MODES:
            raise RadioConfigError(
                f"rx_gain_mode must be one of {self.GAIN_MODES}, got {self.rx_gain_mode!r}"
            )
        if self.rx_buffer_size <= 0:
            raise RadioConfigError(f"rx_buffer_size must be positive, got {self.rx_buffer_size}")

    @property
    def bandwidth_hz(self) -> float:
        """The effective RF bandwidth (defaults to the sample rate)."""
        return self.sample_rate_hz if self.rf_bandwidth_hz is None else self.rf_bandwidth_hz

    def replace(self, **changes: Any) -> RadioConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


class Radio(ABC):
    """A half- or full-duplex SDR: configure, transmit (cyclic or once), receive, close.

    Implementations are context managers and must be safe to :meth:`close` twice.
    """

    uri: str

    @property
    @abstractmethod
    def config(self) -> RadioConfig:
        """The configuration currently applied to the device."""

    @abstractmethod
    def configure(self, config: RadioConfig) -> None:
        """Apply ``config``; raises :class:`RadioConfigError` for out-of-range values."""

    @abstractmethod
    def transmit(self, samples: np.ndarray, *, cyclic: bool = False) -> None:
        """Start transmitting ``samples`` (complex, shape ``(n,)``, full scale 1.0).

        ``cyclic=True`` repeats the buffer until :meth:`stop_transmit`; a new cyclic
        buffer replaces the old one. Raises :class:`TransmitClippingError` when
        ``|Re|`` or ``|Im|`` exceeds 1.
        """

    @abstractmethod
    def stop_transmit(self) -> None:
        """Stop any transmission (no-op when idle)."""

    @abstractmethod
    def receive(self, n_samples: int) -> np.ndarray:
        """Return the next ``n_samples`` fresh samples (complex64, full scale 1.0).

        Stale samples buffered before the call (kernel buffers filled while nobody was
        reading) are discarded, so the result starts after the call was made.
        """

    @abstractmethod
    def close(self) -> None:
        """Stop transmitting and release the device."""

    def reconnect(self) -> None:
        """Re-open the device after :class:`RadioDisconnected` and re-apply the config."""
        raise RadioDisconnected(f"{type(self).__name__} cannot reconnect")

    # ------------------------------------------------------------ time bases
    # Optional capabilities of the ``stream`` and ``tdd`` time bases; a back-end without
    # one raises TimeBaseUnsupported naming the cause.
    def _unsupported(self, what: str) -> TimeBaseUnsupported:
        return TimeBaseUnsupported(f"{type(self).__name__} ({self.uri}) does not support {what}")

    #: samples a TX stream's feeder keeps queued ahead of the DAC (placements must be
    #: at least that far ahead of what plays now)
    stream_lead: int = 4096

    def start_stream(self) -> None:
        """Start a continuous, back-to-back TX stream (zeros until content is placed)."""
        raise self._unsupported("continuous TX streams (stream time base)")

    def earliest_index(self) -> int:
        """First TX stream index content can still be placed at (end of the queue)."""
        raise self._unsupported("continuous TX streams (stream time base)")

    def place(self, samples: np.ndarray, index: int) -> None:
        """Place ``samples`` (complex ``(n,)``, full scale 1.0) at TX stream ``index``."""
        raise self._unsupported("continuous TX streams (stream time base)")

    def read_stream(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` of the RX stream, contiguous with the previous read
        (no flush), complex64 ``(n_samples,)``."""
        raise self._unsupported("contiguous RX streaming")

    def discard_stream(self, n_samples: int) -> None:
        """Read and drop the next ``n_samples`` of the RX stream."""
        self.read_stream(n_samples)

    #: the radio runs on the wall clock: its RX stream fills (and overflows) while the
    #: host computes, and a placement must reach its TX queue in time (real hardware;
    #: a virtual Pluto or medium in real-time mode). False: the air waits for the host.
    realtime: bool = False

    def rx_stream_head(self) -> int | None:
        """RX stream samples the host holds so far, read or not (a real-time radio drains
        its RX stream in the background, so this follows the air); None when the
        stream only moves on :meth:`read_stream` (the air waits for the reader)."""
        return None

    def status(self) -> dict[str, bool]:
        """Sticky status flags ``{"tx_underflow": ..., "rx_overflow": ...}`` (the DAC and
        ADC cores' status registers); reading does not clear them."""
        raise self._unsupported("status flags")

    def clear_status(self) -> None:
        """Clear the sticky status flags."""
        raise self._unsupported("status flags")

    def arm_transmit(self, samples: np.ndarray) -> None:
        """Arm a one-shot TX buffer started by the next TDD sync pulse (tdd time base)."""
        raise self._unsupported("the TDD engine (tdd time base)")

    def arm_receive(self, n_samples: int) -> np.ndarray:
        """Arm an RX capture started by the next TDD sync pulse and return it."""
        raise self._unsupported("the TDD engine (tdd time base)")

    def transmit_at(self, samples: np.ndarray, push_s: float, end_s: float | None = None) -> None:
        """Simulated media only (a planned round of the ``ideal`` time base): play
        ``samples`` as if pushed at medium time ``push_s`` (seconds), cyclically until
        ``end_s`` or once when None (:meth:`phy.medium.MediumPort.transmit_at`). A real
        radio has no start time to give a buffer, so it refuses."""
        raise self._unsupported("transmissions at a set time (a simulated medium's planned rounds)")

    def check_time_base(self, time_base: str) -> None:
        """Raise :class:`TimeBaseUnsupported` (naming the cause) if this radio cannot run
        ``time_base`` (one of :data:`TIME_BASES`)."""
        if time_base not in TIME_BASES:
            raise RadioConfigError(f"time_base must be one of {TIME_BASES}, got {time_base!r}")

    def __enter__(self) -> Radio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def check_transmit_samples(samples: np.ndarray) -> np.ndarray:
        """Validate transmit samples and return them as a 1-D complex64 array."""
        array = np.asarray(samples)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"transmit samples must be a non-empty 1-D array, got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError("transmit samples contain NaN or inf")
        peak = max(float(np.max(np.abs(array.real))), float(np.max(np.abs(array.imag))))
        if peak > 1.0 + 1e-6:
            raise TransmitClippingError(
                f"transmit samples peak at {peak:.3f} of DAC full scale (limit 1.0); "
                "scale them down or raise tx_attenuation_db"
            )
        return array.astype(np.complex64, copy=False)


#: URI scheme -> "module:ClassName"; the class is constructed as ``cls(uri, **kwargs)``.
_BACKENDS: dict[str, str] = {
    "sim": "radio.sim:SimRadio",
    "simnet": "radio.sim_net:NetSimRadio",
    "ip": "radio.pluto:PlutoRadio",
    "usb": "radio.pluto:PlutoRadio",
    "serial": "radio.pluto:PlutoRadio",
}


def stream_lead_of(uri: str) -> int:
    """:attr:`Radio.stream_lead` of the back-end that serves ``uri`` (its default
    configuration), without opening the radio: what a receiver must allow for users
    whose radios live in other processes."""
    return int(_backend_class(uri).stream_lead)


def register_backend(scheme: str, target: str) -> None:
    """Register ``target`` ("module:ClassName") as the back-end for ``scheme:`` URIs."""
    if ":" not in target:
        raise ValueError(f"target must look like 'module:ClassName', got {target!r}")
    _BACKENDS[scheme] = target


def open_radio(uri: str, **kwargs: Any) -> Radio:
    """Open the radio named by ``uri`` with the back-end registered for its scheme.

    Examples: ``sim://lab/user0``, ``simnet://127.0.0.1:5555/user0``,
    ``ip:127.0.0.1:30431``, ``usb:1.4.5``, ``serial:104473dc59910004f7ff18001e5ea5e4e1``.
    """
    return _backend_class(uri)(uri, **kwargs)


def _backend_class(uri: str) -> type[Radio]:
    """The :class:`Radio` class registered for ``uri``'s scheme (RadioConfigError if none)."""
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme not in _BACKENDS:
        raise RadioConfigError(
            f"unknown radio URI {uri!r}: scheme must be one of {sorted(_BACKENDS)}"
        )
    module_name, class_name = _BACKENDS[scheme].split(":")
    return getattr(importlib.import_module(module_name), class_name)
