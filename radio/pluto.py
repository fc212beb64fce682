"""``PlutoRadio``: the :class:`radio.base.Radio` interface on an ADALM-PLUTO via pyadi-iio.

Opens ``ip:HOST[:PORT]``, ``usb:BUS.DEV.IF`` or ``serial:SERIAL`` (resolved through
libiio's scan, plus optional extra URIs probed for their ``hw_serial``). Works the same
on a real Pluto and on a virtual one (:mod:`hardware.virtual_pluto`).

Sample scaling (Pluto convention): the RX ADC delivers 12-bit codes in 16-bit words
(``le:S12/16>>0``), so received samples are ``code / 2048``. TX words are 16 bits of
which the AD9361's 12-bit DAC uses the 12 MSBs; full scale 1.0 maps to ``32767``
(ADI's examples scale by ``2**14``, i.e. half scale, -6 dBFS). pyadi-iio neither scales
nor clips, so values beyond full scale are refused with
:class:`~radio.base.TransmitClippingError` before anything is sent.

libiio errors become radio errors: ``ETIMEDOUT``/``EAGAIN`` -> :class:`RadioTimeout`;
lost connections (``EPIPE``, ``ECONNRESET``, ``ECONNREFUSED``, ``ENOTCONN``, ``EIO``,
``EBADF``) -> :class:`RadioDisconnected` (then :meth:`PlutoRadio.reconnect`);
``EINVAL``/``ERANGE`` on a write -> :class:`RadioConfigError`.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from radio.base import (
    Radio,
    RadioConfig,
    RadioConfigError,
    RadioDisconnected,
    RadioError,
    RadioTimeout,
    StreamTooLate,
    TimeBaseUnsupported,
)

#: the first Pluto firmware with the TDD engine (axi_tdd, pyadi-iio adi.tddn)
FIRST_TDD_FIRMWARE = (0, 39)
#: continuous streaming a host can feed over USB 2.0 (about 4-7 MS/s sustained)
MAX_STREAM_RATE_HZ = 4e6
#: status register of the ADC and DAC cores (bit 2: RX overflow, bit 0: TX underflow)
STATUS_REG = 0x80000088
RX_OVERFLOW_BIT, TX_UNDERFLOW_BIT = 0x4, 0x1
#: TX stream feeder: buffers of this many samples (the kernel queues a few); on the wall
#: clock four times more, so the queue (4 of them: 65 ms at 1 MS/s) rides out the host's
#: scheduling hiccups, and the RX kernel queue is deeper for the drain likewise
STREAM_BLOCK, REALTIME_STREAM_BLOCK, REALTIME_RX_KERNEL_BUFFERS = 4096, 16384, 16
#: the TDD engine's IIO device (firmware v0.39+, pyadi-iio ``adi.tddn``)
TDD_DEVICE = "iio-axi-tdd-0"
#: RX kernel buffers a PlutoRadio asks for by default
KERNEL_BUFFERS = 4
#: context attribute of a virtual Pluto telling its medium's clock ("realtime" or
#: "deterministic"); a real Pluto has none and runs on the wall clock
CLOCK_ATTR = "airmix_clock"
#: a real-time RX stream drain holds at most this many unread samples (16 s at 1 MS/s);
#: older ones are dropped as an overflow of the host's own queue
DRAIN_MAX_SAMPLES = 1 << 24


def firmware_at_least(version: str, minimum: tuple[int, int] = FIRST_TDD_FIRMWARE) -> bool:
    """Whether a ``fw_version`` string such as ``v0.39`` or ``v0.38-dirty`` is at least
    ``minimum``; False for a string that names no version."""
    text = str(version).strip().lstrip("vV").split("-")[0]
    try:
        parts = tuple(int(p) for p in text.split(".")[:2])
    except ValueError:
        return False
    return len(parts) == 2 and parts >= minimum


RX_FULL_SCALE = 2048.0
TX_FULL_SCALE = 32767.0
DEFAULT_TIMEOUT_MS = 5000
_TIMEOUT_ERRNOS = {errno.ETIMEDOUT, errno.EAGAIN}
_LOST_ERRNOS = {
    errno.EPIPE,
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ENOTCONN,
    errno.EIO,
    errno.EBADF,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
}


def _map_error(exc: BaseException, what: str, uri: str) -> RadioError:
    err = getattr(exc, "errno", None)
    if err is None and exc.args and isinstance(exc.args[0], int):
        err = exc.args[0]
    if err is not None and abs(err) in _TIMEOUT_ERRNOS:
        return RadioTimeout(f"{uri}: {what} timed out ({exc})")
    if err is not None and abs(err) in _LOST_ERRNOS:
        return RadioDisconnected(f"{uri}: connection lost during {what} ({exc})")
    if err is not None and abs(err) in (errno.EINVAL, errno.ERANGE):
        return RadioConfigError(f"{uri}: the device rejected {what} ({exc})")
    return RadioError(f"{uri}: {what} failed ({exc!r})")


@contextlib.contextmanager
def _libiio(what: str, uri: str) -> Iterator[None]:
    """Translate exceptions raised by pyadi-iio / libiio inside the block."""
    try:
        yield
    except RadioError:
        raise
    except (OSError, Exception) as exc:  # pyadi-iio raises bare Exception for some failures
        raise _map_error(exc, what, uri) from exc


def scan_contexts() -> dict[str, str]:
    """libiio's scan (USB and, where available, network): ``{uri: description}``."""
    import iio

    try:
        return dict(iio.scan_contexts())
    except OSError:
        return {}


