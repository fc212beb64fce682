"""Model inversion: an inversion network, trained on the attacker's auxiliary split passed
through the same observation process, maps each observation (features, raw samples or an
over-the-air mixture of ``K`` users, plus the mixed label and weights when observed) back
to ``K`` input images, one per participant.

For ``K > 1`` the order of participants inside a mixture is not identifiable, so the
network is trained with a permutation-invariant loss: the MSE under the best matching of
its ``K`` outputs to the ``K`` true inputs (minimum over all permutations for ``K <= 6``,
Hungarian matching otherwise).

Scoring (:meth:`ModelInversion.evaluate`): reconstructions are matched to participants
by an optimal assignment (Hungarian, minimum pixel MSE against the true inputs — an
evaluation-side oracle that only removes the order ambiguity), then PSNR, SSIM and the
attacker's *task accuracy* are computed: an independent evaluation classifier, trained
on the auxiliary split only, labels each reconstruction and is scored against that
participant's true label (DiffSem's metric). The chance level of every figure comes from
the same pipeline fed with random auxiliary images instead of reconstructions.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from learning.attacks.base import (
    GroupTruth,
    MlpAttack,
    Observation,
    build_seeded,
    check_pair,
    register,
    train_model,
)
from learning.metrics import prior_chance, psnr, ssim, task_accuracy
from learning.models import build_classifier
from phy.rng import RngLike, make_rng, spawn

_MAX_EXHAUSTIVE_K = 6
#: The evaluation classifier's fixed recipe: Adam at this rate, these batches, L2 1e-4.
EVALUATOR_LR = 2e-3
EVALUATOR_BATCH_SIZE = 64


def train_evaluation_classifier(
    images: np.ndarray, labels: np.ndarray, n_classes: int, *, epochs: int = 60, rng: RngLike = None
) -> nn.Module:
    """Train the attacker's independent evaluation classifier (``build_classifier``, CNN).

    Args:
        images: ``(N, C, H, W)`` float images in [0, 1] (auxiliary data only).
        labels: ``(N,)`` int labels.
        n_classes: number of classes.
        epochs: passes over the images (batches of ``EVALUATOR_BATCH_SIZE``).
        rng: seeds the initial weights and the batch order.

    Returns:
        The trained classifier in eval mode (images -> logits).
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if x.ndim != 4 or y.shape != (x.shape[0],) or x.shape[0] < 2:
        raise ValueError(f"need images (N>=2, C, H, W) and labels (N,), got {x.shape}, {y.shape}")
    gen_model, gen_train = spawn(rng, 2)
    model = build_seeded(lambda: build_classifier(tuple(x.shape[1:]), n_classes), gen_model)
    ce = nn.CrossEntropyLoss()
    train_model(
        model,
        (x, y),
        lambda m, xb, yb: ce(m(xb), yb),
        epochs,
        EVALUATOR_BATCH_SIZE,
        EVALUATOR_LR,
        gen_train,
        weight_decay=1e-4,
    )
    return model


