"""Gradient inversion on what the FedAvg server sees: DLG / iDLG / "Inverting Gradients".

Threat model. The server knows the global model it sent and observes one of three
*views* of a round in which each user took one local SGD step (FedSGD, the setting of the
attacks) on a batch of its private images: ``delta_k = -lr * grad_k``:

* ``"single_update"`` - one user's update, unprotected (no secure aggregation);
* ``"secure_sum"`` - the secure aggregate ``sum_k p_k delta_k`` of ``K`` users
  (:func:`learning.federated.secagg.secure_aggregate`: exact, nothing else revealed);
* ``"ota_sum"`` - the same sum received over the air (noisy, fading, power control:
  :class:`learning.federated.aggregation.OtaAggregator`).

Attack (Geiping et al., "Inverting Gradients", NeurIPS 2020, after DLG by Zhu et al. 2019):
dummy images ``x = sigmoid(z)`` (one per image that went into the observed update) are
optimised with Adam so that the gradient of the model's loss on them matches the observed
direction ``-delta`` in cosine similarity, plus ``tv_weight`` times their total variation.
The loss on the dummies is the FedAvg-weighted mean, so the sum of ``K`` users' one-step
updates is matched exactly by ``K * B`` dummies. Labels are inferred from the update, not
given: iDLG (Zhao et al. 2020) for one image (:func:`idlg_label`), and its extension to a
batch or a sum, the label counts read off the last layer's bias gradient
(:func:`infer_labels`).

Attribution. The attack on a sum returns ``K * B`` images with no owner: the secure sum
(with equal FedAvg weights) is the same whichever user held which image, so no
assignment of reconstructions to users beats a random one (:func:`attribute_at_random`);
a user's privacy is scored on the ``B`` reconstructions attributed to it, exactly as for
its own update's ``B`` reconstructions. The pooled figure (all ``K * B`` reconstructions
against all ``K * B`` images) measures what the sum reveals about the pool as a whole.

Scoring (:func:`score_reconstructions`, the way :mod:`learning.attacks.inversion` scores
model inversion): reconstructions are matched to the victims' images by the assignment of
minimum pixel MSE (Hungarian), then PSNR, SSIM and *task accuracy* - an independent
evaluation classifier trained on the attacker's auxiliary split labels each
reconstruction and is scored against the victim's true label. Chance: the same pipeline
fed with random auxiliary images instead of reconstructions; and a label-aware chance
(the auxiliary class-mean image of each label the attacker inferred), which separates
what the images reveal from what the labels alone give away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from learning.attacks.inversion import classify, match_to_participants
from learning.federated.updates import count_parameters
from learning.metrics import psnr, ssim, task_accuracy
from phy.rng import RngLike, make_rng, torch_generator

__all__ = [
    "InversionConfig",
    "attribute_at_random",
    "idlg_label",
    "infer_labels",
    "invert_update",
    "one_step_update",
    "score_reconstructions",
]


@dataclass
class InversionConfig:
    """Optimisation settings of the attack.

    Attributes:
        iterations: Adam steps (>= 1).
        lr: Adam learning rate on the logits ``z`` of the dummies.
        tv_weight: weight of the total-variation prior (>= 0).
        restarts: independent random starts; the one with the lowest loss is kept.
    """

    iterations: int = 300
    lr: float = 0.1
    tv_weight: float = 1e-3
    restarts: int = 1

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.restarts < 1 or not self.lr > 0 or self.tv_weight < 0:
            raise ValueError("iterations, restarts >= 1, lr > 0 and tv_weight >= 0 required")


def one_step_update(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 0.1
) -> torch.Tensor:
    """The update ``-lr * grad`` ``(P,)`` of one SGD step of ``model`` on ``(x, y)``
    (mean cross-entropy); ``model`` is not changed."""
    params = list(model.parameters())
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params)
    return -float(lr) * torch.cat([g.reshape(-1) for g in grads]).detach()


def idlg_label(model: nn.Module, update: torch.Tensor) -> int:
    """iDLG's label of a one-image update: the class whose bias gradient in the last
    layer is negative (``p_c - 1 < 0`` only for the true class), i.e. the largest entry of
    the update's last-layer bias (the update is ``-lr * grad``)."""
    last = list(model.parameters())[-1]
    if last.ndim != 1:
        raise ValueError("iDLG needs a model whose last parameter is the output bias")
    u = torch.as_tensor(update).reshape(-1)
    if u.numel() != count_parameters(model):
        raise ValueError(f"update of {u.numel()} entries for a model of {count_parameters(model)}")
    return int(torch.argmax(u[-last.numel() :]))


