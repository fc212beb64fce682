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

import contextlib
import errno
from collections.abc import Iterator, Sequence

import numpy as np

from radio.base import (
    Radio,
    RadioConfig,
    RadioConfigError,
    RadioDisconnected,
    RadioError,
    RadioTimeout,
)

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

    Args:
        uri: ``ip:...``, ``usb:...`` or ``serial:<hw_serial>``.
        config: applied at open (default :class:`RadioConfig()`).
        timeout_ms: libiio I/O timeout, ms.
        kernel_buffers: RX kernel buffers (the stale data a late reader finds).
        search_uris: extra URIs probed when resolving ``serial:`` (e.g. virtual Plutos).
    """

    def __init__(
        self,
        uri: str,
        *,
        config: RadioConfig | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        kernel_buffers: int = 4,
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
        with _libiio("setting up the context", self.uri):
            sdr.ctx.set_timeout(self.timeout_ms)
            try:
                sdr._rxadc.set_kernel_buffers_count(self.kernel_buffers)
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
        """Destroy the TX buffer (stops a cyclic transmission)."""
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
        with _libiio("receive", self.uri):
            sdr.rx_destroy_buffer()  # flush: a new buffer starts a fresh stream
            while have < n_samples:
                block = np.asarray(sdr.rx())
                parts.append(block)
                have += block.size
        x = np.concatenate(parts)[: int(n_samples)] / RX_FULL_SCALE
        return x.astype(np.complex64)

    # -- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        """Stop transmitting, destroy buffers and drop the context (safe twice)."""
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
