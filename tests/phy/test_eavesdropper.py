"""The passive eavesdropper: its receiver on the simulated medium and its statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phy.eavesdropper import (
    eavesdrop_frame,
    eavesdropper_gains,
    eavesdropper_mixture,
    preamble_detected,
    subcarrier_noise_var,
)
from phy.medium import SharedMedium, register_medium, unregister_medium
from phy.ota import corrections_for
from phy.waveform import OfdmConfig, frame_length
from radio import RadioConfig, open_radio
from radio.ota_session import OtaSession

OFDM = OfdmConfig()
N_REALS = 960
RF = RadioConfig(
    center_hz=915e6, sample_rate_hz=1e6, tx_attenuation_db=0.0, rx_gain_db=0.0, rx_buffer_size=16384
)


def symbols(reals: np.ndarray) -> np.ndarray:
    """Reals ``(..., 2n)`` -> the waveform's symbols ``(..., n)``."""
    return (reals[..., 0::2] + 1j * reals[..., 1::2]) / math.sqrt(2.0)


def ota_slot(seed: int, k_users: int, snr_db: float = 25.0, fading: str = "rayleigh"):
    """One closed-loop OTA mixup of ``k_users`` on a fresh medium with a passive
    eavesdropper; returns (medium, payloads (K, N_REALS), session result, eavesdropper's
    capture of the receiver's slot window: the first ``buffer_len`` samples of its read)."""
    name = f"eve-test-{seed}-{k_users}"
    medium = SharedMedium(
        seed=seed,
        noise_dbfs=10 * math.log10(OFDM.amplitude**2) - 10.0 - snr_db,
        default_path_loss_db=10.0,
        channel_model=fading,
        timing="ideal",  # the cyclic OtaSession needs constant start latency
    )
    register_medium(name, medium)
    try:
        rx = open_radio(f"sim://{name}/rx")
        rx.configure(RF)
        users = [open_radio(f"sim://{name}/u{k}") for k in range(k_users)]
        for user in users:
            user.configure(RF)
        eve = medium.add_radio("eve", passive=True, lo_hz=915e6, rx_gain_db=0.0)
        session = OtaSession(rx, users, OFDM)
        x = np.random.default_rng(seed).standard_normal((k_users, N_REALS)) / math.sqrt(2.0)
        result = session.mixup(x, np.full(k_users, 1.0 / k_users))
        port = medium.port("rx")
        start_s = port.stream_time_s(port.stream_position - RF.rx_buffer_size)
        target = corrections_for(session.estimates)[0].target_delay
        capture = eve.capture(start_s, target + frame_length(N_REALS, OFDM) + OFDM.n_fft)
        return medium, x, result, capture
    finally:
        unregister_medium(name)


def test_single_user_payload_is_recovered():
    """One user: nothing to misalign, the eavesdropper demodulates it at its own SNR."""
    for seed in (1, 3):
        _, x, result, capture = ota_slot(seed, 1)
        frame = eavesdrop_frame(capture, N_REALS, OFDM)
        legit = np.mean((result.estimate - x[0]) ** 2)
        eve = np.mean((frame.payload - x[0]) ** 2)
        assert eve < 0.02 * np.mean(x**2), (seed, eve)  # better than -17 dB
        assert eve < 20 * legit + 1e-3


