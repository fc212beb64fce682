"""Shadow-model families for membership attacks (see :mod:`learning.membership.base`
for the threat model): a :class:`ShadowRecipe` says how the target was trained, and
:func:`train_family` trains ``M`` shadows with it at once
(:meth:`learning.defences.base.Defence.train_stack`) and queries them.

* offline: shadow ``m`` trains on a random subset of the population of
  ``min(n_members, P // 2)`` samples (at most half, so each shadow has population
  samples it did not train on); no challenge sample is ever used.
* online: shadow ``m`` trains on a random half of the challenge set (``N / 2`` samples,
  as many as the target's members); each challenge sample is IN about ``M / 2`` models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from learning.defences.base import Defence, TrainSettings
from learning.membership.base import ShadowFamily
from phy.rng import RngLike, make_rng, spawn

FAMILIES = ("offline", "online")


@dataclass
class ShadowRecipe:
    """How the attacker trains a shadow model: the target's recipe as it knows it.

    Attributes:
        factory: builds one untrained model (inputs -> logits).
        defence: the training recipe (:class:`~learning.defences.base.Defence`).
        settings: optimiser settings.
        n_classes: number of classes.
    """

    factory: Callable[[], nn.Module]
    defence: Defence
    settings: TrainSettings
    n_classes: int


def random_subsets(n_items: int, size: int, n_sets: int, rng: RngLike) -> np.ndarray:
    """``(n_sets, size)`` sorted index sets, each a uniform random subset of ``range(n_items)``."""
    if not 1 <= size <= n_items:
        raise ValueError(f"subset size must be in [1, {n_items}], got {size}")
    gen = make_rng(rng)
    keys = gen.random((n_sets, n_items))
    return np.sort(np.argsort(keys, axis=1)[:, :size], axis=1)


def train_family(
    kind: str,
    recipe: ShadowRecipe,
    n_models: int,
    challenge_x: torch.Tensor,
    challenge_y: torch.Tensor,
    population_x: torch.Tensor,
    population_y: torch.Tensor,
    rng: RngLike = None,
) -> ShadowFamily:
    """Train one shadow family (``kind``: ``"offline"`` or ``"online"``) of ``n_models``
    models and return their logits on the challenge set and on their own data."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown shadow family {kind!r}; allowed: {FAMILIES}")
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    n_challenge = len(challenge_y)
    sets_rng, train_rng = spawn(make_rng(rng), 2)
    if kind == "offline":
        x, y = population_x, population_y
        size = min(n_challenge // 2, len(y) // 2)
        if size < 1:
            raise ValueError(f"offline shadows need population data: {len(y)} samples")
    else:
        x, y = challenge_x, challenge_y
        size = n_challenge // 2
    sets = random_subsets(len(y), size, n_models, sets_rng)
    stack = recipe.defence.train_stack(
        recipe.factory, x, y, sets, recipe.n_classes, recipe.settings, train_rng
    )
    own_in = np.zeros((n_models, len(y)), dtype=bool)
    np.put_along_axis(own_in, sets, True, axis=1)
    own_logits = stack.logits(x).numpy()
    if kind == "offline":
        challenge_logits = stack.logits(challenge_x).numpy()
        challenge_in = np.zeros((n_models, n_challenge), dtype=bool)
    else:
        challenge_logits, challenge_in = own_logits, own_in
    return ShadowFamily(kind, challenge_logits, challenge_in, own_logits, y.numpy(), own_in)
