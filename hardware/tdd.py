"""The TDD engine of Pluto firmware v0.39+ (ADI's ``axi_tdd`` core) as an IIO device.

pyadi-iio drives it as :class:`adi.tddn` (``find_device("iio-axi-tdd-0")``; on a Pluto
the device is named ``adi-iio-fakedev`` and labelled ``iio-axi-tdd-0``), ADI's example
``pluto_tddn.py`` shows the use: device attributes ``enable``, ``sync_external``,
``sync_internal``, ``sync_soft``, ``sync_reset``, ``burst_count``, ``state`` and the
``frame_length``/``startup_delay``/``internal_sync_period`` pairs in ``_ms`` and
``_raw`` (core clock cycles); output channels ``channel0..`` with ``enable``,
``polarity``, ``on_ms``/``on_raw``, ``off_ms``/``off_raw``. On a Pluto, channel 1 gates
the RX DMA and channel 2 the TX DMA (``pluto_tddn.py``): with the engine enabled and a
sync source, an RX buffer and a (cyclic) TX buffer start on the sync pulse.

:class:`TddEngine` keeps that state and tells :mod:`hardware.virtual_pluto` whether a
buffer is armed; the pulse itself is the medium's shared sync line
(:meth:`phy.medium.SharedMedium.pulse`, periodic with ``sync_period_s``). Modelled
simplifications: a TX buffer armed on the engine plays once per pulse (transmit gated to
one frame, ``burst_count`` 1); ``sync_soft`` pulses the shared line of the medium (on the
virtual bench one pulse source serves every radio); raw counts are in sample-clock
cycles of the radio (the core clock is not published).
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from hardware.iiod import Attribute, Channel, Device, IIOError
from radio.pluto import FIRST_TDD_FIRMWARE, firmware_at_least

__all__ = [
    "FIRST_TDD_FIRMWARE",
    "RX_DMA_CHANNEL",
    "TX_DMA_CHANNEL",
    "TddEngine",
    "firmware_at_least",
]

#: engine channels that gate the RX and TX DMAs on a Pluto (pluto_tddn.py)
RX_DMA_CHANNEL, TX_DMA_CHANNEL = 1, 2
_CHANNELS = 3


@dataclass
class _Chan:
    enable: bool = False
    polarity: bool = False
    on_raw: int = 0
    off_raw: int = 0


@dataclass
class TddEngine:
    """State of the TDD engine of one radio.

    Args:
        clock_hz: callable giving the core clock (raw units per second).
        pulse: callable pulsing the sync line (``sync_soft``).
    """

    clock_hz: Callable[[], float]
    pulse: Callable[[], object]
    enable: bool = False
    sync_external: bool = False
    sync_internal: bool = False
    sync_reset: bool = False
    burst_count: int = 0
    frame_length_raw: int = 0
    startup_delay_raw: int = 0
    internal_sync_period_raw: int = 0
    channels: list[_Chan] = field(default_factory=lambda: [_Chan() for _ in range(_CHANNELS)])

    # ------------------------------------------------------------------ arming
    def _armed(self, channel: int) -> bool:
        synced = self.sync_external or self.sync_internal
        return self.enable and synced and self.channels[channel].enable

    @property
    def rx_armed(self) -> bool:
        """An RX buffer starts on the next pulse (engine on, a sync source, channel 1)."""
        return self._armed(RX_DMA_CHANNEL)

    @property
    def tx_armed(self) -> bool:
        """A TX buffer starts on the next pulse (engine on, a sync source, channel 2)."""
        return self._armed(TX_DMA_CHANNEL)

    @property
    def state(self) -> int:
        """0 idle, 1 armed (waiting for a sync pulse)."""
        return int(self.enable and (self.rx_armed or self.tx_armed))

    # ------------------------------------------------------------------ IIO device
    def device(self, dev_id: str) -> Device:
        """The IIO device (name ``adi-iio-fakedev``, label ``iio-axi-tdd-0``)."""

        def integer(name: str, minimum: int = 0) -> Attribute:
            def write(value: str) -> None:
                number = int(_float(value))
                if number < minimum:
                    raise IIOError(errno.EINVAL, f"{name} must be >= {minimum}")
                setattr(self, name, number)

            return Attribute(name, lambda: str(int(getattr(self, name))), write)

        def flag(name: str) -> Attribute:
            def write(value: str) -> None:
                setattr(self, name, _bool(value))

            return Attribute(name, lambda: str(int(getattr(self, name))), write)

        def millis(base: str) -> Attribute:
            def read() -> str:
                return f"{getattr(self, base + '_raw') * 1e3 / self.clock_hz():.6f}"

            def write(value: str) -> None:
                setattr(self, base + "_raw", round(_float(value) * 1e-3 * self.clock_hz()))

            return Attribute(base + "_ms", read, write)

        def soft(value: str) -> None:
            if _bool(value):
                self.pulse()

        attrs = [
            flag("enable"),
            flag("sync_external"),
            flag("sync_internal"),
            flag("sync_reset"),
            Attribute("sync_soft", lambda: "0", soft),
            integer("burst_count"),
            Attribute("state", lambda: str(self.state)),
        ]
        for base in ("frame_length", "startup_delay", "internal_sync_period"):
            attrs += [integer(base + "_raw"), millis(base)]
        return Device(
            dev_id,
            "adi-iio-fakedev",
            channels=[self._channel(k) for k in range(_CHANNELS)],
            attrs=attrs,
            label="iio-axi-tdd-0",
        )

    def _channel(self, k: int) -> Channel:
        chan = self.channels[k]

        def flag(name: str) -> Attribute:
            def write(value: str) -> None:
                setattr(chan, name, _bool(value))

            return Attribute(name, lambda: str(int(getattr(chan, name))), write)

        def raw(name: str) -> Attribute:
            def write(value: str) -> None:
                setattr(chan, name, max(0, int(_float(value))))

            return Attribute(name, lambda: str(getattr(chan, name)), write)

        def millis(name: str) -> Attribute:
            def read() -> str:
                return f"{getattr(chan, name) * 1e3 / self.clock_hz():.6f}"

            def write(value: str) -> None:
                setattr(chan, name, max(0, round(_float(value) * 1e-3 * self.clock_hz())))

            return Attribute(name.replace("_raw", "_ms"), read, write)

        attrs = [flag("enable"), flag("polarity"), raw("on_raw"), raw("off_raw")]
        attrs += [millis("on_raw"), millis("off_raw")]
        return Channel(f"channel{k}", output=True, attrs=attrs)


def _bool(value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "y", "yes", "on"):
        return True
    if text in ("0", "false", "n", "no", "off"):
        return False
    raise IIOError(errno.EINVAL, f"not a boolean: {value!r}")


def _float(value: str) -> float:
    """A finite number (as the kernel's parsing would accept), else EINVAL."""
    try:
        number = float(value)
    except ValueError:
        raise IIOError(errno.EINVAL, f"not a number: {value!r}") from None
    if not math.isfinite(number) or abs(number) > 2**63:
        raise IIOError(errno.EINVAL, f"out of range: {value!r}")
    return number
