"""The membership audit: one function that takes a trained model, its members and
non-members, the attacker's population data and settings, and returns every selected
attack's figures (AUC, TPR at 0.1% / 1% FPR, each with its chance level), ROC curves
and a log-log ROC plot.

Also :func:`membership_split`, the seeded, disjoint, balanced split of one data set into
members, non-members and the attacker's population.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from learning.data import Dataset
from learning.membership.base import MembershipContext, ShadowFamily, get_membership_attack
from learning.membership.scoring import plot_roc, roc, roc_figures
from learning.membership.shadows import FAMILIES, ShadowRecipe, train_family
from phy.rng import RngLike, make_rng, spawn

#: every built-in attack, cheapest first
ALL_ATTACKS: tuple[str, ...] = (
    "loss",
    "confidence",
    "entropy",
    "modified_entropy",
    "label_only",
    "shokri",
    "lira_offline",
    "lira_online",
)


@dataclass(frozen=True)
class MembershipSplit:
    """Indices into one data set: target ``members`` and ``non_members`` (equal counts)
    and the attacker's ``population``; pairwise disjoint, each sorted."""

    members: np.ndarray
    non_members: np.ndarray
    population: np.ndarray


def membership_split(
    n_samples: int, n_members: int, n_population: int | None = None, rng: RngLike = None
) -> MembershipSplit:
    """Split ``range(n_samples)`` at random into ``n_members`` members, as many
    non-members, and a population of ``n_population`` (default: all the rest)."""
    rest = n_samples - 2 * n_members
    if n_members < 1 or rest < 0:
        raise ValueError(f"need 1 <= 2 * n_members <= n_samples, got {n_members} of {n_samples}")
    n_population = rest if n_population is None else n_population
    if not 0 <= n_population <= rest:
        raise ValueError(f"n_population must be in [0, {rest}], got {n_population}")
    order = make_rng(rng).permutation(n_samples)
    parts = np.split(order[: 2 * n_members + n_population], [n_members, 2 * n_members])
    return MembershipSplit(*(np.sort(p).astype(np.int64) for p in parts))


@dataclass(frozen=True)
class AuditSettings:
    """What the audit runs.

    Attributes:
        attacks: attack names (:data:`ALL_ATTACKS` by default).
        n_shadows: shadow models per family used by the selected attacks.
        label_only_queries, label_only_noise: the label-only attack's noisy queries per
            sample and their pixel noise standard deviation.
        lira_global_variance: LiRA's variance option (see :mod:`learning.membership.lira`).
    """

    attacks: tuple[str, ...] = ALL_ATTACKS
    n_shadows: int = 64
    label_only_queries: int = 64
    label_only_noise: float = 0.15
    lira_global_variance: bool | None = None

    def __post_init__(self) -> None:
        if not self.attacks:
            raise ValueError("select at least one membership attack")
        if self.n_shadows < 2:
            raise ValueError(f"n_shadows must be >= 2, got {self.n_shadows}")
        if self.label_only_queries < 1 or not self.label_only_noise >= 0:
            raise ValueError("label_only_queries must be >= 1 and label_only_noise >= 0")


