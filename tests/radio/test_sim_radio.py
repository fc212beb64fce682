"""Tests of radio.sim.SimRadio: opening by URI, Pluto-range validation, mapping to the
medium port, fresh receive after stale buffers, clipping errors, close."""

import numpy as np
import pytest

from phy.medium import SharedMedium, register_medium, unregister_medium
from radio.base import (
    RadioConfig,
    RadioConfigError,
    RadioDisconnected,
    TransmitClippingError,
    open_radio,
)
from radio.sim import SimRadio


@pytest.fixture
def medium():
    m = register_medium("simradio-test", SharedMedium(rng=1, channel_model="awgn"))
    yield m
    unregister_medium("simradio-test")


def test_open_radio_adds_and_reuses_radio(medium):
    radio = open_radio("sim://simradio-test/u0", ppm=3.0)
    assert isinstance(radio, SimRadio)
    assert "u0" in medium and medium.port("u0").ppm == 3.0
    again = open_radio("sim://simradio-test/u0")
    assert again.port is radio.port
    assert radio.config.center_hz == medium.port("u0").lo_hz


@pytest.mark.parametrize("uri", ["sim://nowhere/u0", "sim://simradio-test", "sim:///u0"])
def test_bad_uri_raises(medium, uri):
    with pytest.raises(RadioConfigError):
        open_radio(uri)


def test_configure_maps_to_port(medium):
    radio = open_radio("sim://simradio-test/u1")
    port = radio.port
    phase = port.lo_phase_rad
    cfg = RadioConfig(
        center_hz=2.4e9,
        sample_rate_hz=2e6,
        rf_bandwidth_hz=1.5e6,
        tx_attenuation_db=20.25,
        rx_gain_db=-3.0,
        rx_buffer_size=4096,
    )
    radio.configure(cfg)
    assert (port.lo_hz, port.sample_rate_hz, port.rf_bandwidth_hz) == (2.4e9, 2e6, 1.5e6)
    assert (port.tx_attenuation_db, port.rx_gain_db, port.rx_buffer_size) == (20.25, -3.0, 4096)
    assert port.lo_phase_rad != phase  # retuned
    assert radio.config == cfg


@pytest.mark.parametrize(
    "change",
    [
        {"center_hz": 60e6},
        {"center_hz": 6.1e9},
        {"sample_rate_hz": 500e3},
        {"sample_rate_hz": 62e6},
        {"tx_attenuation_db": 90.0},
        {"tx_attenuation_db": 10.1},
        {"rx_gain_db": 74.0},  # the gain table at 915 MHz: -1 .. 73 dB
        {"rx_gain_db": -2.0},
        {"center_hz": 2.4e9, "rx_gain_db": 72.0},  # at 2.4 GHz: -3 .. 71 dB
        {"rx_gain_mode": "slow_attack"},
    ],
)
def test_configure_rejects_out_of_pluto_range(medium, change):
    radio = open_radio("sim://simradio-test/u2")
    before = radio.config
    with pytest.raises(RadioConfigError):
        radio.configure(RadioConfig().replace(**change))
    assert radio.config == before


def test_receive_discards_stale_buffers(medium):
    tx = open_radio("sim://simradio-test/tx")
    rx = open_radio("sim://simradio-test/rx")
    rx.configure(rx.config.replace(rx_buffer_size=1000))
    tx.transmit(np.full(500, 0.5 + 0j), cyclic=True)
    rx.receive(1000)
    fs = rx.port.actual_sample_rate_hz
    medium.advance(3000 / fs)  # three buffers pile up while nobody reads
    assert rx.port.held_buffers() == 3
    y = rx.receive(1000)
    np.testing.assert_array_equal(y, rx.port.capture(4000 / fs, 1000))  # not the stale ones
    assert y.dtype == np.complex64 and np.mean(np.abs(y) ** 2) > 1e-5


def test_transmit_clipping_and_close(medium):
    radio = open_radio("sim://simradio-test/u3")
    with pytest.raises(TransmitClippingError):
        radio.transmit(np.full(10, 1.5 + 0j))
    with pytest.raises(ValueError):
        radio.receive(0)
    radio.transmit(np.full(10, 0.5 + 0j), cyclic=True)
    port = radio.port
    medium.advance(0.01)
    with radio:
        pass
    radio.close()
    assert port.transmission.end_s == pytest.approx(0.01)
    with pytest.raises(RadioDisconnected):
        radio.receive(10)
