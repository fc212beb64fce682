"""``SimRadio``: the :class:`radio.base.Radio` interface on a simulated shared medium.

A URI ``sim://<medium>/<radio>`` names a medium registered with
:func:`phy.medium.register_medium` and a radio on it (added with ``port_kwargs`` if
absent). Configuration is checked against the ranges of an ADALM-PLUTO (AD9363 with the
common 70 MHz-6 GHz firmware setting) and mapped one-to-one to the
:class:`phy.medium.MediumPort` properties.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from phy.medium import MediumPort, NoTddEngineError, SharedMedium, StreamTooLateError, get_medium
from radio.base import (
    Radio,
    RadioConfig,
    RadioConfigError,
    RadioDisconnected,
    StreamTooLate,
    TimeBaseUnsupported,
)
from radio.pluto_limits import (
    LO_RANGE_HZ,
    RF_BANDWIDTH_RANGE_HZ,
    SAMPLE_RATE_RANGE_HZ,
    TX_ATTENUATION_RANGE_DB,
    TX_ATTENUATION_STEP_DB,
    rx_gain_range_db,
)

#: TX stream feeder of a SimRadio: buffers of this many samples, this many queued
STREAM_BLOCK = 1024
STREAM_BUFFERS = 4


def parse_sim_uri(uri: str) -> tuple[str, str]:
    """Split ``sim://<medium>/<radio>`` into ``(medium, radio)``; RadioConfigError if not."""
    prefix = "sim://"
    if not isinstance(uri, str) or not uri.startswith(prefix):
        raise RadioConfigError(
            f"simulated radio URI must look like sim://medium/radio, got {uri!r}"
        )
    parts = uri[len(prefix) :].split("/")
    if len(parts) != 2 or not all(parts):
        raise RadioConfigError(
            f"simulated radio URI must look like sim://medium/radio, got {uri!r}"
        )
    return parts[0], parts[1]


def check_pluto_config(config: RadioConfig) -> None:
    """Raise :class:`RadioConfigError` if ``config`` is outside what a Pluto accepts
    (:mod:`radio.pluto_limits`; the RX gain range of the gain table at ``center_hz``)."""

    def within(name: str, value: float, bounds: tuple[float, float], unit: str) -> None:
        if not bounds[0] <= value <= bounds[1]:
            raise RadioConfigError(
                f"{name} = {value} {unit} is outside the Pluto range {bounds[0]}..{bounds[1]}"
            )

    within("center_hz", config.center_hz, LO_RANGE_HZ, "Hz")
    within("sample_rate_hz", config.sample_rate_hz, SAMPLE_RATE_RANGE_HZ, "S/s")
    if config.rf_bandwidth_hz is not None:
        within("rf_bandwidth_hz", config.rf_bandwidth_hz, RF_BANDWIDTH_RANGE_HZ, "Hz")
    within("tx_attenuation_db", config.tx_attenuation_db, TX_ATTENUATION_RANGE_DB, "dB")
    steps = config.tx_attenuation_db / TX_ATTENUATION_STEP_DB
    if not math.isclose(steps, round(steps), abs_tol=1e-9):
        raise RadioConfigError(
            f"tx_attenuation_db = {config.tx_attenuation_db} is not a multiple of "
            f"{TX_ATTENUATION_STEP_DB} dB"
        )
    within("rx_gain_db", config.rx_gain_db, rx_gain_range_db(config.center_hz), "dB")
    if config.rx_gain_mode != "manual":
        raise RadioConfigError(
            f"rx_gain_mode {config.rx_gain_mode!r} is not simulated; use 'manual'"
        )


