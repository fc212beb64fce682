"""airmix radios: one :class:`~radio.base.Radio` interface, peer back-ends opened by URI.

>>> from radio import open_radio
>>> with open_radio("sim://lab/user0") as r: ...          # SimRadio on a shared medium
>>> with open_radio("ip:192.168.2.1") as r: ...           # PlutoRadio through pyadi-iio
"""

from radio.base import (
    TIME_BASES,
    Radio,
    RadioConfig,
    RadioConfigError,
    RadioDisconnected,
    RadioError,
    RadioTimeout,
    StreamTooLate,
    TimeBaseUnsupported,
    TransmitClippingError,
    open_radio,
    register_backend,
)

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
]
