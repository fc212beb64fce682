"""Tests of phy.ota_model: exactness without noise, MSE against the closed form, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phy.ota_model import ota_mixture
from phy.power import tx_rx_scaling


def _complex_gains(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)


def _unit_power_payloads(k: int, b: int, d: int, seed: int) -> torch.Tensor:
    """Real pairs whose complex symbols are CN(0, 1): each real part N(0, 1/2)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(k, b, d, generator=gen, dtype=torch.float64) / np.sqrt(2.0)


def test_noise_free_estimate_is_weighted_sum() -> None:
    k, b, d = 4, 3, 10
    x = _unit_power_payloads(k, b, d, 0)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    for h in (_complex_gains((k,), 1), _complex_gains((b, k), 2)):
        est, res = ota_mixture(x, w, h, noise_var=0.0, p_max=[1.0, 0.5, 2.0, 1.0])
        assert est.shape == (b, d) and est.dtype == torch.float64
        expected = torch.einsum("k,kbd->bd", w, x)
        torch.testing.assert_close(est, expected, rtol=1e-12, atol=1e-12)
        assert np.all(res.mse < 1e-20)


def test_per_sample_weights() -> None:
    k, b, d = 3, 5, 4
    x = _unit_power_payloads(k, b, d, 3)
    w = np.random.default_rng(4).dirichlet(np.ones(k), size=b)
    est, res = ota_mixture(x, w, _complex_gains((k,), 5), 0.0)
    assert res.mse.shape == (b,)
    expected = torch.einsum("bk,kbd->bd", torch.as_tensor(w), x)
    torch.testing.assert_close(est, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("policy", ["mmse", "channel_inversion", "airmixml_dirichlet"])
def test_empirical_mse_matches_closed_form(policy: str) -> None:
    k, b, n_sym = 4, 6, 20_000
    x = _unit_power_payloads(k, b, 2 * n_sym, 6)
    w = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    h = _complex_gains((b, k), 7)
    noise_var = np.array([0.01, 0.05, 0.1, 0.3, 1.0, 0.2])
    gen = torch.Generator().manual_seed(8)
    est, res = ota_mixture(x, w, h, noise_var, p_max=0.5, policy=policy, generator=gen)
    err = (est - torch.einsum("k,kbd->bd", w, x)).numpy()
    per_symbol = np.mean(err[:, 0::2] ** 2 + err[:, 1::2] ** 2, axis=1)  # complex symbols
    np.testing.assert_allclose(per_symbol, res.mse, rtol=0.05)
    np.testing.assert_allclose(np.mean(err**2, axis=1), res.mse / 2, rtol=0.05)  # per real
    if policy == "mmse":
        np.testing.assert_allclose(res.mse, tx_rx_scaling(h, w.numpy(), 0.5, noise_var).mse)


def test_gradients_match_analytic_expression() -> None:
    k, b, d = 3, 4, 6
    x = _unit_power_payloads(k, b, d, 9).requires_grad_(True)
    w = np.array([0.5, 0.3, 0.2])
    h = _complex_gains((b, k), 10)
    est, res = ota_mixture(x, w, h, 0.1, generator=torch.Generator().manual_seed(0))
    upstream = torch.randn(b, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (est * upstream).sum().backward()
    # estimate = sum_k c_k x_k + a n with c_k = a h_k b_k; dL/d(Re x, Im x) = conj(c) * g
    coef = res.rx_scaling[:, None] * h * res.tx_scaling  # (B, K)
    g = upstream.numpy()[:, 0::2] + 1j * upstream.numpy()[:, 1::2]  # (B, D/2)
    analytic = np.conj(coef.T)[:, :, None] * g[None]  # (K, B, D/2)
    expected = np.stack([analytic.real, analytic.imag], axis=-1).reshape(k, b, d)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-14)
    assert torch.all(x.grad.abs().sum(dim=(1, 2)) > 0)  # every payload gets gradient


def test_reproducible_with_generator_and_float32() -> None:
    x = _unit_power_payloads(2, 3, 8, 11).float()
    h = _complex_gains((2,), 12)
    kw = {"policy": "airmixml_dirichlet", "policy_kwargs": {"alpha": 0.5}}
    e1, r1 = ota_mixture(x, [0.5, 0.5], h, 0.1, generator=torch.Generator().manual_seed(3), **kw)
    e2, r2 = ota_mixture(x, [0.5, 0.5], h, 0.1, generator=torch.Generator().manual_seed(3), **kw)
    assert e1.dtype == torch.float32
    torch.testing.assert_close(e1, e2, rtol=0, atol=0)
    np.testing.assert_array_equal(r1.tx_scaling, r2.tx_scaling)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"payloads": torch.zeros(2, 3, 5, dtype=torch.float64)}, "even"),
        ({"payloads": torch.zeros(2, 3, dtype=torch.float64)}, r"\(K, B, D\)"),
        ({"payloads": torch.full((2, 3, 4), float("nan"), dtype=torch.float64)}, "NaN"),
        ({"payloads": torch.zeros(2, 3, 4, dtype=torch.int64)}, "float"),
        ({"weights": [0.5, 0.3, 0.2]}, "weights"),
        ({"h": np.ones((4, 2))}, "h"),
        ({"noise_var": -1.0}, "noise_var"),
        ({"noise_var": np.ones(2)}, "noise_var"),
        ({"policy": "nope"}, "allowed"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    args = {
        "payloads": torch.zeros(2, 3, 4, dtype=torch.float64),
        "weights": [0.5, 0.5],
        "h": np.ones(2, dtype=complex),
        "noise_var": 0.1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ota_mixture(**args)