class SimRadio(Radio):
    stream_lead = STREAM_BLOCK * STREAM_BUFFERS

    """A radio on a :class:`phy.medium.SharedMedium`.

    Args:
        uri: ``sim://<medium>/<radio>``.
        medium: use this medium instead of looking the name up in the registry.
        **port_kwargs: :meth:`SharedMedium.add_radio` arguments (``ppm``, ``latency_s``,
            ``position``, ``kernel_buffers``, ...) used when the radio is not yet on the
            medium.
    """

    def __init__(self, uri: str, medium: SharedMedium | None = None, **port_kwargs: Any) -> None:
        medium_name, radio_name = parse_sim_uri(uri)
        self.uri = uri
        if medium is None:
            try:
                medium = get_medium(medium_name)
            except KeyError as err:
                raise RadioConfigError(str(err)) from None
        self.medium = medium
        if radio_name in medium:
            self._port: MediumPort | None = medium.port(radio_name)
        else:
            self._port = medium.add_radio(radio_name, **port_kwargs)
        p = self._port
        config = RadioConfig(
            center_hz=p.lo_hz,
            sample_rate_hz=p.sample_rate_hz,
            rf_bandwidth_hz=None if p.rf_bandwidth_hz == p.sample_rate_hz else p.rf_bandwidth_hz,
            tx_attenuation_db=p.tx_attenuation_db,
            rx_gain_db=p.rx_gain_db,
            rx_buffer_size=p.rx_buffer_size,
        )
        self._config = config

    @property
    def port(self) -> MediumPort:
        """The medium port (raises RadioDisconnected after close)."""
        if self._port is None:
            raise RadioDisconnected(f"{self.uri} is closed")
        return self._port

    @property
    def config(self) -> RadioConfig:
        """The configuration currently applied."""
        return self._config

    def configure(self, config: RadioConfig) -> None:
        """Validate ``config`` against Pluto ranges and apply it to the port."""
        if not isinstance(config, RadioConfig):
            raise RadioConfigError(f"config must be a RadioConfig, got {type(config).__name__}")
        check_pluto_config(config)
        port = self.port
        with self.medium.lock:
            if port.lo_hz != config.center_hz:
                port.lo_hz = config.center_hz  # a retune draws a new LO phase
            if port.sample_rate_hz != config.sample_rate_hz:
                port.sample_rate_hz = config.sample_rate_hz
            port.rf_bandwidth_hz = config.rf_bandwidth_hz
            port.tx_attenuation_db = config.tx_attenuation_db
            port.rx_gain_db = config.rx_gain_db
            if port.rx_buffer_size != config.rx_buffer_size:
                port.rx_buffer_size = config.rx_buffer_size
        self._config = config

    def transmit(self, samples: np.ndarray, *, cyclic: bool = False) -> None:
        """Start transmitting (see :meth:`Radio.transmit`); raises TransmitClippingError."""
        self.port.transmit(self.check_transmit_samples(samples), cyclic=cyclic)

    def transmit_at(self, samples: np.ndarray, push_s: float, end_s: float | None = None) -> None:
        """See :meth:`Radio.transmit_at` (ValueError if it overlaps this radio's others)."""
        self.port.transmit_at(self.check_transmit_samples(samples), push_s, end_s)

    def stop_transmit(self) -> None:
        """Stop any transmission."""
        self.port.stop_transmit()

    def receive(self, n_samples: int) -> np.ndarray:
        """Discard the stale kernel buffers, then return ``n_samples`` fresh samples."""
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples <= 0:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        port = self.port
        port.flush()  # drop stale kernel buffers, like reading and discarding them on a Pluto
        return port.receive(int(n_samples))

    # ------------------------------------------------------------ time bases
    def check_time_base(self, time_base: str) -> None:
        """See :meth:`Radio.check_time_base`: ``tdd`` needs the port's TDD engine,
        ``stream`` a sample rate the host link can feed."""
        super().check_time_base(time_base)
        port = self.port
        if time_base == "tdd" and not port.tdd_engine:
            raise TimeBaseUnsupported(
                f"{self.uri}: the tdd time base needs the TDD engine (axi_tdd, Pluto firmware "
                "v0.39 or later); this radio has none"
            )
        if time_base == "stream" and port.sample_rate_hz > self.medium.max_stream_rate_hz:
            raise TimeBaseUnsupported(
                f"{self.uri}: a continuous stream at {port.sample_rate_hz:g} S/s cannot be fed "
                f"(the host link sustains about {self.medium.max_stream_rate_hz:g} S/s)"
            )

    def start_stream(self) -> None:
        """Start the continuous TX stream (feeder: STREAM_BUFFERS x STREAM_BLOCK)."""
        try:
            self.port.start_stream(STREAM_BLOCK, STREAM_BUFFERS)
        except RuntimeError as error:
            raise TimeBaseUnsupported(f"{self.uri}: {error}") from None

    def earliest_index(self) -> int:
        """First TX stream index content can still be placed at."""
        return self.port.earliest_index()

    def place(self, samples: np.ndarray, index: int) -> None:
        """Place ``samples`` at TX stream ``index`` (TransmitClippingError if > full scale,
        StreamTooLate if that index is already queued or on the air)."""
        try:
            self.port.place(self.check_transmit_samples(samples), int(index))
        except StreamTooLateError as error:
            raise StreamTooLate(str(error)) from None

    def read_stream(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` of the RX stream, contiguous (no flush)."""
        return self.port.receive(int(n_samples))

    def discard_stream(self, n_samples: int) -> None:
        """Read and drop the next ``n_samples`` of the RX stream (not rendered)."""
        self.port.discard(int(n_samples))

    def status(self) -> dict[str, bool]:
        """Sticky flags of the port: TX underflow and RX overflow."""
        port = self.port
        return {"tx_underflow": port.tx_underflow, "rx_overflow": port.rx_overflow}

    def clear_status(self) -> None:
        """Clear both sticky flags."""
        self.port.clear_tx_underflow()
        self.port.clear_rx_overflow()

    def arm_transmit(self, samples: np.ndarray) -> None:
        """Arm a one-shot TX buffer on the TDD engine (next sync pulse)."""
        try:
            self.port.arm_transmit(self.check_transmit_samples(samples))
        except NoTddEngineError as error:
            raise TimeBaseUnsupported(str(error)) from None

    def arm_receive(self, n_samples: int) -> np.ndarray:
        """Arm an RX capture on the TDD engine and return it (next sync pulse)."""
        try:
            return self.port.arm_receive(int(n_samples))
        except NoTddEngineError as error:
            raise TimeBaseUnsupported(str(error)) from None

    def close(self) -> None:
        """Stop transmitting and detach from the port (safe to call twice)."""
        if self._port is not None:
            self._port.stop_transmit()
            self._port = None