@torch.no_grad()
def classify(model: nn.Module, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class predictions ``(N,)`` of ``model`` for images ``(N, C, H, W)``."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    model.eval()
    out = [model(x[i : i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out).numpy().astype(np.int64)


def match_to_participants(candidates: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Reorder each group's ``K`` candidates to its ``K`` participants by the assignment of
    minimum total pixel MSE (Hungarian algorithm).

    Args:
        candidates, truth: ``(K, B, C, H, W)`` arrays.
    Returns:
        ``(K, B, C, H, W)``: ``out[k, b]`` is the candidate assigned to participant ``k``.
    """
    if candidates.shape != truth.shape:
        raise ValueError(f"shape mismatch {candidates.shape} vs {truth.shape}")
    k, b = truth.shape[:2]
    if k == 1:
        return candidates.copy()
    c = candidates.reshape(k, b, -1).transpose(1, 0, 2)  # (B, K, P)
    t = truth.reshape(k, b, -1).transpose(1, 0, 2)
    cost = ((c[:, :, None, :] - t[:, None, :, :]) ** 2).mean(-1)  # (B, cand, participant)
    out = np.empty_like(candidates)
    for j in range(b):
        rows, cols = linear_sum_assignment(cost[j])
        out[cols, j] = candidates[rows, j]
    return out


def _perm_invariant_mse(recon: torch.Tensor, target: torch.Tensor, perms: torch.Tensor | None):
    """Mean over the batch of the MSE under the best matching; recon/target ``(B, K, P)``."""
    cost = ((recon[:, :, None, :] - target[:, None, :, :]) ** 2).mean(-1)  # (B, K, K)
    k = recon.shape[1]
    if k == 1:
        return cost[:, 0, 0].mean()
    if perms is not None:
        rows = torch.arange(k)
        per_perm = cost[:, rows, perms].sum(-1)  # (B, P!)
        return per_perm.min(dim=1).values.mean() / k
    total = recon.new_zeros(())
    detached = cost.detach().numpy()
    for j in range(recon.shape[0]):
        r, c = linear_sum_assignment(detached[j])
        total = total + cost[j, r, c].sum()
    return total / (recon.shape[0] * k)


@register
class ModelInversion(MlpAttack):
    """Inversion network (MLP) from observations to ``K`` images.

    Args:
        use_label: feed the observed mixed label and weights to the network too.
        evaluator: a trained classifier (images -> logits) to score reconstructions; when
            None, :meth:`fit` trains one on the distinct auxiliary images.
        evaluator_epochs: training epochs of that classifier.
        settings: the network's size and training (:class:`MlpAttack`: ``hidden``,
            ``depth``, ``epochs``, ``batch_size``, ``lr``, ``rng``).
    """

    name = "model_inversion"
    success_figures = ("task_accuracy",)

    def __init__(
        self,
        use_label: bool = True,
        evaluator: nn.Module | None = None,
        evaluator_epochs: int = 60,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        self.use_label = bool(use_label)
        self.evaluator = evaluator
        self.evaluator_epochs = int(evaluator_epochs)

    def fit(self, aux_observations: Observation, aux_truth: GroupTruth) -> ModelInversion:
        """Train the inversion network (and the evaluation classifier if none was given)
        on auxiliary observations ``(B, D)`` and their truth ``(K, B, C, H, W)``."""
        check_pair(aux_observations, aux_truth)
        g_init, g_train, g_eval = spawn(self._rng, 3)
        k, b = aux_truth.group_size, aux_truth.n
        self.group_size, self.input_shape = k, aux_truth.input_shape
        self.n_classes = aux_truth.n_classes
        pixels = int(np.prod(self.input_shape))
        target = torch.from_numpy(aux_truth.inputs.reshape(k, b, pixels).transpose(1, 0, 2).copy())
        perms = (
            torch.tensor(list(itertools.permutations(range(k))))
            if 1 < k <= _MAX_EXHAUSTIVE_K
            else None
        )

        def loss(m: nn.Module, xb: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
            return _perm_invariant_mse(m(xb).view(-1, k, pixels), tb, perms)

        x = self._inputs(aux_observations)
        self._train_net(x, k * pixels, target, loss, g_init, g_train, output=nn.Sigmoid())
        # distinct auxiliary images: the evaluator's training set and the chance baseline
        flat = aux_truth.inputs.reshape(k * b, -1)
        _, first = np.unique(flat, axis=0, return_index=True)
        self._aux_images = flat[first].reshape(-1, *self.input_shape)
        self._aux_labels = aux_truth.labels.reshape(-1)[first]
        if self.evaluator is None:
            self.evaluator = train_evaluation_classifier(
                self._aux_images,
                self._aux_labels,
                self.n_classes,
                epochs=self.evaluator_epochs,
                rng=g_eval,
            )
        return self

    @torch.no_grad()
    def attack(self, observations: Observation) -> np.ndarray:
        """Reconstructions ``(K, B, C, H, W)`` in [0, 1], in the network's own order."""
        out = self.net(self._net_input(observations)).numpy()
        k, b = self.group_size, observations.n
        return out.reshape(b, k, *self.input_shape).transpose(1, 0, 2, 3, 4).copy()

    def _score(self, candidates: np.ndarray, truth: GroupTruth) -> dict[str, float]:
        matched = match_to_participants(candidates, truth.inputs)
        shape = (-1, *truth.input_shape)
        rec, ref = matched.reshape(shape), truth.inputs.reshape(shape)
        pred = classify(self.evaluator, rec)
        return {
            "task_accuracy": task_accuracy(pred, truth.labels.reshape(-1)),
            "psnr_db": float(np.mean(np.minimum(psnr(rec, ref), 100.0))),
            "ssim": float(np.mean(ssim(rec, ref))),
        }

    def evaluate(
        self, observations: Observation, truth: GroupTruth, rng: RngLike = None
    ) -> dict[str, float]:
        """Scores of the reconstructions of the victims' inputs.

        Returns a dict with ``task_accuracy``, ``psnr_db``, ``ssim`` (means over all
        participants, after optimal matching) and, for each, ``<name>_chance``: the same
        pipeline fed with random auxiliary images drawn by ``rng``. Also
        ``task_accuracy_prior_chance`` (``sum_c p_c^2`` of the auxiliary labels) and
        ``evaluator_accuracy`` (the evaluation classifier on the true victim inputs: the
        ceiling of the task accuracy).
        """
        check_pair(observations, truth)
        if truth.input_shape != self.input_shape:
            raise ValueError(f"truth images {truth.input_shape} != fitted {self.input_shape}")
        scores = self._score(self.attack(observations), truth)
        gen = make_rng(rng)
        pick = gen.integers(0, len(self._aux_images), size=truth.group_size * truth.n)
        blind = self._aux_images[pick].reshape(truth.inputs.shape)
        for key, value in self._score(blind, truth).items():
            scores[f"{key}_chance"] = value
        scores["task_accuracy_prior_chance"] = prior_chance(self._aux_labels, self.n_classes)
        scores["evaluator_accuracy"] = task_accuracy(
            classify(self.evaluator, truth.inputs.reshape(-1, *truth.input_shape)),
            truth.labels.reshape(-1),
        )
        return scores
