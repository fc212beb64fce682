"""radio.ota_transmitter: the user half of the closed loop (SlotOrder -> waveform on a
SimRadio), against the phy functions it wraps."""

import math

import numpy as np
import pytest

from phy.impairments import dac_quantize
from phy.medium import SharedMedium
from phy.ota import UserCorrection, pilot_buffer, precompensated_payload
from phy.waveform import OfdmConfig, frame_length
from radio.ota_transmitter import OtaTransmitter, SlotOrder
from radio.sim import SimRadio


@pytest.fixture
def radio():
    medium = SharedMedium(rng=0)
    radio = SimRadio("sim://tx-test/u0", medium=medium)
    yield radio
    radio.close()


def test_slot_order_neutralises_an_undetected_user():
    lost = UserCorrection(2, math.nan, math.nan, math.inf, 40)
    order = SlotOrder.from_correction(lost, 0j, 500)
    assert (order.delay_samples, order.sro, order.cfo_hz) == (0.0, 0.0, 0.0)
    assert (order.target_delay, order.buffer_len, order.tx_scaling) == (40, 500, 0j)
    kept = SlotOrder.from_correction(UserCorrection(1, 3.25, 1e-6, 120.0, 40), 0.5 - 0.1j, 500)
    assert kept.correction(1) == UserCorrection(1, 3.25, 1e-6, 120.0, 40)


def test_payload_waveform_is_the_precompensated_frame():
    config = OfdmConfig()
    payload = np.random.default_rng(1).standard_normal(96) * 0.3
    correction = UserCorrection(0, 7.4, 2e-5, 350.0, 30)
    length = 30 + frame_length(96, config) + config.n_fft
    order = SlotOrder.from_correction(correction, 0.3 + 0.2j, length)
    got = OtaTransmitter(None, config).payload_waveform(payload, order)
    want = precompensated_payload(payload, correction, 0.3 + 0.2j, config, length)
    np.testing.assert_array_equal(got, want)
    silent = SlotOrder.from_correction(UserCorrection(0, math.nan, 0, 0, 30), 0j, length)
    assert not OtaTransmitter(None, config).payload_waveform(payload, silent).any()
    with pytest.raises(ValueError, match="no link estimate"):
        bad = SlotOrder(math.nan, 0.0, 0.0, 30, 0.5 + 0j, length)
        OtaTransmitter(None, config).payload_waveform(payload, bad)


def test_plays_pilots_and_payloads_on_the_radio_and_stops(radio):
    config = OfdmConfig()
    tx = OtaTransmitter(radio, config)
    tx.play_pilot(1, 4)
    playing = radio.port.transmission
    assert playing.cyclic and math.isinf(playing.end_s)
    np.testing.assert_array_equal(playing.samples, dac_quantize(pilot_buffer(1, 4, config)))
    tx.stop()
    assert math.isfinite(radio.port.transmission.end_s)
    length = 16 + frame_length(64, config) + config.n_fft
    order = SlotOrder(0.0, 0.0, 0.0, 16, 0.5 + 0j, length)
    tx.play_payload(np.full(64, 0.5), order)
    assert radio.port.transmission.samples.shape == (length,)
    assert radio.port.transmission.cyclic
