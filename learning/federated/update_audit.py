"""Gradient inversion on the model updates a party actually saw, scored per victim user.

One *view* (:class:`UpdateVictims`) is what the server (or an eavesdropper) saw of one
aggregation: one user's update (``"single_update"``), the secure mean of ``K`` users'
updates (``"secure_sum"``) or the mean received over the air (``"ota_sum"``), with the
global parameters the users started from and, for scoring only, the images behind each
user's update (from the nodes' local audit, never sent).

Local training makes ``s`` SGD steps of ``B`` images at rate ``lr`` (``S = s B`` images
per user), so to first order an update is ``-lr s`` times the mean gradient over its
``S`` images, and a mean of ``K`` updates is ``-lr s`` times the mean gradient over all
``K S`` images: FedSGD at rate ``lr s`` (exact for ``s = 1``). The attack
(:mod:`learning.federated.gradient_inversion`) infers the label multiset of the ``n``
images from the output-bias entries (:func:`~learning.federated.gradient_inversion.infer_labels`)
and reconstructs ``n`` images by cosine gradient matching
(:func:`~learning.federated.gradient_inversion.invert_update`). A sum carries no owner,
so each user gets a random share of the reconstructions of the sizes of its own batch
(no assignment beats a random one, see the gradient-inversion module). Each user's share
is scored against its own images
(:func:`~learning.federated.gradient_inversion.score_reconstructions`: task accuracy of
an independent evaluator trained on the auxiliary split, PSNR, SSIM), each figure beside
its chance level (random auxiliary images) and the label-aware chance (auxiliary class
means of the inferred labels: what the labels alone give away).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn

from learning.federated.gradient_inversion import (
    InversionConfig,
    infer_labels,
    invert_update,
    score_reconstructions,
)
from learning.federated.updates import set_flat
from phy.rng import RngLike, make_rng, spawn

__all__ = ["UpdateVictims", "invert_view", "mean_scores", "reconstruct", "score_per_user"]

#: the figures reported per view, each with ``_chance`` and ``_label_chance``
FIGURES = ("task_accuracy", "psnr_db", "ssim")


@dataclass(frozen=True)
class UpdateVictims:
    """One view of an aggregation and its ground truth.

    Attributes:
        kind: ``"single_update"``, ``"secure_sum"`` or ``"ota_sum"``.
        update: float ``(P,)``, the update seen (the mean update for a sum).
        model: float ``(P,)``, the global parameters the users started from.
        images: per user, float ``(S_k, C, H, W)`` in [0, 1], the images behind its update.
        labels: per user, int ``(S_k,)``.
    """

    kind: str
    update: np.ndarray
    model: np.ndarray
    images: Sequence[np.ndarray]
    labels: Sequence[np.ndarray]

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels) or not self.images:
            raise ValueError("need the images and labels of at least one user")
        if any(
            len(x) != len(y) or len(x) == 0 for x, y in zip(self.images, self.labels, strict=True)
        ):
            raise ValueError("each user needs as many labels as images, at least one")
        if np.shape(self.update) != np.shape(self.model) or np.ndim(self.update) != 1:
            raise ValueError("update and model must be vectors of the same length")


def reconstruct(
    template: nn.Module,
    victims: UpdateVictims,
    lr: float,
    aux_images: np.ndarray,
    config: InversionConfig | None = None,
    rng: RngLike = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The attack on one view: the inferred labels ``(n,)`` of the ``n`` images behind it
    and their reconstructions ``(n, C, H, W)`` (``template``: a model of the run's
    architecture, its parameters replaced by ``victims.model`` in a copy; ``lr``: the
    effective FedSGD rate; ``aux_images``: the attacker's auxiliary images)."""
    model = copy.deepcopy(template)
    set_flat(model, torch.as_tensor(np.asarray(victims.model), dtype=torch.float32))
    update = torch.as_tensor(np.asarray(victims.update), dtype=torch.float32)
    n = int(sum(len(x) for x in victims.images))
    aux = np.asarray(aux_images, dtype=np.float32)
    labels = infer_labels(model, update, n, lr, aux)
    shape = tuple(int(s) for s in aux.shape[1:])
    return labels, invert_update(model, update, labels, shape, config=config, rng=rng)


def score_per_user(
    victims: UpdateVictims,
    labels: np.ndarray,
    rec: np.ndarray,
    evaluator: nn.Module,
    aux_images: np.ndarray,
    aux_labels: np.ndarray,
    rng: RngLike = None,
) -> list[dict[str, float]]:
    """Each user's random share of the reconstructions (of its own batch's size; all of
    them for one user) scored against its images (see the module docstring)."""
    g_owner, g_score = spawn(rng, 2)
    sizes = [len(x) for x in victims.images]
    owners = np.split(make_rng(g_owner).permutation(int(sum(sizes))), np.cumsum(sizes)[:-1])
    aux = np.asarray(aux_images, dtype=np.float32)
    return [
        score_reconstructions(
            evaluator,
            rec[own],
            np.asarray(x, np.float32),
            np.asarray(y, np.int64),
            aux,
            g_score,
            np.asarray(aux_labels),
            labels[own],
        )
        for own, x, y in zip(owners, victims.images, victims.labels, strict=True)
    ]


def invert_view(
    template: nn.Module,
    victims: UpdateVictims,
    lr: float,
    evaluator: nn.Module,
    aux_images: np.ndarray,
    aux_labels: np.ndarray,
    config: InversionConfig | None = None,
    rng: RngLike = None,
) -> list[dict[str, float]]:
    """Invert one view and score it per user (see the module docstring).

    Args:
        template: a model of the run's architecture (its parameters are replaced by
            ``victims.model`` in a copy; not modified).
        victims: the view and its ground truth.
        lr: the effective FedSGD rate ``local_lr * local_steps``.
        evaluator: the attacker's independent classifier (images -> logits).
        aux_images, aux_labels: the attacker's auxiliary data ``(M, C, H, W)``, ``(M,)``.
        config: the attack's optimisation settings.
        rng: seeds the inversion, the attribution and the chance draws.

    Returns:
        One dict per user: ``task_accuracy``, ``psnr_db``, ``ssim``, each with
        ``_chance``, ``_label_chance`` and ``_label_matched_chance`` (see
        :func:`~learning.federated.gradient_inversion.score_reconstructions`).
    """
    g_attack, g_score = spawn(rng, 2)
    labels, rec = reconstruct(template, victims, lr, aux_images, config, g_attack)
    return score_per_user(victims, labels, rec, evaluator, aux_images, aux_labels, g_score)


def mean_scores(scores: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each figure over per-user scores, with ``n_users`` and, for each success
    figure, ``<figure>_ci95``: the half-width of the 95% Student-t interval of the mean
    (NaN for one user). The users of one sum share its reconstructions, so their scores
    are not independent and the interval is then optimistic."""
    if not scores:
        return {"n_users": 0}
    out: dict[str, float] = {"n_users": len(scores)}
    for key in scores[0]:
        values = np.array([s[key] for s in scores], dtype=float)
        out[key] = float(values.mean())
        if key in FIGURES:
            half = (
                float(
                    stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
                )
                if len(values) > 1
                else float("nan")
            )
            out[f"{key}_ci95"] = half
    return out
