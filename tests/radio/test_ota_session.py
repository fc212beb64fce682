"""End-to-end tests of radio.ota_session.OtaSession on the simulated medium (SimRadio):
8 users, Rayleigh fading, +-25 ppm at 915 MHz, 1 MS/s, random start latency."""

import math

import numpy as np
import pytest

from phy.rng import make_rng, spawn
from studies.phy_demo import build_sim_testbed, run_snr


def test_eight_users_20db_within_1db_of_genie():
    out = run_snr(20.0, n_users=8, n_reals=960, trials=1, rng=3)
    assert 10 * math.log10(out["measured"] / out["genie"]) < 1.0
    assert out["genie"] / out["closed_form"] < 1.26  # genie itself meets the closed form
    assert out["measured"] > 0.5 * out["closed_form"]  # honest: not better than optimum


def test_acquisition_accuracy_and_recalibration():
    bed = build_sim_testbed(10.0, n_users=4, rng=9, recalibrate_every=1)
    try:
        s = bed.session
        est = s.acquire()
        for e in est:
            t = s.truth(e.user, e.capture_clock)
            assert abs(e.delay_samples - t.delay_samples) < 0.1
            assert abs(e.cfo_hz - t.cfo_hz) < 0.01 * bed.config.subcarrier_spacing_hz
            assert abs(np.angle(e.gain / t.gain)) < 0.1
        x = make_rng(1).standard_normal((4, 192))
        w = np.full(4, 0.25)
        first = s.mixup(x, w)
        clock = s.clock
        second = s.mixup(x, w)  # re-acquires (recalibrate_every=1)
        assert s.estimates[0].capture_clock >= clock
        for r in (first, second):
            assert r.estimate.shape == (192,)
            assert r.mse_vs_target < 3 * r.closed_form_mse
    finally:
        bed.close()


def test_bad_input_raises():
    bed = build_sim_testbed(20.0, n_users=2, rng=4)
    try:
        s = bed.session
        with pytest.raises(ValueError):
            s.mixup(np.ones((3, 10)), np.ones(3))
        with pytest.raises(ValueError):
            s.mixup(np.ones((2, 10)), np.array([0.5, -0.1]))
        with pytest.raises(ValueError):
            s.mixup(np.full((2, 10), np.nan), np.ones(2))
        s.truth = None
        with pytest.raises(ValueError):
            s.mixup(np.ones((2, 10)), np.ones(2), genie=True)
    finally:
        bed.close()
    with pytest.raises(ValueError):
        build_sim_testbed(float("nan"))


@pytest.mark.slow
@pytest.mark.parametrize("snr_db", [10.0, 20.0, 30.0])
def test_within_1db_of_genie_over_fading_draws(snr_db):
    ratios = []
    for r in spawn(int(snr_db), 3):
        out = run_snr(snr_db, n_users=8, n_reals=1920, trials=4, rng=r)
        ratios.append(out["measured"] / out["genie"])
    assert 10 * math.log10(np.mean(ratios)) < 1.0
