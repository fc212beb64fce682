"""phy.tdd_timing on synthetic sample-clock lag walks (no medium): every radio starts on
its own clock edge after each sync pulse, the lag walking by frac(T fs_k) per pulse."""

import numpy as np
import pytest

from phy.tdd_timing import PulseClocks

PERIOD = 20000.0  # samples per sync period (20 ms at 1 MS/s)


def _radios(seed, k=8):
    rng = np.random.default_rng(seed)
    ppm = rng.uniform(-25, 25, k + 1)  # receiver first
    b = np.mod(PERIOD * (1 + ppm * 1e-6), 1.0)  # lag step per pulse
    alpha = rng.uniform(0, 1, k + 1)
    drift = {u: float((ppm[u + 1] - ppm[0]) * 1e-6 * PERIOD) for u in range(k)}
    return b, alpha, drift, rng


def _delay(b, alpha, u, p):
    """Capture index of user u's buffer start on pulse p (constant 0: equal delays)."""
    lag = np.mod(alpha - p * b, 1.0)
    return lag[u + 1] - lag[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_predictions_with_a_margin_hold_to_the_sample(seed):
    b, alpha, drift, rng = _radios(seed)
    clocks = PulseClocks(PERIOD)
    for p in range(20):  # acquisition and calibration: every user on every pulse
        for u in range(8):
            clocks.observe(u, p, _delay(b, alpha, u, p) + 0.01 * rng.standard_normal())
    clocks.fit(drift)
    sure, errors = 0, []
    for p in range(21, 40):
        got = [clocks.predict(u, p) for u in range(8)]
        error = np.array([d - _delay(b, alpha, u, p) for u, (d, _) in enumerate(got)])
        # a whole sample common to every user is the receiver's own wrap: the frame
        # moves as one (the receiver finds it); relative to each other users must hold
        error -= np.round(np.median(error))
        ok = np.array([margin >= 0.05 for _, margin in got])
        sure += int(ok.sum())
        errors.extend(error[ok])
    assert sure > 0.5 * 19 * 8  # most predictions are sure
    assert np.max(np.abs(errors)) < 0.05  # and those never miss a wrap (a whole sample)


def test_raw_delays_jump_by_whole_samples_and_unfitted_predictions_are_unsure():
    b, alpha, drift, _ = _radios(4)
    raw = np.array([[_delay(b, alpha, u, p) for u in range(8)] for p in range(10)])
    steps = np.diff(raw, axis=0) + np.array(list(drift.values()))[None, :]
    assert np.any(np.abs(steps) > 0.5)  # the wraps: what a fixed offset would miss
    clocks = PulseClocks(PERIOD)
    clocks.observe(0, 0, raw[0, 0])
    assert clocks.predict(0, 1)[1] == 0.0  # nothing fitted yet: no margin
    with pytest.raises(KeyError):
        clocks.predict(5, 1)
    with pytest.raises(ValueError):
        PulseClocks(0.0)


def test_probes_on_every_other_pulse_leave_no_sure_prediction_a_sample_off():
    # a tdd slot is a probe pulse and a payload pulse, so after the calibration the
    # delays are observed on pulses of one parity only, which cannot tell the receiver's
    # walk frac(B_r) from frac(B_r) + 1/2: predictions for the payload pulses in between
    # must then be unsure rather than a sample off (before: 36 sure and wrong here)
    b, alpha, drift, rng = _radios(3)
    clocks = PulseClocks(PERIOD)
    for p in range(12):  # calibration: every user on consecutive pulses
        for u in range(8):
            clocks.observe(u, p, _delay(b, alpha, u, p) + 0.03 * rng.standard_normal())
    clocks.fit(drift)
    sure, wrong = 0, 0
    for p in range(12, 140, 2):  # then a probe every other pulse, the oldest dropped
        for u in range(8):
            clocks.observe(u, p, _delay(b, alpha, u, p) + 0.03 * rng.standard_normal())
        clocks.fit(drift)
        got = [clocks.predict(u, p + 1) for u in range(8)]
        ok = np.array([margin >= 0.04 for _, margin in got])
        if not ok.any():
            continue
        error = np.array([d - _delay(b, alpha, u, p + 1) for u, (d, _) in enumerate(got)])
        error -= np.round(np.median(error[ok]))  # the receiver's own wrap moves all
        sure += int(ok.sum())
        wrong += int(np.sum(ok & (np.abs(error) > 0.5)))
    assert sure > 8 * 64 * 0.3  # most payload pulses can still be used
    assert wrong == 0
