"""airmix radios: one :class:`~radio.base.Radio` interface, peer back-ends opened by URI.

>>> from radio import open_radio
>>> with open_radio("sim://lab/user0") as r: ...          # SimRadio on a shared medium
>>> with open_radio("ip:192.168.2.1") as r: ...           # PlutoRadio through pyadi-iio
"""

from radio import base
from radio.base import *  # noqa: F403  (the package's API is radio.base's __all__)

__all__ = base.__all__