def infer_labels(
    model: nn.Module, update: torch.Tensor, n_images: int, lr: float, aux_images: np.ndarray
) -> np.ndarray:
    """Label multiset of the ``n_images`` behind an update, from the last-layer bias.

    For the mean cross-entropy over ``N`` images the output-bias gradient is
    ``g_c = mean_i p_ic - n_c / N``; with the observed ``g = -update / lr`` and the mean
    prediction ``p_c`` estimated on the attacker's auxiliary images, ``n_c = N (p_c - g_c)``,
    rounded to integers summing to ``N`` (largest remainders). For ``N = 1`` this is iDLG's
    label. Returns int64 ``(N,)`` labels, sorted.
    """
    last = list(model.parameters())[-1]
    u = torch.as_tensor(update, dtype=torch.float32).reshape(-1)
    if last.ndim != 1 or u.numel() != count_parameters(model):
        raise ValueError("need a model ending in an output bias and an update of its size")
    if n_images < 1 or not lr > 0:
        raise ValueError("n_images >= 1 and lr > 0 required")
    g = (-u[-last.numel() :] / float(lr)).double().numpy()
    with torch.no_grad():
        model.eval()
        p = torch.softmax(model(torch.as_tensor(aux_images, dtype=torch.float32)), 1)
    counts = np.clip(n_images * (p.mean(0).double().numpy() - g), 0.0, None)
    if counts.sum() <= 0:
        counts = np.ones_like(counts)
    counts = counts * n_images / counts.sum()
    whole = np.floor(counts).astype(np.int64)
    extra = np.argsort(-(counts - whole))[: n_images - int(whole.sum())]
    whole[extra] += 1
    return np.repeat(np.arange(len(whole)), whole).astype(np.int64)


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


def invert_update(
    model: nn.Module,
    update: torch.Tensor,
    labels: torch.Tensor,
    input_shape: tuple[int, int, int],
    weights: np.ndarray | None = None,
    config: InversionConfig | None = None,
    rng: RngLike = None,
) -> np.ndarray:
    """Reconstruct the images behind ``update`` (see the module docstring).

    Args:
        model: the global model the users started from (not changed).
        update: observed update ``(P,)`` (one user's, or an aggregate).
        labels: int64 ``(n,)``, one label per image to reconstruct.
        input_shape: ``(C, H, W)`` of one image.
        weights: optional ``(n,)`` weight of each image in the observed loss (FedAvg
            weights spread over each user's images); default equal.
        config: :class:`InversionConfig`.
        rng: seeds the random starts.

    Returns:
        float32 ``(n, C, H, W)`` reconstructions in [0, 1].
    """
    config = config or InversionConfig()
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    n = labels.numel()
    target = -torch.as_tensor(update, dtype=torch.float32).reshape(-1)
    if target.numel() != count_parameters(model) or not bool(torch.isfinite(target).all()):
        raise ValueError("update must be a finite vector of the model's parameter count")
    w = torch.full((n,), 1.0 / n) if weights is None else torch.as_tensor(weights).float()
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},)")
    params = list(model.parameters())
    model.eval()
    gen = torch_generator(make_rng(rng))
    best, best_loss = None, float("inf")
    for _ in range(config.restarts):
        z = torch.randn((n, *input_shape), generator=gen).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=config.lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=[int(config.iterations * f) for f in (0.375, 0.625, 0.875)], gamma=0.1
        )
        for _ in range(config.iterations):
            opt.zero_grad()
            x = torch.sigmoid(z)
            per = nn.functional.cross_entropy(model(x), labels, reduction="none")
            grads = torch.autograd.grad((per * w).sum(), params, create_graph=True)
            g = torch.cat([t.reshape(-1) for t in grads])
            loss = 1.0 - nn.functional.cosine_similarity(g, target, dim=0)
            loss = loss + config.tv_weight * _total_variation(x)
            loss.backward()
            opt.step()
            sched.step()
        if float(loss.detach()) < best_loss:
            best_loss, best = float(loss.detach()), torch.sigmoid(z).detach()
    return best.numpy().astype(np.float32)