@dataclass
class MembershipAudit:
    """Result of :func:`audit_membership`.

    Attributes:
        figures: attack -> its figures (:func:`~learning.membership.scoring.roc_figures`)
            plus ``seconds`` (scoring time; shadow training is in ``shadow_seconds``).
        curves: attack -> ``(fpr, tpr)``.
        best_attack: the attack with the highest AUC.
        n_members, n_non_members, n_shadows: sizes.
        shadow_seconds: training time per shadow family.
        plots: files written.
        shadows: the shadow families used, by kind (for re-scoring with fewer models).
    """

    figures: dict[str, dict[str, float]]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    n_members: int
    n_non_members: int
    n_shadows: int
    shadow_seconds: dict[str, float] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    shadows: dict[str, ShadowFamily] = field(default_factory=dict)

    @property
    def best_attack(self) -> str:
        return max(self.figures, key=lambda a: self.figures[a]["auc"])

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures: per attack, the strongest attack and its figures, sizes."""
        best = self.best_attack
        return {
            "attacks": self.figures,
            "best_attack": best,
            "best": self.figures[best],
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "n_shadows": self.n_shadows,
            "shadow_seconds": self.shadow_seconds,
        }


def model_query(model: nn.Module, batch_size: int = 2048) -> Callable[[torch.Tensor], torch.Tensor]:
    """Black-box logits of ``model`` (eval mode, no gradient): ``(B, ...)`` -> ``(B, C)``."""

    @torch.no_grad()
    def query(x: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        out = torch.cat([model(x[s : s + batch_size]) for s in range(0, len(x), batch_size)])
        model.train(was_training)
        return out

    return query


def audit_membership(
    model: nn.Module,
    members: Dataset,
    non_members: Dataset,
    population: Dataset | None,
    recipe: ShadowRecipe | None,
    settings: AuditSettings = AuditSettings(),
    rng: RngLike = None,
    plot_path: str | Path | None = None,
    progress: Callable[[str], Any] | None = None,
    shadows: dict[str, ShadowFamily] | None = None,
) -> MembershipAudit:
    """Attack ``model`` for the membership of ``members`` against ``non_members``.

    Args:
        model: the trained target (inputs -> logits).
        members, non_members: the challenge set, equal sizes, disjoint.
        population: the attacker's own data (offline shadows), disjoint from both.
        recipe: how the attacker trains shadow models (needed by shadow attacks).
        settings: attacks and their settings.
        rng: seeds shadow training and the attacks (same seed, same figures).
        plot_path: where to write the log-log ROC plot (None: no plot).
        progress: called with a line of text before each long step.
        shadows: shadow families already trained on this challenge set and population
            (by kind), used instead of training new ones (e.g. subsets of a larger
            family, :meth:`ShadowFamily.first`).
    """
    say = progress or (lambda _: None)
    if len(members) != len(non_members) or len(members) == 0:
        raise ValueError(
            f"members ({len(members)}) and non-members ({len(non_members)}) must be equal in "
            "number and non-empty"
        )
    attacks = {name: get_membership_attack(name) for name in settings.attacks}
    x = torch.cat([members.x, non_members.x])
    y = torch.cat([members.y, non_members.y])
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(non_members), bool)]
    query = model_query(model)
    shadow_rng, attack_rng = spawn(make_rng(rng), 2)
    family_rngs = dict(zip(FAMILIES, spawn(shadow_rng, len(FAMILIES)), strict=True))
    given = dict(shadows or {})
    shadows, shadow_seconds = {}, {}
    needed = {kind for attack in attacks.values() for kind in attack.shadow_families}
    for kind in FAMILIES:
        if kind not in needed:
            continue
        if kind in given:
            shadows[kind] = given[kind]
            continue
        if recipe is None:
            raise ValueError(f"the selected attacks need {kind} shadow models: give a recipe")
        if kind == "offline" and (population is None or len(population) < 2):
            raise ValueError("offline shadow models need the attacker's population data")
        say(f"training {settings.n_shadows} {kind} shadow models ...")
        start = time.perf_counter()
        pop_x = population.x if population is not None else x[:0]
        pop_y = population.y if population is not None else y[:0]
        shadows[kind] = train_family(
            kind, recipe, settings.n_shadows, x, y, pop_x, pop_y, family_rngs[kind]
        )
        shadow_seconds[kind] = time.perf_counter() - start
    context = MembershipContext(
        x=x,
        y=y,
        logits=query(x).numpy().astype(np.float64),
        query_labels=lambda inputs: query(inputs).argmax(dim=1),
        shadows=shadows,
        rng=attack_rng,
        options={
            "label_only_queries": settings.label_only_queries,
            "label_only_noise": settings.label_only_noise,
            "lira_global_variance": settings.lira_global_variance,
        },
    )
    attack_seed = int(attack_rng.integers(2**62))  # each attack's own stream, by name
    figures, curves = {}, {}
    for name, attack in attacks.items():
        say(f"membership attack {name} ...")
        start = time.perf_counter()
        context.rng = np.random.default_rng([attack_seed, zlib.crc32(name.encode())])
        scores = attack.score(context)
        figures[name] = {**roc_figures(scores, is_member), "seconds": time.perf_counter() - start}
        curves[name] = roc(scores, is_member)
    n_shadows = max((f.n_models for f in shadows.values()), default=0)
    result = MembershipAudit(
        figures, curves, len(members), len(non_members), n_shadows, shadow_seconds, [], shadows
    )
    if plot_path is not None:
        aucs = {a: f["auc"] for a, f in figures.items()}
        result.plots.append(plot_roc(curves, plot_path, aucs=aucs))
    return result
