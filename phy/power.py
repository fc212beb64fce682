r"""Transmit/receive scaling for over-the-air computation of a weighted sum (OTA mixup).

Model (one channel use, all quantities complex baseband)::

    y = sum_k h_k b_k x_k + n,   E|x_k|^2 = 1 (independent, zero mean),  E|n|^2 = noise_var
    estimate  s_hat = a y   of   s = sum_k w_k x_k,   w_k >= 0,   |b_k|^2 <= p_max_k

    MSE(a, b) = sum_k |a h_k b_k - w_k|^2 + |a|^2 noise_var          (per complex symbol)

Exact optimum (Cao et al., IEEE TWC 2020, generalised to weights w_k and per-user
power limits p_max_k). Derivation:

1. The phase of ``a`` is free: rotating ``a`` by ``e^{j phi}`` and every ``b_k`` by
   ``e^{-j phi}`` leaves the MSE unchanged, so take ``a >= 0`` real.
2. For fixed ``a`` the MSE separates over users. ``a h_k b_k`` ranges over the disc of
   radius ``a g_k`` with ``g_k = |h_k| sqrt(p_max_k)``; the point of that disc closest to
   ``w_k >= 0`` is ``w_k`` itself when ``w_k <= a g_k`` (channel inversion,
   ``b_k = w_k / (a h_k)``, zero error) and otherwise ``a g_k`` (full power, phase
   aligned, ``b_k = sqrt(p_max_k) h_k^* / |h_k|``, error ``(w_k - a g_k)^2``).
3. Hence, with thresholds ``t_k = w_k / g_k``, the problem reduces to the 1-D function
   ``f(a) = sum_k max(0, w_k - a g_k)^2 + a^2 noise_var``, which is convex and C^1
   (a sum of squared convex non-negative functions plus a convex quadratic).
   User ``k`` transmits at full power exactly when ``a < t_k`` (weak users at full
   power, strong users invert their channel: the threshold structure).
4. Sort the thresholds ``t_(1) <= ... <= t_(K)`` and put ``t_(0) = 0``,
   ``t_(K+1) = inf``. On the interval ``[t_(i), t_(i+1)]`` the full-power set is
   ``S_i = {(i+1), ..., (K)}`` and ``f`` is a quadratic whose stationary point is
   ``a_i = sum_{S_i} g_k w_k / (noise_var + sum_{S_i} g_k^2)``. By convexity the
   minimiser of ``f`` over that interval is ``clip(a_i, t_(i), t_(i+1))``, and the global
   minimiser is the best of these K+1 candidates. (With ``noise_var = 0`` the minimum
   is 0, reached at ``a = t_(K)``, the smallest receive gain that inverts everyone.)

Users with ``w_k = 0`` get ``b_k = 0``. A user with ``h_k = 0`` and ``w_k > 0`` has
``t_k = inf`` (it can never be inverted and always contributes ``w_k^2``).

Baselines with the same signature and :class:`PowerControlResult`:

* :func:`channel_inversion` - every user inverts its channel exactly
  (``a h_k b_k = w_k``); ``a = max_k t_k`` so the weakest user just meets its limit.
  MSE ``= a^2 noise_var`` (users with ``h_k = 0`` cannot be inverted: ``b_k = 0``).
* :func:`airmixml_dirichlet` - AirMixML's DirMix(alpha) power control (Koda et al.,
  arXiv 2105.00395): fractional channel inversion where, for a global scaling factor
  ``c``, user ``k`` contributes the received amplitude ``c lambda_k`` with
  ``lambda ~ Dirichlet(alpha 1)`` over the active users (``w_k > 0``, ``h_k != 0``);
  ``b_k = c lambda_k / h_k`` with the largest feasible
  ``c = min_k g_k / lambda_k`` (the binding user transmits at full power), and the
  receiver normalises by ``a = (sum_k w_k) / c`` so the estimate is the mixup
  ``sum_k lambda_k x_k`` scaled to the total requested weight. The received weights thus
  follow the Dirichlet draw rather than ``w`` (that randomness is AirMixML's privacy
  mechanism); its MSE against ``s`` counts the weight mismatch plus the noise.

All functions are vectorised over leading batch dimensions (no Python loop over them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from phy.registry import Registry
from phy.rng import RngLike, make_rng

__all__ = [
    "POWER_POLICIES",
    "PowerControlResult",
    "PowerPolicy",
    "airmixml_dirichlet",
    "channel_inversion",
    "get_power_policy",
    "mse_of",
    "numerical_optimum",
    "tx_rx_scaling",
]


@dataclass(frozen=True)
class PowerControlResult:
    """Scalings for one or a batch of OTA slots (batch shape ``...``, K users).

    Attributes:
        tx_scaling: complex ``(..., K)``, ``b_k`` (amplitude on unit-power symbols).
        rx_scaling: complex ``(...)``, ``a`` (real positive for all policies here).
        mse: float ``(...)``, ``E|a y - sum_k w_k x_k|^2`` per complex symbol.
        effective_weights: float ``(..., K)``, the received weights ``Re(a h_k b_k)``
            (equal to ``w_k`` for inverted users; ``a h_k b_k`` is real for all policies).
    """

    tx_scaling: np.ndarray
    rx_scaling: np.ndarray
    mse: np.ndarray
    effective_weights: np.ndarray


def _validate(
    h: np.ndarray, weights: Any, p_max: Any, noise_var: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check and broadcast inputs -> (h (...,K) complex, w (...,K), p (...,K), nv (...))."""
    h_arr = np.asarray(h)
    if h_arr.ndim < 1 or h_arr.shape[-1] == 0:
        raise ValueError(f"h must have shape (..., K) with K >= 1, got {h_arr.shape}")
    if not np.issubdtype(h_arr.dtype, np.number):
        raise ValueError(f"h must be numeric, got dtype {h_arr.dtype}")
    h_arr = h_arr.astype(np.complex128)
    if not np.all(np.isfinite(h_arr)):
        raise ValueError("h contains NaN or inf")
    batch = h_arr.shape[:-1]

    def broadcast(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
        if np.iscomplexobj(arr):
            if np.any(arr.imag != 0):
                raise ValueError(f"{name} must be real")
            arr = arr.real
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf")
        try:
            out_shape = np.broadcast_shapes(arr.shape, shape)
        except ValueError as err:
            raise ValueError(f"{name} of shape {arr.shape} does not match {shape}") from err
        if out_shape != shape:
            raise ValueError(f"{name} of shape {arr.shape} does not broadcast to {shape}")
        return np.broadcast_to(arr, shape)

    w = broadcast("weights", weights, h_arr.shape)
    if np.any(w < 0):
        raise ValueError("weights must be >= 0")
    p = broadcast("p_max", p_max, h_arr.shape)
    if np.any(p <= 0):
        raise ValueError("p_max must be > 0")
    nv = broadcast("noise_var", noise_var, batch)
    if np.any(nv < 0):
        raise ValueError("noise_var must be >= 0")
    return h_arr, w, p, nv


def mse_of(
    h: np.ndarray, weights: Any, tx_scaling: np.ndarray, rx_scaling: Any, noise_var: Any
) -> np.ndarray:
    """MSE ``sum_k |a h_k b_k - w_k|^2 + |a|^2 noise_var`` per complex symbol, shape ``(...)``.

    Args:
        h: complex ``(..., K)``; weights: ``(..., K)`` or ``(K,)``; tx_scaling: complex
        ``(..., K)``; rx_scaling: complex ``(...)``; noise_var: scalar or ``(...)``.
    """
    a = np.asarray(rx_scaling)
    err = a[..., None] * np.asarray(h) * np.asarray(tx_scaling) - np.asarray(weights)
    return np.sum(np.abs(err) ** 2, axis=-1) + np.abs(a) ** 2 * np.asarray(noise_var)


def _result(
    h: np.ndarray, w: np.ndarray, b: np.ndarray, a: np.ndarray, nv: np.ndarray
) -> PowerControlResult:
    a = a.astype(np.complex128)
    return PowerControlResult(
        tx_scaling=b,
        rx_scaling=a,
        mse=mse_of(h, w, b, a, nv),
        effective_weights=np.real(a[..., None] * h * b),
    )


def _tx_for(a: np.ndarray, h: np.ndarray, w: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Best ``b`` for receive scaling ``a`` (...): invert where feasible, else full power."""
    g = np.abs(h) * np.sqrt(p)
    a_k = a[..., None]
    invert = (w > 0) & (w <= a_k * g)
    safe = np.where(invert, a_k * h, 1.0)
    full = np.sqrt(p) * np.exp(-1j * np.angle(h))
    return np.where(invert, w / safe, np.where(w > 0, full, 0.0)).astype(np.complex128)


def tx_rx_scaling(
    h: np.ndarray, weights: Any, p_max: Any = 1.0, noise_var: Any = 0.0
) -> PowerControlResult:
    """MSE-optimal scalings (threshold structure, exact; derivation in the module docstring).

    Args:
        h: complex channel gains, shape ``(..., K)``.
        weights: mixup weights ``w_k >= 0``, shape ``(..., K)`` or ``(K,)``.
        p_max: per-user power limit on ``|b_k|^2`` (> 0), scalar or broadcastable to
            ``(..., K)``; same unit as the unit symbol power.
        noise_var: receiver noise power per complex symbol (>= 0), scalar or ``(...)``.

    Returns:
        :class:`PowerControlResult` with ``tx_scaling (..., K)``, ``rx_scaling (...)``
        (real positive), ``mse (...)``.
    """
    h, w, p, nv = _validate(h, weights, p_max, noise_var)
    g = np.abs(h) * np.sqrt(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(w > 0, np.where(g > 0, w / np.where(g > 0, g, 1.0), np.inf), 0.0)
    order = np.argsort(t, axis=-1)
    ts = np.take_along_axis(t, order, axis=-1)
    gs = np.take_along_axis(g, order, axis=-1)
    ws = np.take_along_axis(w, order, axis=-1)
    zeros = np.zeros(ts.shape[:-1] + (1,))
    # interval i = [lo_i, hi_i], i = 0..K; full-power set = sorted users i..K-1
    lo = np.concatenate([zeros, ts], axis=-1)
    hi = np.concatenate([ts, np.full_like(zeros, np.inf)], axis=-1)
    suffix_gw = np.cumsum((gs * ws)[..., ::-1], axis=-1)[..., ::-1]
    suffix_gg = np.cumsum((gs * gs)[..., ::-1], axis=-1)[..., ::-1]
    num = np.concatenate([suffix_gw, zeros], axis=-1)
    den = np.concatenate([suffix_gg, zeros], axis=-1) + nv[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        stationary = np.where(den > 0, num / np.where(den > 0, den, 1.0), lo)
    cand = np.clip(stationary, lo, hi)
    valid = np.isfinite(cand)
    cand = np.where(valid, cand, 0.0)
    shortfall = np.maximum(0.0, w[..., None, :] - cand[..., :, None] * g[..., None, :])
    f = np.sum(shortfall**2, axis=-1) + cand**2 * nv[..., None]
    f = np.where(valid, f, np.inf)
    best = np.argmin(f, axis=-1)
    a = np.take_along_axis(cand, best[..., None], axis=-1)[..., 0]
    return _result(h, w, _tx_for(a, h, w, p), a, nv)


def channel_inversion(
    h: np.ndarray, weights: Any, p_max: Any = 1.0, noise_var: Any = 0.0
) -> PowerControlResult:
    """Full channel inversion with a common receive scaling (no truncation).

    Every user with ``w_k > 0`` and ``h_k != 0`` sends ``b_k = w_k / (a h_k)``; ``a`` is the
    smallest value meeting every power limit, ``a = max_k w_k / (|h_k| sqrt(p_max_k))``.
    Users with ``h_k = 0`` cannot be inverted and send nothing. Arguments and result as in
    :func:`tx_rx_scaling`.
    """
    h, w, p, nv = _validate(h, weights, p_max, noise_var)
    g = np.abs(h) * np.sqrt(p)
    invertible = (w > 0) & (g > 0)
    t = np.where(invertible, w / np.where(invertible, g, 1.0), 0.0)
    a = np.max(t, axis=-1)
    safe = np.where(invertible, a[..., None] * h, 1.0)
    b = np.where(invertible, w / safe, 0.0).astype(np.complex128)
    return _result(h, w, b, a, nv)


def airmixml_dirichlet(
    h: np.ndarray,
    weights: Any,
    p_max: Any = 1.0,
    noise_var: Any = 0.0,
    *,
    alpha: float = 1.0,
    rng: RngLike = None,
) -> PowerControlResult:
    """AirMixML DirMix(alpha) power control (see the module docstring).

    Args:
        h, weights, p_max, noise_var: as in :func:`tx_rx_scaling`.
        alpha: Dirichlet concentration (> 0); small alpha -> dispersed (one user
            dominates), large alpha -> near-equal received weights.
        rng: anything :func:`phy.rng.make_rng` accepts (draws ``lambda``).

    Returns:
        :class:`PowerControlResult`; ``effective_weights = sum(w) * lambda``.
    """
    h, w, p, nv = _validate(h, weights, p_max, noise_var)
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be finite and > 0, got {alpha}")
    gen = make_rng(rng)
    k = h.shape[-1]
    g = np.abs(h) * np.sqrt(p)
    active = (w > 0) & (g > 0)
    lam = gen.dirichlet(np.full(k, float(alpha)), size=h.shape[:-1]) * active
    total = np.sum(lam, axis=-1, keepdims=True)
    n_active = np.sum(active, axis=-1, keepdims=True)
    # renormalised sub-vector of a Dirichlet vector is Dirichlet over the subset; if it
    # underflowed to 0 (tiny alpha), fall back to equal weights over the active users
    equal = active / np.maximum(n_active, 1)
    lam = np.where(total > 0, lam / np.where(total > 0, total, 1.0), equal)
    use = active & (lam > 0)
    with np.errstate(divide="ignore"):
        ratio = np.where(use, g / np.where(use, lam, 1.0), np.inf)
    c = np.min(ratio, axis=-1)
    has = np.isfinite(c)
    c_safe = np.where(has, c, 1.0)
    a = np.where(has, np.sum(w, axis=-1) / c_safe, 0.0)
    safe_h = np.where(use, h, 1.0)
    b = np.where(use, c_safe[..., None] * lam / safe_h, 0.0).astype(np.complex128)
    return _result(h, w, b, a, nv)


def numerical_optimum(
    h: np.ndarray,
    weights: Any,
    p_max: Any = 1.0,
    noise_var: float = 0.0,
    *,
    restarts: int = 6,
    rng: RngLike = None,
) -> float:
    """Reference: minimum MSE found by a generic constrained solver (one instance).

    Minimises ``MSE(a, b)`` over ``a >= 0`` and complex ``b`` (as real pairs) subject to
    ``|b_k|^2 <= p_max_k`` with scipy's SLSQP from ``restarts`` random feasible starts;
    it knows nothing of the threshold structure, so it checks :func:`tx_rx_scaling`.

    Args:
        h: complex ``(K,)``; weights, p_max: ``(K,)`` or scalar; noise_var: scalar.
        restarts: number of random starts (>= 1); rng: draws the starts.

    Returns:
        the smallest MSE found (float).
    """
    h_arr, w, p, nv_arr = _validate(h, weights, p_max, noise_var)
    if h_arr.ndim != 1:
        raise ValueError(f"h must have shape (K,) for the numerical optimum, got {h_arr.shape}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    gen = make_rng(rng)
    k, nv = h_arr.shape[0], float(nv_arr)

    def objective(x: np.ndarray) -> float:
        b = x[1 : k + 1] + 1j * x[k + 1 :]
        return float(np.sum(np.abs(x[0] * h_arr * b - w) ** 2) + x[0] ** 2 * nv)

    constraints = [
        {"type": "ineq", "fun": lambda x, i=i: p[i] - x[1 + i] ** 2 - x[1 + k + i] ** 2}
        for i in range(k)
    ]
    bounds = [(0.0, None)] + [(None, None)] * (2 * k)
    best = np.inf
    for _ in range(restarts):
        radius = np.sqrt(p) * gen.uniform(0.0, 1.0, k)
        phase = gen.uniform(0.0, 2.0 * np.pi, k)
        x0 = np.concatenate(
            [[gen.uniform(0.1, 5.0)], radius * np.cos(phase), radius * np.sin(phase)]
        )
        res = minimize(
            objective,
            x0,
            method="SLSQP",
            bounds=bounds,
            constraints=constraints,
            options={"ftol": 1e-16, "maxiter": 2000},
        )
        best = min(best, objective(res.x))
    return best


@dataclass(frozen=True)
class PowerPolicy:
    """A registered power-control policy, called with one signature by every caller::

        policy(h, weights, p_max, noise_var, rng=None, **options) -> PowerControlResult

    Attributes:
        function: the implementation, ``f(h, weights, p_max, noise_var, **options)``
            (plus ``rng=`` when ``randomised``).
        randomised: the policy draws from ``rng`` (e.g. AirMixML's Dirichlet weights);
            deterministic policies ignore ``rng`` and callers need not draw one for them.
    """

    function: Callable[..., PowerControlResult]
    randomised: bool = False

    def __call__(
        self,
        h: np.ndarray,
        weights: Any,
        p_max: Any = 1.0,
        noise_var: Any = 0.0,
        rng: RngLike = None,
        **options: Any,
    ) -> PowerControlResult:
        if self.randomised:
            options["rng"] = make_rng(rng)
        return self.function(h, weights, p_max, noise_var, **options)


#: name -> policy (see :class:`PowerPolicy` for the one calling convention)
POWER_POLICIES: Registry[PowerPolicy] = Registry(
    "power policy",
    {
        "mmse": PowerPolicy(tx_rx_scaling),
        "channel_inversion": PowerPolicy(channel_inversion),
        "airmixml_dirichlet": PowerPolicy(airmixml_dirichlet, randomised=True),
    },
)


def get_power_policy(name: str) -> PowerPolicy:
    """The power-control policy registered as ``name`` (see :data:`POWER_POLICIES`)."""
    return POWER_POLICIES[name]