def resolve_serial(serial: str, extra_uris: Sequence[str] = ()) -> str:
    """The URI of the Pluto whose serial is ``serial``.

    Looks in libiio's scan descriptions (``serial=...``) first, then opens each of
    ``extra_uris`` and compares its ``hw_serial`` context attribute. Raises
    :class:`RadioDisconnected` when none matches.
    """
    import iio

    serial = serial.strip()
    if not serial:
        raise RadioConfigError("empty serial number")
    for uri, description in scan_contexts().items():
        if f"serial={serial}" in description or description.endswith(serial):
            return uri
    for uri in extra_uris:
        try:
            ctx = iio.Context(uri)
        except OSError:
            continue
        if ctx.attrs.get("hw_serial") == serial:
            return uri
    raise RadioDisconnected(f"no Pluto with serial {serial} found (scan + {list(extra_uris)})")


class PlutoRadio(Radio):
    """An ADALM-PLUTO through pyadi-iio.

    On the wall clock (:attr:`realtime`: real hardware, or a virtual Pluto in real-time
    mode) the RX stream of the ``stream`` time base is drained in the background from
    the first :meth:`read_stream` on, so the kernel's few buffers never overflow while
    the host computes (a training step, a round trip to the nodes); :meth:`read_stream`
    takes from what the drain holds and :meth:`rx_stream_head` says how far it got.

    Args:
        uri: ``ip:...``, ``usb:...`` or ``serial:<hw_serial>``.
        config: applied at open (default :class:`RadioConfig()`).
        timeout_ms: libiio I/O timeout, ms.
        kernel_buffers: RX kernel buffers (the stale data a late reader finds).
        search_uris: extra URIs probed when resolving ``serial:`` (e.g. virtual Plutos).
    """

    #: the default feeder's lead on the wall clock (the larger: a receiver elsewhere
    #: cannot tell the radio's clock from its URI)
    stream_lead = (KERNEL_BUFFERS + 2) * REALTIME_STREAM_BLOCK

    def __init__(
        self,
        uri: str,
        *,
        config: RadioConfig | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        kernel_buffers: int = KERNEL_BUFFERS,
        search_uris: Sequence[str] = (),
    ) -> None:
        if not isinstance(uri, str) or uri.split(":", 1)[0] not in ("ip", "usb", "serial"):
            raise RadioConfigError(f"Pluto URI must start with ip:, usb: or serial:, got {uri!r}")
        if timeout_ms <= 0 or kernel_buffers < 1:
            raise RadioConfigError("timeout_ms must be > 0 and kernel_buffers >= 1")
        self.uri = uri
        self.timeout_ms = int(timeout_ms)
        self.kernel_buffers = int(kernel_buffers)
        self.search_uris = tuple(search_uris)
        self._sdr = None
        self._config: RadioConfig | None = None
        self._open()
        self.configure(config or RadioConfig())

    # -- connection ------------------------------------------------------------------
    @property
    def device_uri(self) -> str:
        """The libiio URI actually opened (``serial:`` resolved)."""
        if self.uri.startswith("serial:"):
            return resolve_serial(self.uri[len("serial:") :], self.search_uris)
        return self.uri

    def _open(self) -> None:
        import adi

        target = self.device_uri
        try:
            sdr = adi.Pluto(target)
        except Exception as exc:  # pyadi-iio wraps every failure in Exception("No device found")
            raise RadioDisconnected(f"cannot open Pluto at {target}: {exc}") from exc
        self.realtime = sdr.ctx.attrs.get(CLOCK_ATTR, "realtime") != "deterministic"
        self.stream_block = REALTIME_STREAM_BLOCK if self.realtime else STREAM_BLOCK
        # the feeder runs ahead by the kernel's TX queue (libiio's default 4 buffers),
        # the block it builds and one spare
        self.stream_lead = (KERNEL_BUFFERS + 2) * self.stream_block
        rx_buffers = self.kernel_buffers
        if self.realtime:
            rx_buffers = max(rx_buffers, REALTIME_RX_KERNEL_BUFFERS)
        with _libiio("setting up the context", self.uri):
            sdr.ctx.set_timeout(self.timeout_ms)
            try:
                sdr._rxadc.set_kernel_buffers_count(rx_buffers)
            except OSError as exc:  # EBUSY: another client is streaming; keep its count
                if exc.errno != errno.EBUSY:
                    raise
        self._sdr = sdr

    @property
    def sdr(self):  # noqa: ANN201 - adi.Pluto, imported lazily
        """The underlying ``adi.Pluto`` (RadioDisconnected after close)."""
        if self._sdr is None:
            raise RadioDisconnected(f"{self.uri} is closed")
        return self._sdr

    @property
    def serial(self) -> str:
        """The radio's ``hw_serial`` context attribute."""
        return str(self.sdr.ctx.attrs.get("hw_serial", ""))

    # -- configuration ----------------------------------------------------------------
    @property
    def config(self) -> RadioConfig:
        if self._config is None:
            raise RadioDisconnected(f"{self.uri} is not configured")
        return self._config

    def configure(self, config: RadioConfig) -> None:
        """Write the settings that differ from the current ones; read the device back.

        Raises :class:`RadioConfigError` when the device rejects a value (out of range
        for this Pluto and firmware); the settings written before stay applied.
        """
        if not isinstance(config, RadioConfig):
            raise RadioConfigError(f"config must be a RadioConfig, got {type(config).__name__}")
        sdr = self.sdr
        old = self._config
        first = old is None

        def changed(name: str) -> bool:
            return first or getattr(old, name) != getattr(config, name)

        with _libiio("configure", self.uri):
            if changed("sample_rate_hz"):
                sdr.sample_rate = int(config.sample_rate_hz)
            if changed("center_hz"):
                sdr.rx_lo = int(config.center_hz)
                sdr.tx_lo = int(config.center_hz)
            if first or changed("rf_bandwidth_hz") or changed("sample_rate_hz"):
                sdr.rx_rf_bandwidth = int(config.bandwidth_hz)
                sdr.tx_rf_bandwidth = int(config.bandwidth_hz)
            if changed("rx_gain_mode"):
                sdr.gain_control_mode_chan0 = config.rx_gain_mode
            if config.rx_gain_mode == "manual" and (
                changed("rx_gain_db") or changed("rx_gain_mode")
            ):
                sdr.rx_hardwaregain_chan0 = float(config.rx_gain_db)
            if changed("tx_attenuation_db"):
                sdr.tx_hardwaregain_chan0 = -float(config.tx_attenuation_db)
            if changed("rx_buffer_size"):
                self._stop_drain()
                sdr.rx_destroy_buffer()
                sdr.rx_buffer_size = int(config.rx_buffer_size)
            # read back what the device applied (gain steps, rounding)
            applied = config.replace(
                center_hz=float(sdr.rx_lo),
                sample_rate_hz=float(sdr.sample_rate),
                tx_attenuation_db=max(0.0, -float(sdr.tx_hardwaregain_chan0)),
            )
            if config.rx_gain_mode == "manual":
                applied = applied.replace(rx_gain_db=float(sdr.rx_hardwaregain_chan0))
        self._config = applied

    # -- streaming --------------------------------------------------------------------
    def transmit(self, samples: np.ndarray, *, cyclic: bool = False) -> None:
        """Scale full-scale-1.0 samples to DAC words and push them (cyclic or once).

        A new call replaces the current buffer. Raises TransmitClippingError first when
        ``|Re|`` or ``|Im|`` exceeds 1.
        """
        x = self.check_transmit_samples(samples)
        words = np.rint(x.real * TX_FULL_SCALE) + 1j * np.rint(x.imag * TX_FULL_SCALE)
        sdr = self.sdr
        with _libiio("transmit", self.uri):
            sdr.tx_destroy_buffer()
            sdr.tx_cyclic_buffer = bool(cyclic)
            sdr.tx(words)

    def stop_transmit(self) -> None:
        """Destroy the TX buffer (stops a cyclic transmission or the TX stream)."""
        feeder = getattr(self, "_feeder", None)
        if feeder is not None:
            feeder.stop()
            self._feeder = None
        if self._sdr is None:
            return
        with _libiio("stop_transmit", self.uri):
            self._sdr.tx_destroy_buffer()

    def receive(self, n_samples: int) -> np.ndarray:
        """``n_samples`` fresh samples (complex64, full scale 1.0).

        The RX buffer is re-created first, so no stale kernel buffer reaches the caller;
        whole buffers of ``config.rx_buffer_size`` are read and the result trimmed.
        """
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples <= 0:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        sdr = self.sdr
        parts: list[np.ndarray] = []
        have = 0
        self._stop_drain()
        with _libiio("receive", self.uri):
            sdr.rx_destroy_buffer()  # flush: a new buffer starts a fresh stream
            while have < n_samples:
                block = np.asarray(sdr.rx())
                parts.append(block)
                have += block.size
        x = np.concatenate(parts)[: int(n_samples)] / RX_FULL_SCALE
        return x.astype(np.complex64)

    # -- time bases (radio.time_base) --------------------------------------------------
    @property
    def firmware(self) -> str:
        """The ``fw_version`` context attribute (e.g. ``v0.39``)."""
        return str(self.sdr.ctx.attrs.get("fw_version", "unknown"))

    def check_time_base(self, time_base: str) -> None:
        """``tdd`` needs firmware v0.39+ with the TDD engine; ``stream`` a sample rate
        the host link can feed. Raises TimeBaseUnsupported naming the cause."""
        super().check_time_base(time_base)
        if time_base == "tdd":
            if not firmware_at_least(self.firmware):
                raise TimeBaseUnsupported(
                    f"{self.uri}: firmware {self.firmware} has no TDD engine; the tdd time "
                    "base needs Pluto firmware v0.39 or later (update it, or use the stream "
                    "time base)"
                )
            if self.sdr.ctx.find_device(TDD_DEVICE) is None:
                raise TimeBaseUnsupported(
                    f"{self.uri}: firmware {self.firmware} but no TDD engine device "
                    "(iio-axi-tdd-0) in the context"
                )
        if time_base == "stream" and self.config.sample_rate_hz > MAX_STREAM_RATE_HZ:
            raise TimeBaseUnsupported(
                f"{self.uri}: a continuous stream at {self.config.sample_rate_hz:g} S/s cannot "
                f"be fed (USB 2.0 sustains about {MAX_STREAM_RATE_HZ:g} S/s); lower the rate"
            )

    def start_stream(self) -> None:
        """Start the TX stream: a feeder thread pushes non-cyclic buffers of
        ``stream_block`` samples back to back (zeros unless content was placed); each
        push blocks while the kernel queue is full, which paces it to the DAC."""
        self.release_tdd()
        self.stop_transmit()
        with _libiio("start_stream", self.uri):
            self.sdr.tx_cyclic_buffer = False
        self._feeder = _Feeder(self)
        self._feeder.start()

    def earliest_index(self) -> int:
        """First TX stream index still free (after the block the feeder builds next)."""
        return self._require_feeder().earliest_index()

    def place(self, samples: np.ndarray, index: int) -> None:
        """Place ``samples`` at TX stream ``index`` (StreamTooLate if already pushed)."""
        x = self.check_transmit_samples(samples)
        self._require_feeder().place(x, int(index))

    def _require_feeder(self) -> _Feeder:
        feeder = getattr(self, "_feeder", None)
        if feeder is None or not feeder.running:
            raise RadioError(f"{self.uri} has no TX stream (start_stream)")
        if feeder.error is not None:
            raise feeder.error
        return feeder

    def read_stream(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` of the RX stream, contiguous with the previous read
        (on the wall clock: from the background drain, started by the first call)."""
        if not getattr(self, "_rx_streaming", False):  # the first read of a stream
            self.release_tdd()
            self._rx_streaming = True
        if self.realtime:
            return self._drain().take(int(n_samples))
        sdr = self.sdr
        left = getattr(self, "_rx_left", np.zeros(0, np.complex64))
        parts, have = [left], left.size
        with _libiio("read_stream", self.uri):
            while have < n_samples:
                block = _stream_block(sdr)
                parts.append(block)
                have += block.size
        x = np.concatenate(parts)
        self._rx_left = x[int(n_samples) :]
        return x[: int(n_samples)]

    def discard_stream(self, n_samples: int) -> None:
        """Drop the next ``n_samples`` of the RX stream."""
        if self.realtime:
            self._drain().take(int(n_samples), keep=False)
        else:
            self.read_stream(n_samples)

    def rx_stream_head(self) -> int | None:
        """On the wall clock, the RX stream index on the air now, estimated from when
        the drain's buffers arrived (:meth:`_Drain.air_index`); else None."""
        drain = getattr(self, "_rx_drain", None)
        return drain.air_index() if drain is not None else None

    def _drain(self) -> _Drain:
        drain = getattr(self, "_rx_drain", None)
        if drain is None:
            drain = self._rx_drain = _Drain(self)
        if drain.error is not None:
            raise drain.error
        return drain

    def _stop_drain(self) -> None:
        """Stop the background drain (the RX buffer is destroyed or re-armed next)."""
        drain, self._rx_drain = getattr(self, "_rx_drain", None), None
        self._rx_streaming = False  # the RX buffer is destroyed or re-armed next
        if drain is not None:
            drain.stop()

    def status(self) -> dict[str, bool]:
        """The sticky flags of the cores' status registers (``direct_reg_access``)."""
        sdr = self.sdr
        with _libiio("status", self.uri):
            dac = int(sdr._txdac.reg_read(STATUS_REG))
            adc = int(sdr._rxadc.reg_read(STATUS_REG))
        drain = getattr(self, "_rx_drain", None)
        return {
            "tx_underflow": bool(dac & TX_UNDERFLOW_BIT),
            "rx_overflow": bool(adc & RX_OVERFLOW_BIT) or (drain is not None and drain.dropped),
        }

    def clear_status(self) -> None:
        """Clear both sticky flags (write 1 to their bits)."""
        sdr = self.sdr
        with _libiio("clear_status", self.uri):
            sdr._txdac.reg_write(STATUS_REG, TX_UNDERFLOW_BIT)
            sdr._rxadc.reg_write(STATUS_REG, RX_OVERFLOW_BIT)
        drain = getattr(self, "_rx_drain", None)
        if drain is not None:
            drain.dropped = False

    def release_tdd(self) -> None:
        """Disable the TDD engine if it is on (an earlier ``tdd`` run leaves it armed, and
        it gates the DMAs a stream needs); a radio without the engine: nothing to do."""
        device = self.sdr.ctx.find_device(TDD_DEVICE)
        if device is None:
            return
        with _libiio("release_tdd", self.uri):
            if device.attrs["enable"].value.strip() != "0":
                device.attrs["enable"].value = "0"
        self._tddn = self._tdd_frame_ms = None  # the next tdd use sets it up anew

    def _tdd(self, frame_samples: int):  # noqa: ANN202 - adi.tddn, imported lazily
        """The TDD engine (``adi.tddn``) set up as ``pluto_tddn.py`` does: channel 1 gates
        the RX DMA, channel 2 the TX DMA, external sync, one frame per pulse."""
        import adi

        self.check_time_base("tdd")
        tdd = getattr(self, "_tddn", None)
        if tdd is None:
            adi.tddn.channel = []  # pyadi-iio keeps channels in a class attribute
            tdd = self._tddn = adi.tddn(self.device_uri)
        frame_ms = frame_samples * 1e3 / self.config.sample_rate_hz
        with _libiio("tdd", self.uri):
            if not tdd.enable or getattr(self, "_tdd_frame_ms", None) != frame_ms:
                tdd.enable = False
                tdd.startup_delay_ms = 0
                tdd.frame_length_ms = frame_ms
                tdd.burst_count = 1
                for k in (1, 2):
                    tdd.channel[k].on_raw = 0
                    tdd.channel[k].off_raw = 10
                    tdd.channel[k].polarity = 0
                    tdd.channel[k].enable = 1
                tdd.sync_external = True
                tdd.enable = True
                self._tdd_frame_ms = frame_ms
        return tdd

    def arm_transmit(self, samples: np.ndarray) -> None:
        """Arm a TX buffer on the TDD engine: it starts on the next sync pulse, gated to
        one frame (``pluto_tddn.py``: the TX buffer is cyclic, the engine gates it)."""
        x = self.check_transmit_samples(samples)
        self._tdd(max(x.size, self.config.rx_buffer_size))
        words = np.rint(x.real * TX_FULL_SCALE) + 1j * np.rint(x.imag * TX_FULL_SCALE)
        sdr = self.sdr
        with _libiio("arm_transmit", self.uri):
            sdr.tx_destroy_buffer()
            sdr.tx_cyclic_buffer = True
            sdr.tx(words)

    def arm_receive(self, n_samples: int) -> np.ndarray:
        """The first ``n_samples`` (<= ``config.rx_buffer_size``) of an RX buffer started
        by the next sync pulse."""
        size = self.config.rx_buffer_size
        if int(n_samples) > size:
            raise RadioConfigError(
                f"{self.uri}: a TDD capture of {n_samples} samples exceeds rx_buffer_size {size}"
            )
        self._tdd(size)
        sdr = self.sdr
        self._stop_drain()
        with _libiio("arm_receive", self.uri):
            sdr.rx_destroy_buffer()  # the next buffer is armed anew on the engine
            x = np.asarray(sdr.rx())
        return (x[: int(n_samples)] / RX_FULL_SCALE).astype(np.complex64)

    # -- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        """Stop transmitting, destroy buffers and drop the context (safe twice)."""
        feeder = getattr(self, "_feeder", None)
        if feeder is not None:
            feeder.stop()
        self._stop_drain()
        sdr, self._sdr = self._sdr, None
        if sdr is None:
            return
        with contextlib.suppress(Exception):
            sdr.tx_destroy_buffer()
        with contextlib.suppress(Exception):
            sdr.rx_destroy_buffer()
        del sdr

    def reconnect(self) -> None:
        """Re-open the radio (after RadioDisconnected) and re-apply the configuration."""
        config = self._config or RadioConfig()
        self.close()
        self._config = None
        self._open()
        self.configure(config)


def _stream_block(sdr: object) -> np.ndarray:
    """The next RX buffer of ``sdr`` (``adi.Pluto``) as complex64 at full scale 1.0."""
    return (np.asarray(sdr.rx()) / RX_FULL_SCALE).astype(np.complex64)


class _Feeder:
    """The host side of a continuous TX stream on a Pluto: a thread that pushes
    non-cyclic buffers of ``stream_block`` samples back to back, each holding the placed
    content that falls in it (zeros elsewhere). A push blocks while the kernel's queue
    is full, so the thread runs a few buffers ahead of the DAC."""

    def __init__(self, radio: PlutoRadio) -> None:
        self.radio = radio
        self.block = radio.stream_block
        self.pushed = 0  # blocks pushed so far
        self.segments: list[tuple[int, np.ndarray]] = []
        self.lock = threading.Lock()
        self.running = True
        self.error: RadioError | None = None
        self.thread = threading.Thread(target=self._run, name=f"feeder-{radio.uri}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def earliest_index(self) -> int:
        with self.lock:
            return (self.pushed + 1) * self.block

    def place(self, x: np.ndarray, index: int) -> None:
        with self.lock:
            earliest = (self.pushed + 1) * self.block
            if index < earliest:
                raise StreamTooLate(
                    f"{self.radio.uri}: stream index {index} is already pushed (earliest "
                    f"placeable index {earliest})"
                )
            self.segments.append((index, x))

    def _next_block(self) -> np.ndarray:
        with self.lock:
            lo = (self.pushed + 1) * self.block - self.block
            hi = lo + self.block
            out = np.zeros(self.block, np.complex64)
            keep = []
            for start, x in self.segments:
                a, b = max(lo, start), min(hi, start + x.size)
                if b > a:
                    out[a - lo : b - lo] = x[a - start : b - start]
                if start + x.size > hi:
                    keep.append((start, x))
            self.segments = keep
        return out

    def _run(self) -> None:
        while self.running:
            x = self._next_block()
            words = np.rint(x.real * TX_FULL_SCALE) + 1j * np.rint(x.imag * TX_FULL_SCALE)
            try:
                self.radio.sdr.tx(words)
            except Exception as exc:  # noqa: BLE001 - reported to the next caller
                if self.running:
                    self.error = _map_error(exc, "stream push", self.radio.uri)
                self.running = False
                return
            with self.lock:
                self.pushed += 1

    def stop(self) -> None:
        self.running = False
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout=2.0)


class _Drain:
    """The host side of a continuous RX stream on the wall clock: a thread that reads
    whole RX buffers back to back and holds them until :meth:`take` (at most
    ``DRAIN_MAX_SAMPLES``; older ones are dropped and :attr:`dropped` set, like the
    hardware's overflow flag). :attr:`head` counts the samples drained so far."""

    def __init__(self, radio: PlutoRadio) -> None:
        self.radio = radio
        self.rate = float(radio.config.sample_rate_hz)
        #: (head, wall time) at the latest buffer arrivals (air_index)
        self.arrivals: collections.deque[tuple[int, float]] = collections.deque(maxlen=64)
        self.blocks: collections.deque[np.ndarray] = collections.deque()
        self.held = 0  # samples in blocks
        self.head = 0  # samples drained since the start
        self.dropped = False
        self.error: RadioError | None = None
        self.running = True
        self.ready = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"drain-{radio.uri}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sdr = self.radio.sdr
        while self.running:
            try:
                block = _stream_block(sdr)
            except Exception as exc:  # noqa: BLE001 - reported to the next take
                with self.ready:
                    if self.running:
                        self.error = _map_error(exc, "stream drain", self.radio.uri)
                    self.running = False
                    self.ready.notify_all()
                return
            with self.ready:
                self.blocks.append(block)
                self.held += block.size
                self.head += block.size
                self.arrivals.append((self.head, time.monotonic()))
                while self.held - self.blocks[0].size >= DRAIN_MAX_SAMPLES:
                    self.held -= self.blocks.popleft().size
                    self.dropped = True
                self.ready.notify_all()

    def air_index(self) -> int:
        """The RX stream index on the air now: a buffer arrives at least as late as its
        last sample was on the air, so the least delayed of the recent arrivals, carried
        forward at the sample rate, bounds it from below (the host's scheduling delays
        of the others drop out)."""
        with self.ready:
            if not self.arrivals:
                return self.head
            now = time.monotonic()
            return max(self.head, max(int(h + (now - t) * self.rate) for h, t in self.arrivals))

    def take(self, n: int, keep: bool = True) -> np.ndarray:
        """The next ``n`` samples (waiting for the air to bring them; ``keep=False``:
        dropped, an empty array returned)."""
        timeout_s = max(1.0, 4 * self.radio.timeout_ms / 1e3)
        parts: list[np.ndarray] = []
        with self.ready:
            while n > 0:
                if not self.blocks:
                    if self.error is not None:
                        raise self.error
                    if not self.ready.wait(timeout_s) and not self.blocks:
                        raise RadioTimeout(f"{self.radio.uri}: RX stream drain brought nothing")
                    continue
                block = self.blocks[0]
                if block.size <= n:
                    self.blocks.popleft()
                else:
                    self.blocks[0], block = block[n:], block[:n]
                self.held -= block.size
                n -= block.size
                if keep:
                    parts.append(block)
        return np.concatenate(parts) if parts else np.zeros(0, np.complex64)

    def stop(self) -> None:
        self.running = False
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout=2.0)
