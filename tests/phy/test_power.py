"""Tests of phy.power: the closed form against a brute-force optimum, batching, baselines,
registry and input validation."""

from __future__ import annotations

import numpy as np
import pytest

from phy.power import (
    POWER_POLICIES,
    airmixml_dirichlet,
    channel_inversion,
    get_power_policy,
    mse_of,
    numerical_optimum,
    tx_rx_scaling,
)


def _instance(rng: np.random.Generator, k: int) -> tuple[np.ndarray, ...]:
    h = (rng.standard_normal(k) + 1j * rng.standard_normal(k)) / np.sqrt(2)
    w = rng.dirichlet(np.ones(k))
    p = rng.uniform(0.1, 3.0, k)  # unequal power limits
    nv = 10 ** rng.uniform(-2.5, 0.0)
    return h, w, p, nv


def test_closed_form_equals_brute_force_optimum() -> None:
    rng = np.random.default_rng(12345)
    mixed = 0
    for n in range(24):
        k = 3 + n % 4
        h, w, p, nv = _instance(rng, k)
        if n == 5:
            w[1] = 0.0  # a user that does not take part
        res = tx_rx_scaling(h, w, p, nv)
        bf = numerical_optimum(h, w, p, nv, restarts=6, rng=rng)
        assert abs(res.mse - bf) <= 1e-6 * bf, (n, res.mse, bf)
        # the result is feasible and its mse field is its true MSE
        assert np.all(np.abs(res.tx_scaling) ** 2 <= p * (1 + 1e-12))
        assert res.mse == pytest.approx(mse_of(h, w, res.tx_scaling, res.rx_scaling, nv))
        assert res.rx_scaling.real > 0 and res.rx_scaling.imag == 0
        full = np.isclose(np.abs(res.tx_scaling) ** 2, p) & (w > 0)
        inverted = np.isclose(res.effective_weights, w) & (w > 0) & ~full
        if full.any() and inverted.any():
            mixed += 1
        if n == 5:
            assert res.tx_scaling[1] == 0
    assert mixed >= 8  # many instances have users both at and below their limit


def test_threshold_structure() -> None:
    rng = np.random.default_rng(7)
    h, w, p, nv = _instance(rng, 6)
    res = tx_rx_scaling(h, w, p, nv)
    a = res.rx_scaling.real
    t = w / (np.abs(h) * np.sqrt(p))
    full = t > a  # below threshold: full power, phase aligned
    np.testing.assert_allclose(np.abs(res.tx_scaling[full]) ** 2, p[full])
    np.testing.assert_allclose(np.angle(res.tx_scaling[full] * h[full]), 0, atol=1e-12)
    np.testing.assert_allclose(res.tx_scaling[~full], w[~full] / (a * h[~full]))


def test_noise_free_is_exact_inversion() -> None:
    h = np.array([0.1 + 0.2j, 1.0, -0.5j])
    w = np.array([0.2, 0.5, 0.3])
    res = tx_rx_scaling(h, w, 1.0, 0.0)
    assert res.mse == pytest.approx(0.0, abs=1e-20)
    np.testing.assert_allclose(res.effective_weights, w)
    ci = channel_inversion(h, w, 1.0, 0.0)
    np.testing.assert_allclose(ci.rx_scaling, res.rx_scaling)


def test_batch_equals_per_instance() -> None:
    rng = np.random.default_rng(3)
    shape, k = (4, 5), 6
    h = (rng.standard_normal(shape + (k,)) + 1j * rng.standard_normal(shape + (k,))) / np.sqrt(2)
    w = rng.dirichlet(np.ones(k), size=shape)
    w[0, 0, :2] = 0.0
    p = rng.uniform(0.2, 2.0, shape + (k,))
    nv = 10 ** rng.uniform(-2, 0, shape)
    batch = tx_rx_scaling(h, w, p, nv)
    assert batch.tx_scaling.shape == shape + (k,) and batch.mse.shape == shape
    for idx in np.ndindex(shape):
        one = tx_rx_scaling(h[idx], w[idx], p[idx], nv[idx])
        np.testing.assert_allclose(batch.tx_scaling[idx], one.tx_scaling, rtol=1e-12)
        np.testing.assert_allclose(batch.rx_scaling[idx], one.rx_scaling, rtol=1e-12)
        np.testing.assert_allclose(batch.mse[idx], one.mse, rtol=1e-12)
    # shared (K,) weights and scalar limits broadcast
    shared = tx_rx_scaling(h, w[0, 0], 1.0, 0.1)
    assert shared.mse.shape == shape
    assert shared.mse[1, 2] == pytest.approx(tx_rx_scaling(h[1, 2], w[0, 0], 1.0, 0.1).mse)


def test_baselines_never_beat_mmse() -> None:
    rng = np.random.default_rng(11)
    n, k = 2000, 8
    h = (rng.standard_normal((n, k)) + 1j * rng.standard_normal((n, k))) / np.sqrt(2)
    w = rng.dirichlet(np.ones(k), size=n)
    p = rng.choice([0.25, 1.0, 4.0], size=(n, k))
    nv = 10 ** rng.uniform(-3, 0, n)
    opt = tx_rx_scaling(h, w, p, nv).mse
    for name in ("channel_inversion", "airmixml_dirichlet"):
        base = get_power_policy(name)(h, w, p, nv)
        assert np.all(base.mse >= opt * (1 - 1e-12)), name
        assert np.all(np.abs(base.tx_scaling) ** 2 <= p * (1 + 1e-12)), name
        assert np.mean(base.mse > opt * 1.01) > 0.5, name  # strictly worse most of the time


