"""Mixing-weight policies, mixup label algebra and the soft-label loss.

A :class:`MixingPolicy` chooses the target weights ``lambda_k`` (non-negative, summing to
1) with which a group of K users is mixed, and says which weights the *labels* are mixed
with once the channel has reported the weights it actually realised:

* ``"equal"`` - ``lambda_k = 1/K``;
* ``"dirichlet"`` - ``lambda ~ Dirichlet(alpha 1_K)``, one draw per group and step;
* ``"power_control"`` - target ``1/K``; the labels use the effective weights the phy
  power control realised (``PowerControlResult.effective_weights``, e.g. smaller for a
  weak user at its power limit), renormalised to sum 1.

Policies are selected by name through :data:`MIXING_POLICIES` / :func:`make_policy`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from phy.registry import Registry
from phy.rng import RngLike, make_rng

__all__ = [
    "MIXING_POLICIES",
    "DirichletWeights",
    "EqualWeights",
    "MixingPolicy",
    "PowerControlWeights",
    "make_policy",
    "mix_labels",
    "soft_cross_entropy",
]


def _normalise(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be a non-empty finite non-negative vector, got {w}")
    total = w.sum()
    if total <= 0:
        raise ValueError("weights sum to zero")
    return w / total


class MixingPolicy(ABC):
    """Chooses per-group mixing weights."""

    name: str = ""

    @abstractmethod
    def draw(self, n_users: int, rng: RngLike = None) -> np.ndarray:
        """Target weights for one group and step: float64 ``(n_users,)``, >= 0, sum 1."""

    def draw_groups(self, n_users: int, n_groups: int, rng: RngLike = None) -> np.ndarray:
        """Target weights of ``n_groups`` independent groups (slots): float64
        ``(n_users, n_groups)``, column ``j`` one :meth:`draw` from ``rng`` in order."""
        gen = make_rng(rng)
        if n_groups < 0:
            raise ValueError(f"n_groups must be >= 0, got {n_groups}")
        columns = [self.draw(n_users, gen) for _ in range(n_groups)]
        return np.stack(columns, axis=1) if columns else np.zeros((n_users, 0))

    def label_weights(self, target: np.ndarray, effective: np.ndarray | None) -> np.ndarray:
        """Weights ``(K,)`` (sum 1) to mix the labels with, given the ``target`` weights and
        the ``effective`` ones the channel realised (None if it reports none)."""
        return _normalise(target)

    @staticmethod
    def _check_k(n_users: int) -> int:
        if isinstance(n_users, bool) or not isinstance(n_users, int | np.integer) or n_users < 1:
            raise ValueError(f"n_users must be a positive int, got {n_users!r}")
        return int(n_users)


class EqualWeights(MixingPolicy):
    """``lambda_k = 1/K``."""

    name = "equal"

    def draw(self, n_users: int, rng: RngLike = None) -> np.ndarray:
        k = self._check_k(n_users)
        return np.full(k, 1.0 / k)


class DirichletWeights(MixingPolicy):
    """``lambda ~ Dirichlet(alpha 1_K)`` (AirMixML's dispersed mixing); ``alpha > 0``."""

    name = "dirichlet"

    def __init__(self, alpha: float = 1.0) -> None:
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha must be finite and > 0, got {alpha}")
        self.alpha = float(alpha)

    def draw(self, n_users: int, rng: RngLike = None) -> np.ndarray:
        k = self._check_k(n_users)
        w = make_rng(rng).dirichlet(np.full(k, self.alpha))
        total = w.sum()
        return w / total if total > 0 else np.full(k, 1.0 / k)


class PowerControlWeights(MixingPolicy):
    """Target ``1/K``; labels mixed with the channel's realised (effective) weights."""

    name = "power_control"

    def draw(self, n_users: int, rng: RngLike = None) -> np.ndarray:
        k = self._check_k(n_users)
        return np.full(k, 1.0 / k)

    def label_weights(self, target: np.ndarray, effective: np.ndarray | None) -> np.ndarray:
        if effective is None:
            return _normalise(target)
        eff = np.asarray(effective, dtype=np.float64)
        if eff.shape != np.shape(target):
            raise ValueError(f"effective weights {eff.shape} do not match target {target.shape}")
        return _normalise(np.clip(eff, 0.0, None))


#: name -> policy class (constructed with keyword arguments by :func:`make_policy`)
MIXING_POLICIES: Registry[type[MixingPolicy]] = Registry(
    "mixing policy",
    {cls.name: cls for cls in (EqualWeights, DirichletWeights, PowerControlWeights)},
)


def make_policy(name: str, **kwargs: Any) -> MixingPolicy:
    """Construct the mixing policy registered as ``name`` (e.g. ``"dirichlet", alpha=0.5``)."""
    return MIXING_POLICIES[name](**kwargs)


def mix_labels(
    labels: torch.Tensor | np.ndarray,
    weights: torch.Tensor | np.ndarray,
    n_classes: int,
) -> torch.Tensor:
    """Soft mixup labels ``sum_k w_k onehot(y_k)``.

    Args:
        labels: integer class labels ``(K, B)`` in ``[0, n_classes)``.
        weights: ``(K,)`` (one weight per user) or ``(B, K)`` (per sample), finite, >= 0.
        n_classes: number of classes C.

    Returns:
        float32 ``(B, C)``; each row sums to the row's weight total (1 for mixup weights).
    """
    y = torch.as_tensor(labels)
    if y.ndim != 2 or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(
            f"labels must be an integer tensor of shape (K, B), got {y.dtype} {y.shape}"
        )
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    k, b = y.shape
    w = torch.as_tensor(weights, dtype=torch.float32)
    if w.shape == (k,):
        w = w.expand(b, k)
    elif w.shape != (b, k):
        raise ValueError(f"weights must have shape ({k},) or ({b}, {k}), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("weights must be finite and >= 0")
    onehot = torch.nn.functional.one_hot(y.long(), n_classes).to(torch.float32)  # (K, B, C)
    return torch.einsum("bk,kbc->bc", w, onehot)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c target_c log softmax(logits)_c``.

    ``logits`` and ``target`` are ``(B, C)``; ``target`` rows are soft labels (>= 0).
    """
    if logits.ndim != 2 or logits.shape != target.shape:
        raise ValueError(
            f"logits and target must both be (B, C), got {tuple(logits.shape)}, "
            f"{tuple(target.shape)}"
        )
    return torch.nn.functional.cross_entropy(logits, target.to(logits.dtype))