def attribute_at_random(n_items: int, n_users: int, rng: RngLike = None) -> np.ndarray:
    """Split ``n_items = K * B`` unattributed reconstructions among ``n_users = K`` users at
    random: returns int ``(K, B)``, row ``k`` indexing the reconstructions given to user
    ``k`` (index the reconstructions and their inferred labels with it alike)."""
    if n_users < 1 or n_items % n_users:
        raise ValueError(f"{n_items} reconstructions cannot be split among {n_users} users")
    return make_rng(rng).permutation(n_items).reshape(n_users, n_items // n_users)


def score_reconstructions(
    evaluator: nn.Module,
    reconstructions: np.ndarray,
    truth: np.ndarray,
    labels: np.ndarray,
    aux_images: np.ndarray,
    rng: RngLike = None,
    aux_labels: np.ndarray | None = None,
    guess_labels: np.ndarray | None = None,
    draws: int = 10,
) -> dict[str, float]:
    """Score reconstructions of ``n`` victim images (see the module docstring).

    Args:
        evaluator: independent classifier (images -> logits) trained on auxiliary data.
        reconstructions, truth: ``(n, C, H, W)`` in [0, 1] (any order of reconstructions).
        labels: ``(n,)`` the victims' true labels.
        aux_images: ``(M, C, H, W)`` the attacker's auxiliary images (chance baseline).
        rng: draws the chance baselines' images.
        aux_labels, guess_labels: optional ``(M,)`` labels of ``aux_images`` and ``(n,)``
            labels the attacker believes the victims hold (e.g. :func:`infer_labels`);
            with both, a second, label-aware chance level is computed from the auxiliary
            class-mean image of each of those labels (the best guess under pixel MSE of
            an attacker that knows only the labels), and a third, label-matched chance
            from random auxiliary images of those labels (the blind chance given the
            labels: what the reconstructions' task accuracy owes to the labels alone).
        draws: random draws averaged for each chance level.

    Returns:
        ``task_accuracy``, ``psnr_db``, ``ssim``, each ``<name>_chance`` and, when
        labels are given for it, ``<name>_label_chance`` and ``<name>_label_matched_chance``.
    """
    rec = np.asarray(reconstructions, dtype=np.float32)
    ref = np.asarray(truth, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    aux = np.asarray(aux_images, dtype=np.float32)
    if rec.shape != ref.shape or rec.ndim != 4 or y.shape != (rec.shape[0],):
        raise ValueError(f"shapes {rec.shape}, {ref.shape}, {y.shape} do not match")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")

    def figures(candidates: np.ndarray) -> dict[str, float]:
        matched = match_to_participants(candidates[:, None], ref[:, None])[:, 0]
        return {
            "task_accuracy": task_accuracy(classify(evaluator, matched), y),
            "psnr_db": float(np.mean(np.minimum(psnr(matched, ref), 100.0))),
            "ssim": float(np.mean(ssim(matched, ref))),
        }

    def averaged(pick) -> dict[str, float]:
        runs = [figures(aux[pick()]) for _ in range(draws)]
        return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}

    gen = make_rng(rng)
    scores = figures(rec)
    blind = averaged(lambda: gen.integers(0, len(aux), size=len(rec)))
    scores.update({f"{k}_chance": v for k, v in blind.items()})
    if aux_labels is not None and guess_labels is not None:
        aux_y = np.asarray(aux_labels)
        means = {}
        for c in set(np.asarray(guess_labels).tolist()):
            if not np.any(aux_y == c):
                raise ValueError(f"no auxiliary image of the guessed label {c}")
            means[c] = aux[aux_y == c].mean(axis=0)
        prototypes = np.stack([means[c] for c in np.asarray(guess_labels).tolist()])
        scores.update({f"{k}_label_chance": v for k, v in figures(prototypes).items()})
        pools = {c: np.flatnonzero(aux_y == c) for c in means}
        guesses = np.asarray(guess_labels).tolist()
        matched = averaged(lambda: np.array([gen.choice(pools[c]) for c in guesses]))
        scores.update({f"{k}_label_matched_chance": v for k, v in matched.items()})
    return scores