def test_multi_user_coefficients_follow_the_physics():
    """Four users pre-compensated for the receiver: at the eavesdropper each user's
    symbols arrive with c_k = g_k / sum g, g_k = (its link to E / its link to the
    receiver) x (its coefficient at the receiver); E's mixture is far off the legitimate
    one."""
    k = 4
    for seed in (1, 2, 5):
        medium, x, result, capture = ota_slot(seed, k)
        frame = eavesdrop_frame(capture, N_REALS, OFDM)
        big_x = symbols(x).T  # (S, K)
        c_eve = np.linalg.lstsq(big_x, symbols(frame.payload), rcond=None)[0]
        c_rx = np.linalg.lstsq(big_x, symbols(result.estimate), rcond=None)[0]
        np.testing.assert_allclose(c_rx, 1.0 / k, atol=0.03)  # the legitimate mixup
        ratio = np.array(
            [
                medium.link_truth(f"u{i}", "eve").gain
                * np.exp(1j * medium.link_truth(f"u{i}", "eve").phase_rad)
                / (
                    medium.link_truth(f"u{i}", "rx").gain
                    * np.exp(1j * medium.link_truth(f"u{i}", "rx").phase_rad)
                )
                for i in range(k)
            ]
        )
        g = ratio * c_rx
        np.testing.assert_allclose(c_eve, g / g.sum(), atol=0.05)
        assert abs(c_eve.sum() - 1) < 0.02
        assert np.max(np.abs(c_eve - 1.0 / k)) > 0.1  # misaligned
        eve_error = np.mean((frame.payload - x.mean(axis=0)) ** 2)
        legit_error = np.mean((result.estimate - x.mean(axis=0)) ** 2)
        assert eve_error > 10 * legit_error


def test_no_frame_is_a_miss():
    noise = np.random.default_rng(0).standard_normal(4000) * 1e-2 + 0j
    with pytest.raises(ValueError, match="no whole frame"):
        eavesdrop_frame(noise, N_REALS, OFDM)


def test_eavesdropper_at_the_receiver_sees_the_legitimate_mixture():
    """Same channels as the receiver (E at its place): g_k = h_k b_k, so after
    composite-gain equalisation c_k = w_k / sum w (real, aligned)."""
    rng = np.random.default_rng(0)
    h = (rng.standard_normal((200, 3)) + 1j * rng.standard_normal((200, 3))) / math.sqrt(2)
    w = rng.dirichlet(np.ones(3), size=200)
    noise = subcarrier_noise_var(40.0)
    g = eavesdropper_gains(h, h, w, noise, "channel_inversion")
    np.testing.assert_allclose(g / g.sum(axis=1, keepdims=True), w, atol=1e-9)
    other = (rng.standard_normal((200, 3)) + 1j * rng.standard_normal((200, 3))) / math.sqrt(2)
    c = eavesdropper_gains(h, other, w, noise, "mmse")
    c = c / c.sum(axis=1, keepdims=True)
    assert np.mean(np.abs(c - w)) > 0.2  # independent fading at E: misaligned


def test_mixture_noise_follows_the_snr_convention():
    """Aligned users (no fading, equal weights, every b_k = 1): E demodulates the
    weighted sum plus noise of variance sigma^2 / |G|^2 per real, G = K."""
    k, b, d = 4, 4000, 64
    rng = np.random.default_rng(1)
    sent = rng.standard_normal((k, b, d)) / math.sqrt(2.0)
    w = np.full((b, k), 1.0 / k)
    legit = subcarrier_noise_var(30.0)
    g = eavesdropper_gains(np.ones((b, k)), np.ones((b, k)), w, legit, "mmse")
    np.testing.assert_allclose(g, 1.0, atol=1e-6)
    eve = subcarrier_noise_var(10.0)
    out = eavesdropper_mixture(sent, g, eve, rng=2)
    error = out - sent.mean(axis=0)
    assert np.var(error) == pytest.approx(eve / k**2, rel=0.05)
    assert eve == pytest.approx(0.1 * 52 / 64)
    # the packing is the waveform's: (x[2i] + j x[2i+1]) / sqrt 2 and back, exactly
    one = eavesdropper_mixture(sent[:1], np.ones((b, 1)), 0.0, rng=3)
    np.testing.assert_allclose(one, sent[0], atol=1e-12)


def test_detection_threshold_of_the_composite_preamble():
    noise = subcarrier_noise_var(0.0)  # rho = |G|^2
    assert list(preamble_detected(np.sqrt([1.0, 1.6, 1.8, 10.0]), noise)) == [
        False,
        False,
        True,
        True,
    ]
