"""Membership inference on the model the server ends a run with (``attacks.membership``).

The question most privacy audits ask first: holding the trained model, can someone
tell whether a given sample was in a user's private data? The target is the server's
final classifier (raw mode: the whole model, images -> logits). The challenge set is
balanced and seeded: ``attacks.membership_samples`` (at most) of the users' private
samples (members) and as many test samples (never trained on: non-members). The
attacker's population is the auxiliary split (public, disjoint from both). Its shadow
models imitate the run's training as it knows it: the experiment's classifier
architecture, ``experiment.rounds`` epochs, the batch size and learning rate, and the
method's mixing (:func:`shadow_defence`: ``users.group_size``-sample mixup at equal
weights for over-the-air mixup, without the channel); ``attacks.membership_shadows``
per family. Every attack of
:mod:`learning.membership` is run (:func:`learning.membership.audit_membership`);
figures come with their chance levels; plots ``membership_roc.png`` (log-log ROC) and
``membership_privacy_accuracy.png`` go to the run's plot directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from learning.data import Dataset, UserSplit
from learning.defences import AdaMixup, Defence, NoDefence, StaticMixup, TrainSettings
from learning.membership import (
    AuditSettings,
    ShadowRecipe,
    audit_membership,
    plot_privacy_accuracy,
)
from learning.methods.base import named_seed
from learning.models import build_classifier
from learning.training import evaluate
from orchestrator.config import ExperimentConfig
from phy.rng import spawn


def challenge_sets(
    train: Dataset, test: Dataset, split: UserSplit, n_max: int, rng: np.random.Generator
) -> tuple[Dataset, Dataset]:
    """Balanced members (users' samples) and non-members (test samples), ``min(n_max,
    users' samples, test samples)`` of each, drawn without replacement."""
    pool = np.concatenate(split.users)
    n = min(n_max, len(pool), len(test))
    members = train.subset(np.sort(rng.choice(pool, n, replace=False)))
    non_members = test.subset(np.sort(rng.choice(len(test), n, replace=False)))
    return members, non_members


def shadow_defence(config: ExperimentConfig) -> Defence:
    """How the attacker imitates the run's training: AdaMixup's schedule for the
    ``adamixup`` method, plain training for ``orthogonal``, ``fedavg`` or groups of
    one, else
    ``users.group_size``-sample mixup at equal weights."""
    method = getattr(config, "method", None)
    name = getattr(method, "name", "oam")
    k = config.users.group_size
    if name == "adamixup":
        return AdaMixup(method.lam_start, method.lam_end)
    if name in ("orthogonal", "fedavg") or k < 2:  # no mixing of samples
        return NoDefence()
    return StaticMixup(alpha=None, k=k)


def membership_figures(
    config: ExperimentConfig,
    data: Any,
    server_model: nn.Module,
    plots_dir: Path,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Audit the server's final model (raw mode: an object whose ``classifier`` maps
    images to logits, or such a module itself) on the run's ``data`` (its ``train``,
    ``test`` and ``split``: :class:`orchestrator.experiment.ExperimentData`). Returns
    the audit summary (:meth:`learning.membership.MembershipAudit.summary`) plus
    ``accuracy`` (test), ``shadow_recipe`` and ``plots``."""
    model = getattr(server_model, "classifier", server_model)
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"attacks.membership: method {getattr(config, 'method', None)!r} leaves the "
            "server no images -> logits model to attack"
        )
    train, test, split = data.train, data.test, data.split
    rng = np.random.default_rng(named_seed(config.experiment.seed, "attacks", "membership"))
    split_rng, audit_rng = spawn(rng, 2)
    members, non_members = challenge_sets(
        train, test, split, config.attacks.membership_samples, split_rng
    )
    recipe = ShadowRecipe(
        factory=lambda: build_classifier(
            train.input_shape, train.n_classes, config.model.arch, config.model.feature_dim
        ),
        defence=shadow_defence(config),
        settings=TrainSettings(
            epochs=config.experiment.rounds,
            batch_size=config.model.batch_size,
            lr=config.model.learning_rate,
        ),
        n_classes=train.n_classes,
    )
    audit = audit_membership(
        model,
        members,
        non_members,
        train.subset(split.auxiliary),
        recipe,
        AuditSettings(n_shadows=config.attacks.membership_shadows),
        rng=audit_rng,
        plot_path=Path(plots_dir) / "membership_roc.png",
        progress=progress,
    )
    accuracy = evaluate(model, test)
    best = audit.figures[audit.best_attack]
    audit.plots.append(
        plot_privacy_accuracy(
            {"server model": (accuracy, best)},
            Path(plots_dir) / "membership_privacy_accuracy.png",
        )
    )
    return {
        **audit.summary(),
        "accuracy": accuracy,
        "shadow_recipe": recipe.defence.describe(),
        "plots": [p.name for p in audit.plots],
    }


def membership_headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The strongest attack's figures for the run's headline."""
    best = figures["best"]
    return {
        "membership_best_attack": figures["best_attack"],
        "membership_auc": best["auc"],
        "membership_tpr_at_0_1pct_fpr": best["tpr_at_0_1pct_fpr"],
        "membership_tpr_at_1pct_fpr": best["tpr_at_1pct_fpr"],
    }


def membership_table(figures: dict[str, Any] | None) -> list[str]:
    """Lines printed at the end of a run: each attack's AUC and TPR at 0.1% / 1% FPR,
    each with its chance level (none without a membership audit)."""
    if not figures:
        return []
    lines = [
        f"membership inference on the final model ({figures['n_members']} members vs "
        f"{figures['n_non_members']} non-members, {figures['n_shadows']} shadow models per family)",
        f"{'attack':18s} {'AUC (chance)':>14s} {'TPR@0.1%FPR (chance)':>21s} "
        f"{'TPR@1%FPR (chance)':>19s}",
    ]
    for attack, f in figures["attacks"].items():
        lines.append(
            f"{attack:18s} {f['auc']:6.3f} ({f['auc_chance']:.3f}) "
            f"{f['tpr_at_0_1pct_fpr']:12.3f} ({f['tpr_at_0_1pct_fpr_chance']:.3f}) "
            f"{f['tpr_at_1pct_fpr']:10.3f} ({f['tpr_at_1pct_fpr_chance']:.3f})"
        )
    return lines
