"""The DiffSem comparison grid: each link trained once, then scored at every
(legitimate SNR, eavesdropper SNR) point by its legitimate accuracy and by the
eavesdropper's model inversion (:mod:`learning.diffsem.eavesdropper`).

Data: ``dataset`` (digits by default) split into the legitimate training set and the
attacker's auxiliary split (``auxiliary_fraction`` of each class, disjoint); the test
split holds the victims. The reference is the same encoder + head trained on clean
images with no channel at all (``learning.training.train_centralized``).

Figures per point: ``legit_accuracy`` (mean over ``repeats`` draws of the air),
``attacker_accuracy`` (task accuracy of the attacker's reconstructions) and its chance,
``gap_points = 100 (legit - attacker)``, ``psnr_db``, ``ssim`` and their chances,
``train_seconds``; DiffSem rows also carry the accuracy of each receiver pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from learning.data import load_dataset, split_users
from learning.diffsem.base import Link, air_pass, link_accuracy, make_link
from learning.diffsem.diffsem_link import DiffSemLink
from learning.diffsem.eavesdropper import attack_figures, train_evaluator
from learning.models import build_classifier
from learning.training import evaluate, train_centralized
from phy.rng import RngLike, derive_seed, make_rng, spawn

__all__ = ["METHODS", "GridSpec", "grid_summary", "run_grid"]

#: benchmark method name -> (link name, settings overrides)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain": ("plain", {}),
    "ibal": ("ibal", {}),
    "diffsem_no_label": ("diffsem", {"conditioning": "none"}),
    "diffsem": ("diffsem", {"conditioning": "label"}),
}


@dataclass(frozen=True)
class GridSpec:
    """The grid: legitimate SNRs (dB), eavesdropper offsets (dB above the legitimate
    SNR), data set, auxiliary fraction, repeats of the legitimate accuracy, seed."""

    legit_snr_db: tuple[float, ...] = (7.0, 11.0, 15.0, 19.0, 23.0)
    eve_offset_db: tuple[float, ...] = (0.0, 5.0)
    dataset: str = "digits"
    auxiliary_fraction: float = 0.3
    repeats: int = 3
    reference_epochs: int = 60
    seed: int = 0
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _reference_accuracy(train, test, feature_dim: int, arch: str, epochs: int, rng) -> float:
    g_init, g_train = spawn(rng, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(g_init))
        model = build_classifier(train.input_shape, train.n_classes, arch, feature_dim)
    train_centralized(model, train, epochs=epochs, lr=2e-3, rng=g_train)
    return evaluate(model, test)


@torch.no_grad()
def _pass_accuracies(link: DiffSemLink, test, snr_db: float, rng: RngLike) -> dict[str, float]:
    step = air_pass(link, test.x, snr_db, rng)
    passes = link.receiver.passes(step.received, step.channel_nsr)  # type: ignore[union-attr]
    return {k: float((v.argmax(1) == test.y).float().mean()) for k, v in passes.items()}


def run_grid(
    spec: GridSpec,
    methods: Sequence[str] = tuple(METHODS),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train each method once and score it over the grid.

    Returns ``{"reference_accuracy", "rows": [...], "links": {method: Link}}``; each row
    holds ``method``, ``legit_snr_db``, ``eve_snr_db`` and the figures of the module doc.
    """
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"method: unknown {name!r}; allowed: {sorted(METHODS)}")
    root = make_rng(spec.seed)
    g_split, g_ref, g_eval, g_links, g_points = spawn(root, 5)
    train, test = load_dataset(spec.dataset)
    split = split_users(train, 1, auxiliary_fraction=spec.auxiliary_fraction, rng=g_split)
    legit, aux = train.subset(split.users[0]), train.subset(split.auxiliary)
    log(f"data {spec.dataset}: {len(legit)} legitimate, {len(aux)} auxiliary, {len(test)} test")
    start = time.perf_counter()
    evaluator = train_evaluator(aux, g_eval)
    log(f"attacker's evaluation classifier trained in {time.perf_counter() - start:.1f} s")
    rows: list[dict[str, Any]] = []
    links: dict[str, Link] = {}
    link_seeds = spawn(g_links, len(METHODS))
    reference = None
    for name, seed in zip(METHODS, link_seeds, strict=True):
        if name not in methods:
            continue
        link_name, overrides = METHODS[name]
        settings = {**overrides, **dict(spec.settings.get(name, {}))}
        link = make_link(link_name, train.input_shape, train.n_classes, settings, rng=seed)
        if reference is None:
            s = link.settings
            reference = _reference_accuracy(
                legit, test, s.feature_dim, s.encoder, spec.reference_epochs, g_ref
            )
            log(f"reference (same classifier, no channel): accuracy {reference:.4f}")
        link.fit(legit)
        links[name] = link
        log(f"{name}: trained in {link.training_seconds:.1f} s")
        point_seeds = spawn(g_points.spawn(1)[0], len(spec.legit_snr_db))
        for snr, g in zip(spec.legit_snr_db, point_seeds, strict=True):
            g_acc, g_pass, *g_att = spawn(g, 2 + len(spec.eve_offset_db))
            acc = float(
                np.mean([link_accuracy(link, test, snr, r) for r in spawn(g_acc, spec.repeats)])
            )
            passes = _pass_accuracies(link, test, snr, g_pass) if link.name == "diffsem" else {}
            for offset, ga in zip(spec.eve_offset_db, g_att, strict=True):
                f = attack_figures(link, aux, test, snr, snr + offset, evaluator, rng=ga)
                row = {
                    "method": name,
                    "legit_snr_db": snr,
                    "eve_snr_db": snr + offset,
                    "legit_accuracy": acc,
                    "attacker_accuracy": f["task_accuracy"],
                    "attacker_accuracy_chance": f["task_accuracy_chance"],
                    "gap_points": 100.0 * (acc - f["task_accuracy"]),
                    "psnr_db": f["psnr_db"],
                    "psnr_db_chance": f["psnr_db_chance"],
                    "ssim": f["ssim"],
                    "ssim_chance": f["ssim_chance"],
                    "evaluator_accuracy": f["evaluator_accuracy"],
                    "train_seconds": link.training_seconds,
                    "passes": passes,
                }
                rows.append(row)
                log(
                    f"  {name:17s} legit {snr:4.0f} dB eve {snr + offset:4.0f} dB: legit "
                    f"{acc:.3f} attacker {row['attacker_accuracy']:.3f} gap "
                    f"{row['gap_points']:5.1f} pts"
                )
    return {"reference_accuracy": reference, "rows": rows, "links": links}


def grid_summary(result: Mapping[str, Any], method: str) -> dict[str, float]:
    """Means over the grid of ``method``'s rows: ``gap_points``, ``legit_accuracy``,
    ``attacker_accuracy``, and the legitimate accuracy at the highest legitimate SNR."""
    rows = [r for r in result["rows"] if r["method"] == method]
    if not rows:
        raise ValueError(f"no rows for method {method!r}")
    top = max(r["legit_snr_db"] for r in rows)
    return {
        "gap_points": float(np.mean([r["gap_points"] for r in rows])),
        "legit_accuracy": float(np.mean([r["legit_accuracy"] for r in rows])),
        "attacker_accuracy": float(np.mean([r["attacker_accuracy"] for r in rows])),
        "legit_accuracy_top_snr": float(
            np.mean([r["legit_accuracy"] for r in rows if r["legit_snr_db"] == top])
        ),
    }
