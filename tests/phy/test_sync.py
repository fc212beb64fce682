"""Tests of phy.sync: detection (hits, misses, false alarms), timing, CFO, CRB."""

import math

import numpy as np
import pytest

from phy.rng import make_rng
from phy.sync import (
    cfo_crb_hz,
    correct_cfo,
    delay_from_response,
    detect_frame_arrays,
    detect_frames,
    schmidl_cox,
)
from phy.waveform import OfdmConfig, frame_blocks, render_blocks

C = OfdmConfig()


GAIN = 0.7 * np.exp(0.4j)


def _capture(rng, delays, cfo_hz, snr_db, n=4000, gain=GAIN):
    """Frames at fractional ``delays`` with CFO and AWGN at ``snr_db`` (per sample)."""
    rng = make_rng(rng)
    x = np.zeros(n, complex)
    for d in delays:
        blocks = frame_blocks(rng.standard_normal(480), C)
        i = int(math.floor(d))
        y = render_blocks(blocks, C, np.full(len(blocks), d - i))
        y = y[: n - i]
        x[i : i + y.size] += y * gain
    x *= np.exp(2j * np.pi * cfo_hz / C.sample_rate_hz * np.arange(n))
    noise_power = abs(gain) ** 2 * C.amplitude**2 / 10 ** (snr_db / 10)
    return x + np.sqrt(noise_power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))


def test_timing_and_cfo_at_10db():
    rng = make_rng(11)
    err_t, err_f = [], []
    for _ in range(20):
        d = 300 + rng.uniform(0, 1)
        cfo = rng.uniform(-45e3, 45e3)
        dets = detect_frames(_capture(rng, [d], cfo, 10.0), C)
        assert len(dets) == 1
        err_t.append(dets[0].start - d)
        err_f.append(dets[0].cfo_hz - cfo)
    assert np.sqrt(np.mean(np.square(err_t))) < 0.1
    assert np.sqrt(np.mean(np.square(err_f))) < 0.01 * C.subcarrier_spacing_hz


def test_two_frames_detected_and_noise_gives_no_false_alarm():
    rng = make_rng(2)
    dets = detect_frames(_capture(rng, [200.0, 2100.5], 20e3, 15.0), C)
    assert [round(d.start) for d in dets] == [200, 2100] or [round(d.start) for d in dets] == [
        200,
        2101,
    ]
    noise = (rng.standard_normal(200_000) + 1j * rng.standard_normal(200_000)) / np.sqrt(2)
    assert detect_frames(noise, C) == []


def test_miss_below_sensitivity_and_truncated_frame():
    rng = make_rng(3)
    assert detect_frames(_capture(rng, [500.0], 1e3, -15.0), C) == []
    x = _capture(rng, [3900.0], 1e3, 30.0)  # preamble cut by the capture end
    assert detect_frames(x, C) == []


def test_schmidl_cox_and_cfo_correction():
    x = np.tile(np.exp(1j * np.arange(8)), 40) * np.exp(2j * np.pi * 0.01 * np.arange(320))
    metric, p = schmidl_cox(x, 8, 120)
    np.testing.assert_allclose(metric, 1.0, atol=1e-9)
    assert np.angle(p[0]) / (2 * np.pi * 8) == pytest.approx(0.01)
    y = correct_cfo(x, 0.01e6, 1e6)
    np.testing.assert_allclose(y, np.tile(np.exp(1j * np.arange(8)), 40), atol=1e-9)


def test_crb_formula_and_validation():
    crb = cfo_crb_hz(10.0, 1000, 1e6)
    assert crb == pytest.approx(1e6 / (2 * np.pi) * math.sqrt(6 / (10 * 1000 * (1000**2 - 1))))
    assert cfo_crb_hz(100.0, 1000, 1e6) == pytest.approx(crb / math.sqrt(10))
    for bad in [(0.0, 100, 1e6), (float("nan"), 100, 1e6), (1.0, 1, 1e6)]:
        with pytest.raises(ValueError):
            cfo_crb_hz(*bad)


def test_bad_capture_raises():
    with pytest.raises(ValueError):
        detect_frames(np.array([1.0, np.nan, 0.0]), C)
    with pytest.raises(ValueError):
        detect_frames(np.zeros((4, 4)), C)
    with pytest.raises(ValueError):
        detect_frames(np.zeros(100), C, threshold=1.5)


def test_packed_capture_batch_detection_matches_list_and_truth():
    """Many frames with their own CFO, gain and fractional start: every one is found by
    the vectorised detector, with the list form identical to the array form."""
    rng = make_rng(21)
    n_frames, gap = 12, 300
    length = C.preamble_len + 5 * C.symbol_len  # 480 reals = 5 symbols
    n = n_frames * (length + gap) + gap
    starts = gap + (length + gap) * np.arange(n_frames) + rng.uniform(0, 1, n_frames)
    cfo = rng.uniform(-45e3, 45e3, n_frames)
    gains = rng.uniform(0.5, 1.0, n_frames) * np.exp(2j * np.pi * rng.uniform(size=n_frames))
    x = np.zeros(n, complex)
    for s, f, g in zip(starts, cfo, gains, strict=True):
        y = _capture(rng, [s], f, 200.0, n=n, gain=g)  # 200 dB: noise-free frame
        x += y
    noise_power = C.amplitude**2 / 100  # 20 dB per sample at unit gain, 14 dB at 0.5
    x += np.sqrt(noise_power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    arrays = detect_frame_arrays(x, C)
    assert len(arrays) == n_frames
    assert arrays.to_list() == detect_frames(x, C)
    assert np.max(np.abs(arrays.start - starts)) < 0.05
    assert np.sqrt(np.mean((arrays.cfo_hz - cfo) ** 2)) < 0.01 * C.subcarrier_spacing_hz
    # gain is referenced to capture index 0 through the CFO estimate: compare where it
    # was measured (the long preamble)
    at = starts + C.long_start + C.n_fft
    err = arrays.gain / gains * np.exp(2j * np.pi * (arrays.cfo_hz - cfo) / 1e6 * at)
    assert np.max(np.abs(err - 1)) < 0.05


def test_delay_from_response_is_near_the_crb():
    """Noise-free: exact delay and gain; at 10 dB per subcarrier the delay RMS is within
    1.5x the Cramer-Rao bound 1 / sqrt(2 snr sum (2 pi k / n)^2)."""
    rng = make_rng(4)
    k = C.used_bins
    tau = rng.uniform(-20, 20, 200)
    g = np.exp(2j * np.pi * rng.uniform(size=200))
    h = g[:, None] * np.exp(-2j * np.pi * np.outer(tau, k) / C.n_fft)
    t_hat, g_hat = delay_from_response(h, C)
    np.testing.assert_allclose(t_hat, tau, atol=1e-9)
    np.testing.assert_allclose(g_hat, g, atol=1e-9)
    snr = 10.0
    noise = (rng.standard_normal(h.shape) + 1j * rng.standard_normal(h.shape)) / np.sqrt(2 * snr)
    t_hat, _ = delay_from_response(h + noise, C)
    crb = 1 / np.sqrt(2 * snr * np.sum((2 * np.pi * k / C.n_fft) ** 2))
    assert np.sqrt(np.mean((t_hat - tau) ** 2)) < 1.5 * crb
