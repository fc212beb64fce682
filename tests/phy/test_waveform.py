"""Tests of phy.waveform: layout, validation, exact round trip, scaling."""

import numpy as np
import pytest

from phy.rng import make_rng
from phy.waveform import (
    OfdmConfig,
    demodulate,
    demodulate_frames,
    frame_blocks,
    frame_length,
    modulate,
    papr_margin_db,
    phasors,
    render_blocks,
    symbols_needed,
    zadoff_chu,
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_fft": 60},
        {"n_used_half": 25},  # 51 is not prime
        {"pilot_bins": (0, 7)},
        {"pilot_bins": (7, 7)},
        {"pilot_bins": (40,)},
        {"short_period": 7},
        {"amplitude": 0.0},
        {"amplitude": float("nan")},
        {"cp_len": 64},
        {"zc_root": 53},
        {"sample_rate_hz": -1.0},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises((ValueError, TypeError)):
        OfdmConfig(**kwargs)


def test_layout_counts():
    c = OfdmConfig()
    assert c.used_bins.size == 52 and c.n_data == 48 and c.reals_per_symbol == 96
    assert symbols_needed(96, c) == 1 and symbols_needed(97, c) == 2
    assert frame_length(97, c) == c.preamble_len + 2 * 80
    with pytest.raises(ValueError):
        symbols_needed(0, c)


@pytest.mark.parametrize("n_reals", [1, 95, 96, 1001])
def test_round_trip_is_exact_without_noise(n_reals):
    c = OfdmConfig()
    x = make_rng(3).standard_normal(n_reals)
    s = modulate(x, c)
    assert s.dtype == np.complex64 and s.size == frame_length(n_reals, c)
    np.testing.assert_allclose(demodulate(s, n_reals, c), x, atol=2e-5)
    g = 0.3 * np.exp(1j)
    np.testing.assert_allclose(demodulate(s * g, n_reals, c, gain=g), x, atol=2e-5)


def test_scaling_periodicity_and_headroom():
    c = OfdmConfig()
    s = modulate(make_rng(1).standard_normal(96 * 20), c)
    short = s[: c.short_len]
    np.testing.assert_allclose(short[c.short_period :], short[: -c.short_period], atol=1e-6)
    data = s[c.preamble_len :]
    assert np.sqrt(np.mean(np.abs(data) ** 2)) == pytest.approx(c.amplitude, rel=0.1)
    assert papr_margin_db(s) > 0


def test_fractional_block_delay_is_a_cyclic_shift():
    c = OfdmConfig()
    blocks = frame_blocks(np.ones(96), c)
    whole = render_blocks(blocks, c, np.full(len(blocks), 1.0))
    plain = render_blocks(blocks, c)
    long0 = c.long_start
    np.testing.assert_allclose(whole[long0 + 1 : long0 + 64], plain[long0 : long0 + 63], atol=1e-9)


@pytest.mark.parametrize(
    "bad", [np.array([1.0, np.nan]), np.ones((2, 3)), np.array([1 + 1j]), np.array([])]
)
def test_bad_payload_raises(bad):
    with pytest.raises(ValueError):
        modulate(bad, OfdmConfig())


def test_clipping_payload_raises():
    with pytest.raises(ValueError, match="full scale"):
        modulate(np.full(96, 50.0), OfdmConfig())


def test_zadoff_chu_constant_amplitude_and_validation():
    z = zadoff_chu(5, 53)
    np.testing.assert_allclose(np.abs(z), 1.0)
    corr = np.abs(np.fft.ifft(np.fft.fft(z) * np.conj(np.fft.fft(z))))
    assert corr[0] == pytest.approx(53) and np.max(corr[1:]) < 1e-9
    with pytest.raises(ValueError):
        zadoff_chu(53, 53)


def test_demodulate_frames_undoes_fractional_start_cfo_and_gain_exactly():
    c = OfdmConfig()
    rng = make_rng(6)
    n_reals, n_frames = 500, 5
    length = frame_length(n_reals, c)
    payload = rng.standard_normal((n_frames, n_reals))
    starts = 40 + (length + 90) * np.arange(n_frames) + rng.uniform(-0.5, 0.5, n_frames)
    cfo = rng.uniform(-40e3, 40e3, n_frames)
    gains = rng.uniform(0.2, 2, n_frames) * np.exp(2j * np.pi * rng.uniform(size=n_frames))
    x = np.zeros(int(starts[-1]) + length + 50, complex)
    for p, s, f, g in zip(payload, starts, cfo, gains, strict=True):
        i = int(np.floor(s))
        blocks = frame_blocks(p, c)
        y = render_blocks(blocks, c, np.full(len(blocks), s - i))
        idx = i + np.arange(y.size)
        x[idx] += g * y * np.exp(2j * np.pi * f / c.sample_rate_hz * idx)
    for track in (True, False):
        out = demodulate_frames(x, starts, n_reals, c, cfo_hz=cfo, gains=gains, track_phase=track)
        np.testing.assert_allclose(out, payload, atol=1e-9)
    # without its CFO the payload is wrong: the test can fail
    wrong = demodulate_frames(x, starts, n_reals, c, gains=gains, track_phase=False)
    assert np.mean((wrong - payload) ** 2) > 0.1


def test_demodulate_frames_pilots_track_a_residual_cfo():
    c = OfdmConfig()
    x_pay = make_rng(2).standard_normal(96 * 12)
    s = render_blocks(frame_blocks(x_pay, c), c)
    residual = 300.0  # Hz, about what a 2-block preamble estimate misses at low SNR
    y = np.r_[
        np.zeros(10), s * np.exp(2j * np.pi * residual / c.sample_rate_hz * np.arange(s.size))
    ]
    plain = demodulate_frames(y, [10.0], x_pay.size, c, track_phase=False)[0]
    tracked = demodulate_frames(y, [10.0], x_pay.size, c)[0]
    assert np.mean((tracked - x_pay) ** 2) < 0.01 * np.mean((plain - x_pay) ** 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"starts": [-5.0]},
        {"starts": [1e6]},
        {"starts": [np.nan]},
        {"gains": [0.0]},
        {"cfo_hz": [1.0, 2.0]},
    ],
)
def test_demodulate_frames_rejects_bad_input(kwargs):
    c = OfdmConfig()
    x = modulate(make_rng(0).standard_normal(96), c)
    args = {"starts": [0.0], **kwargs}
    with pytest.raises(ValueError):
        demodulate_frames(x, args.pop("starts"), 96, c, **args)


def test_phasors_match_direct_exponentials():
    theta = make_rng(9).uniform(-4, 4, (3, 5))
    k = np.array([-26, -3, 0, 1, 7, 26, 40])
    np.testing.assert_allclose(phasors(theta, k), np.exp(1j * theta[..., None] * k), atol=1e-12)
    with pytest.raises(ValueError):
        phasors(theta, np.array([], int))
