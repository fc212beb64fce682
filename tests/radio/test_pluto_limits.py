"""One definition of the Pluto's limits: the simulated radio's configuration check and
the virtual Pluto's device model accept and refuse the same values at every boundary."""

from __future__ import annotations

import pytest

from hardware.ad9361_model import AD9361Model
from hardware.iiod.context import IIOError
from radio.base import RadioConfig, RadioConfigError
from radio.pluto_limits import (
    LO_RANGE_HZ,
    PLUTO_VARIANT,
    RX_GAIN_BANDS,
    TX_ATTENUATION_RANGE_DB,
    rx_gain_range_db,
)
from radio.sim import check_pluto_config


def sim_accepts(**change) -> bool:
    try:
        check_pluto_config(RadioConfig().replace(**change))
    except RadioConfigError:
        return False
    return True


def device_accepts(setter: str, *args: str) -> bool:
    model = AD9361Model(variant="ad9364")
    try:
        getattr(model, setter)(*args)
    except IIOError:
        return False
    return True


@pytest.mark.parametrize(
    "hz", [LO_RANGE_HZ[0] - 1, LO_RANGE_HZ[0], LO_RANGE_HZ[1], LO_RANGE_HZ[1] + 1]
)
def test_lo_range_agrees(hz):
    assert sim_accepts(center_hz=hz) == device_accepts("set_lo", "rx", str(int(hz)))


@pytest.mark.parametrize("db", [-0.25, 0.0, 10.25, 10.1, 89.75, 90.0])
def test_tx_attenuation_agrees(db):
    expected = TX_ATTENUATION_RANGE_DB[0] <= db <= TX_ATTENUATION_RANGE_DB[1]
    assert sim_accepts(tx_attenuation_db=db) == (expected and db != 10.1)
    assert device_accepts("set_tx_atten", f"{-db:.2f}") == expected  # the driver rounds


@pytest.mark.parametrize("lo_hz", [915e6, 2.4e9, 5.8e9])
def test_rx_gain_range_follows_the_gain_table_of_the_lo(lo_hz):
    low, high = rx_gain_range_db(lo_hz)
    assert (low, high) in [(lo, hi) for _, lo, hi in RX_GAIN_BANDS]
    model = AD9361Model(variant="ad9364")
    model.set_lo("rx", str(int(lo_hz)))
    assert model.rx_gain_range() == (low, high)
    for gain in (low - 1, low, high, high + 1):
        sim = sim_accepts(center_hz=lo_hz, rx_gain_db=float(gain))
        assert sim == (low <= gain <= high)


def test_pluto_variant_is_the_firmware_mod():
    assert PLUTO_VARIANT.lo_min_hz == 70_000_000 and PLUTO_VARIANT.lo_max_hz == 6_000_000_000