def test_channel_inversion_structure() -> None:
    h = np.array([1.0, 0.1j, 2.0])
    w = np.array([0.3, 0.3, 0.4])
    res = channel_inversion(h, w, [1.0, 1.0, 0.5], 0.01)
    np.testing.assert_allclose(res.effective_weights, w)
    assert res.rx_scaling.real == pytest.approx(3.0)  # user 1 binds: 0.3 / 0.1
    assert abs(res.tx_scaling[1]) ** 2 == pytest.approx(1.0)
    assert res.mse == pytest.approx(9.0 * 0.01)


def test_airmixml_dirichlet_structure() -> None:
    rng = np.random.default_rng(5)
    n, k = 4000, 4
    h = (rng.standard_normal((n, k)) + 1j * rng.standard_normal((n, k))) / np.sqrt(2)
    w = np.full(k, 0.25)
    w_batch = np.tile(w, (n, 1))
    w_batch[0, 3] = 0.0
    res = airmixml_dirichlet(h, w_batch, 1.0, 0.1, alpha=2.0, rng=9)
    eff = res.effective_weights
    np.testing.assert_allclose(eff.sum(axis=-1), w_batch.sum(axis=-1))
    assert eff[0, 3] == 0 and res.tx_scaling[0, 3] == 0
    # the binding user sends at full power, none exceeds it
    power = np.abs(res.tx_scaling) ** 2
    np.testing.assert_allclose(power.max(axis=-1), 1.0)
    # received weights follow Dirichlet(2): per-user mean 1/4 and variance 3/(16*9)
    lam = eff[1:] / eff[1:].sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(lam.mean(axis=0), 0.25, atol=0.01)
    np.testing.assert_allclose(lam.var(axis=0), 3 / 144, rtol=0.1)
    again = airmixml_dirichlet(h, w_batch, 1.0, 0.1, alpha=2.0, rng=9)
    np.testing.assert_array_equal(again.tx_scaling, res.tx_scaling)
    # large alpha -> received weights close to equal
    close = airmixml_dirichlet(h[:10], w, 1.0, 0.1, alpha=1e6, rng=1)
    np.testing.assert_allclose(close.effective_weights, 0.25, atol=1e-2)


def test_zero_channel_and_zero_weights() -> None:
    h = np.array([0.0, 1.0, 0.5])
    w = np.array([0.5, 0.5, 0.0])
    for name, policy in POWER_POLICIES.items():
        res = policy(h, w, 1.0, 0.1)
        assert np.all(np.isfinite(res.tx_scaling)) and np.isfinite(res.mse), name
        assert res.tx_scaling[2] == 0, name
        assert res.mse >= 0.25, name  # user 0 is unreachable: its w^2 is lost
    none = tx_rx_scaling(h, np.zeros(3), 1.0, 0.1)
    assert none.mse == 0 and np.all(none.tx_scaling == 0)


def test_numerical_optimum_validation() -> None:
    with pytest.raises(ValueError, match="restarts"):
        numerical_optimum(np.ones(2), np.ones(2), 1.0, 0.1, restarts=0)
    with pytest.raises(ValueError, match="h must have shape"):
        numerical_optimum(np.ones((2, 2)), np.ones(2), 1.0, 0.1)


def test_registry() -> None:
    assert set(POWER_POLICIES) == {"mmse", "channel_inversion", "airmixml_dirichlet"}
    assert get_power_policy("mmse").function is tx_rx_scaling
    with pytest.raises(ValueError, match=r"unknown power policy 'waterfilling'; allowed: \["):
        get_power_policy("waterfilling")


def test_one_calling_convention_and_rng_only_for_randomised_policies() -> None:
    """Every policy takes (h, w, p_max, noise_var, rng=...); deterministic ones give the
    same result whatever the rng, the randomised one draws from it."""
    h = np.array([0.3 + 0.4j, 1.2 - 0.1j, 0.05j])
    w = np.full(3, 1 / 3)
    for name, policy in POWER_POLICIES.items():
        a, b = (policy(h, w, 1.0, 0.01, rng=seed) for seed in (1, 2))
        same = np.allclose(a.tx_scaling, b.tx_scaling)
        assert same != policy.randomised, name
        again = policy(h, w, 1.0, 0.01, rng=1)
        np.testing.assert_array_equal(again.tx_scaling, a.tx_scaling)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"h": np.array([np.nan, 1.0])}, "h"),
        ({"h": np.array([np.inf, 1.0])}, "h"),
        ({"weights": np.array([0.5, np.nan])}, "weights"),
        ({"weights": np.array([0.5, -0.1])}, "weights"),
        ({"weights": np.array([0.5, 0.2, 0.3])}, "weights"),
        ({"p_max": -1.0}, "p_max"),
        ({"p_max": 0.0}, "p_max"),
        ({"p_max": np.ones(3)}, "p_max"),
        ({"noise_var": -0.1}, "noise_var"),
        ({"noise_var": np.ones(2)}, "noise_var"),
        ({"noise_var": float("nan")}, "noise_var"),
        ({"h": np.zeros((2, 0))}, "h"),
    ],
)
def test_bad_input(kwargs: dict, name: str) -> None:
    args = {"h": np.array([1.0, 0.5j]), "weights": np.array([0.5, 0.5]), "p_max": 1.0}
    args["noise_var"] = 0.1
    args.update(kwargs)
    for policy in POWER_POLICIES.values():
        with pytest.raises(ValueError, match=name):
            policy(**args)


def test_airmixml_bad_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        airmixml_dirichlet(np.ones(2), np.ones(2), 1.0, 0.1, alpha=0.0)
