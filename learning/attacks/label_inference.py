"""Label inference: from an observed mixture (payload, and the mixed label and weights as
the attacker would see them), infer the multiset of the ``K`` participants' labels.

A network trained on the auxiliary split (passed through the same observation process)
predicts, for every class ``c``, a distribution over how many participants ``n_c in
0..K`` hold that class. The decoded multiset is the most probable count vector with
``sum_c n_c = K`` (exact dynamic programme over classes). Participants of one mixture are
interchangeable for the attacker, so predictions are scored as multisets: per-user
accuracy is the best-assignment fraction of participants whose label is recovered,
exact-set accuracy the fraction of groups recovered completely. Chance levels come from
blind guesses that know the grouping scheme (multisets drawn from the auxiliary groups),
scored the same way in the same process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from learning.attacks.base import GroupTruth, MlpAttack, Observation, check_pair, register
from learning.metrics import exact_set_accuracy, per_user_accuracy, random_group_guess
from phy.rng import RngLike, make_rng, spawn


def label_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-group class counts ``(B, n_classes)`` of labels ``(K, B)``."""
    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 2 or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be (K, B) integers in 0..{n_classes - 1}")
    counts = np.zeros((y.shape[1], n_classes), dtype=np.int64)
    for row in y:
        np.add.at(counts, (np.arange(y.shape[1]), row), 1)
    return counts


def decode_counts(log_probs: np.ndarray) -> np.ndarray:
    """Most probable count vector under independent per-class count distributions.

    Args:
        log_probs: ``(B, C, K+1)`` log-probabilities of ``n_c = 0..K`` participants in class c.
    Returns:
        ``(B, C)`` int64 counts with every row summing to ``K`` and maximizing
        ``sum_c log_probs[b, c, n_c]``.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 3 or lp.shape[2] < 2 or not np.all(np.isfinite(lp)):
        raise ValueError(f"log_probs must be finite with shape (B, C, K+1), got {lp.shape}")
    b, c, k1 = lp.shape
    k = k1 - 1
    best = np.full((b, k1), -np.inf)
    best[:, 0] = 0.0
    choice = np.zeros((c, b, k1), dtype=np.int64)
    for ci in range(c):
        new = np.full((b, k1), -np.inf)
        for s in range(k1):
            for n in range(s + 1):
                cand = best[:, s - n] + lp[:, ci, n]
                better = cand > new[:, s]
                new[better, s] = cand[better]
                choice[ci, better, s] = n
        best = new
    counts = np.zeros((b, c), dtype=np.int64)
    remaining = np.full(b, k)
    for ci in range(c - 1, -1, -1):
        n = choice[ci, np.arange(b), remaining]
        counts[:, ci] = n
        remaining = remaining - n
    return counts


def counts_to_labels(counts: np.ndarray) -> np.ndarray:
    """Count vectors ``(B, C)`` (rows summing to K) -> sorted label multisets ``(K, B)``."""
    counts = np.asarray(counts, dtype=np.int64)
    rows = [np.repeat(np.arange(counts.shape[1]), r) for r in counts]
    if len({len(r) for r in rows}) != 1:
        raise ValueError("every row of counts must sum to the same K")
    return np.stack(rows, axis=1)


@register
class LabelInference(MlpAttack):
    """Count-per-class network on (payload, mixed label, weights).

    Args:
        use_payload: also feed the payload (else only the mixed label and weights).
        use_label: also feed the observed mixed label and weights (else the payload only).
        settings: the network's size and training (:class:`MlpAttack`: ``hidden``,
            ``depth``, ``epochs``, ``batch_size``, ``lr``, ``rng``).
    """

    name = "label_inference"
    success_figures = ("per_user_accuracy", "exact_set_accuracy")

    def __init__(self, use_payload: bool = True, use_label: bool = True, **settings: Any) -> None:
        super().__init__(**settings)
        if not (use_payload or use_label):
            raise ValueError("the attack needs the payload, the mixed label, or both")
        self.use_payload, self.use_label = bool(use_payload), bool(use_label)

    def _inputs(self, obs: Observation) -> np.ndarray:
        x = super()._inputs(obs)
        if not self.use_payload:
            if obs.mixed_label is None:
                raise ValueError("use_payload=False needs observations with a mixed label")
            x = x[:, obs.payload.shape[1] :]
        return x

    def fit(self, aux_observations: Observation, aux_truth: GroupTruth) -> LabelInference:
        """Train on auxiliary observations ``(B, D)`` and their labels ``(K, B)``."""
        check_pair(aux_observations, aux_truth)
        g_init, g_train = spawn(self._rng, 2)
        k, c = aux_truth.group_size, aux_truth.n_classes
        self.group_size, self.n_classes = k, c
        x = self._inputs(aux_observations)
        counts = torch.from_numpy(label_counts(aux_truth.labels, c))
        ce = nn.CrossEntropyLoss()

        def loss(m: nn.Module, xb: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
            return ce(m(xb).view(-1, k + 1), nb.reshape(-1))

        self._train_net(x, c * (k + 1), counts, loss, g_init, g_train)
        self._aux_groups = np.sort(aux_truth.labels.T, axis=1)
        return self

    @torch.no_grad()
    def attack(self, observations: Observation) -> np.ndarray:
        """Inferred label multisets ``(K, B)`` (each column sorted)."""
        logits = self.net(self._net_input(observations)).view(
            -1, self.n_classes, self.group_size + 1
        )
        return counts_to_labels(decode_counts(torch.log_softmax(logits, -1).numpy()))

    def evaluate(
        self, observations: Observation, truth: GroupTruth, rng: RngLike = None
    ) -> dict[str, float]:
        """``per_user_accuracy`` and ``exact_set_accuracy`` of the inferred multisets, each
        with ``<name>_chance`` from blind guesses drawn (by ``rng``) from the auxiliary
        groups' label multisets."""
        check_pair(observations, truth)
        pred = self.attack(observations).T
        true = truth.labels.T
        guess = random_group_guess(self._aux_groups, truth.n, rng=make_rng(rng))
        return {
            "per_user_accuracy": per_user_accuracy(pred, true),
            "per_user_accuracy_chance": per_user_accuracy(guess, true),
            "exact_set_accuracy": exact_set_accuracy(pred, true),
            "exact_set_accuracy_chance": exact_set_accuracy(guess, true),
        }
