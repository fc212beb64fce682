"""Tests of phy.channel: gain statistics, registry, path loss, channel application."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from phy.channel import (
    CHANNEL_MODELS,
    AwgnChannel,
    RayleighFading,
    RicianFading,
    apply_flat_channel,
    db_to_linear,
    linear_to_db,
    log_distance_path_loss_db,
    make_channel_model,
)

N = 200_000


def test_awgn_gains_are_one() -> None:
    h = AwgnChannel().generate((3, 4), rng=0)
    assert h.shape == (3, 4) and h.dtype == np.complex128
    np.testing.assert_array_equal(h, np.ones((3, 4)))


def test_rayleigh_unit_power_and_rayleigh_envelope() -> None:
    h = RayleighFading().generate(N, rng=1)
    assert h.shape == (N,)
    assert abs(np.mean(np.abs(h) ** 2) - 1.0) < 0.01
    assert abs(np.mean(h)) < 0.01
    # |h|^2 ~ Exp(1): a KS test must not reject
    assert stats.kstest(np.abs(h) ** 2, "expon").pvalue > 1e-3
    # circular symmetry: real and imaginary parts uncorrelated with equal power
    assert abs(np.mean(h * h)) < 0.01


def test_rician_unit_power_and_k_factor() -> None:
    k_db = 10.0
    h = RicianFading(k_factor_db=k_db, los_phase_rad=0.3).generate(N, rng=2)
    assert abs(np.mean(np.abs(h) ** 2) - 1.0) < 0.01
    k = db_to_linear(k_db)
    los = np.mean(h)  # estimates the LOS component
    assert abs(los - np.sqrt(k / (k + 1)) * np.exp(0.3j)) < 0.01
    scattered_power = np.mean(np.abs(h - los) ** 2)
    assert abs(abs(los) ** 2 / scattered_power - k) / k < 0.05
    # envelope follows scipy's Rice distribution (b = sqrt(2K), scale = sqrt(1/(2(K+1))))
    scale = np.sqrt(1.0 / (2.0 * (k + 1.0)))
    assert stats.kstest(np.abs(h), "rice", args=(np.sqrt(2 * k), 0, scale)).pvalue > 1e-3


def test_rician_random_los_phase_is_zero_mean() -> None:
    h = RicianFading(k_factor_db=6.0).generate(N, rng=3)
    assert abs(np.mean(h)) < 0.01
    assert abs(np.mean(np.abs(h) ** 2) - 1.0) < 0.01


def test_generation_is_reproducible_from_seed() -> None:
    for name in CHANNEL_MODELS:
        model = make_channel_model(name)
        np.testing.assert_array_equal(model.generate((5, 2), 7), model.generate((5, 2), 7))
    a = RayleighFading().generate(4, 7)
    b = RayleighFading().generate(4, 8)
    assert not np.allclose(a, b)


def test_registry_and_errors() -> None:
    assert set(CHANNEL_MODELS) == {"awgn", "rayleigh", "rician"}
    model = make_channel_model("rician", k_factor_db=3.0)
    assert isinstance(model, RicianFading) and model.k_factor_db == 3.0
    with pytest.raises(ValueError, match="allowed"):
        make_channel_model("nakagami")
    with pytest.raises(ValueError, match="k_factor_db"):
        RicianFading(k_factor_db=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        RayleighFading().generate((-1, 2), 0)


def test_path_loss_free_space_and_slope() -> None:
    # Friis: 2.4 GHz at 1 m, c = 299792458 m/s -> 40.052 dB
    assert log_distance_path_loss_db(1.0, 2.4e9) == pytest.approx(40.052, abs=1e-3)
    pl = log_distance_path_loss_db(np.array([1.0, 10.0, 100.0]), 915e6, exponent=3.0)
    np.testing.assert_allclose(np.diff(pl), [30.0, 30.0])
    # with exponent 2 the reference distance does not matter (pure free space)
    assert log_distance_path_loss_db(50.0, 1e9, ref_distance_m=5.0) == pytest.approx(
        log_distance_path_loss_db(50.0, 1e9)
    )
    for bad in ({"distance_m": 0.0}, {"carrier_hz": -1.0}, {"exponent": 0.0}):
        kwargs = {"distance_m": 1.0, "carrier_hz": 1e9, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            log_distance_path_loss_db(**kwargs)


def test_db_conversions() -> None:
    assert db_to_linear(3.0) == pytest.approx(1.9953, rel=1e-4)
    x = np.array([0.5, 1.0, 20.0])
    np.testing.assert_allclose(db_to_linear(linear_to_db(x)), x)
    assert linear_to_db(0.0) == -np.inf
    with pytest.raises(ValueError, match="non-negative"):
        linear_to_db(-1.0)
    with pytest.raises(ValueError, match="NaN"):
        db_to_linear(float("nan"))


def test_apply_flat_channel_gain_and_noise_power() -> None:
    rng = np.random.default_rng(4)
    x = np.exp(2j * np.pi * rng.random((4, N // 4)))
    h = RayleighFading().generate((4, 1), rng)
    y_clean = apply_flat_channel(x, h, 0.0, rng)
    np.testing.assert_allclose(y_clean, h * x)
    y = apply_flat_channel(x, h, 0.25, rng)
    noise = y - h * x
    assert abs(np.mean(np.abs(noise) ** 2) - 0.25) < 0.005
    assert abs(np.mean(noise * noise)) < 0.005  # circular
    assert apply_flat_channel(x.astype(np.complex64), np.complex64(1), 0.1, 0).dtype == np.complex64


def test_apply_flat_channel_errors() -> None:
    x = np.ones(8, dtype=complex)
    with pytest.raises(ValueError, match="noise_var"):
        apply_flat_channel(x, 1.0, -1.0, 0)
    with pytest.raises(ValueError, match="x contains"):
        apply_flat_channel(np.full(3, np.nan), 1.0, 0.1, 0)
    with pytest.raises(ValueError, match="h "):
        apply_flat_channel(x, np.ones(3), 0.1, 0)
    with pytest.raises(ValueError, match="h "):
        apply_flat_channel(x, np.ones((2, 8)), 0.1, 0)
