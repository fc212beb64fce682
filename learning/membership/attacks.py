"""Membership attacks that need no shadow model.

* ``"loss"`` - Yeom et al. (2018): members have low loss; score ``-CE(f(x), y)``.
* ``"confidence"`` - the model's top softmax probability ``max_c p_c`` (label-free, as
  in Salem et al.'s ML-Leaks; the true-class probability would rank exactly as the loss).
* ``"entropy"`` - Song & Mittal (2021): members get confident, low-entropy
  predictions; score ``-H(p)``.
* ``"modified_entropy"`` - Song & Mittal's label-aware
  ``Mentr = -(1 - p_y) log p_y - sum_{c != y} p_c log(1 - p_c)``; score ``-Mentr``.
* ``"label_only"`` - after Choquette-Choo et al. (2021), using only predicted labels:
  the fraction of ``label_only_queries`` noisy copies of ``x`` (Gaussian pixel noise of
  standard deviation ``label_only_noise``, clipped to [0, 1]) still classified as ``y``
  - members sit further from the decision boundary.
"""

from __future__ import annotations

import numpy as np
import torch

from learning.membership.base import (
    MembershipAttack,
    MembershipContext,
    log_softmax,
    register_membership_attack,
)


def _true_log_prob(context: MembershipContext) -> tuple[np.ndarray, np.ndarray]:
    logp = log_softmax(context.logits)
    y = context.y.numpy()
    return logp, logp[np.arange(len(y)), y]


@register_membership_attack
class LossAttack(MembershipAttack):
    name = "loss"

    def score(self, context: MembershipContext) -> np.ndarray:
        return _true_log_prob(context)[1]


@register_membership_attack
class ConfidenceAttack(MembershipAttack):
    name = "confidence"

    def score(self, context: MembershipContext) -> np.ndarray:
        return log_softmax(context.logits).max(axis=1)


@register_membership_attack
class EntropyAttack(MembershipAttack):
    name = "entropy"

    def score(self, context: MembershipContext) -> np.ndarray:
        logp = log_softmax(context.logits)
        return (np.exp(logp) * logp).sum(axis=1)


@register_membership_attack
class ModifiedEntropyAttack(MembershipAttack):
    name = "modified_entropy"

    def score(self, context: MembershipContext) -> np.ndarray:
        logp, logp_y = _true_log_prob(context)
        p = np.exp(logp)
        y = context.y.numpy()
        log1m = np.log(np.clip(1.0 - p, 1e-300, None))
        others = -(p * log1m)
        others[np.arange(len(y)), y] = 0.0
        mentr = -(1.0 - np.exp(logp_y)) * logp_y + others.sum(axis=1)
        return -mentr


@register_membership_attack
class LabelOnlyAttack(MembershipAttack):
    name = "label_only"

    def score(self, context: MembershipContext) -> np.ndarray:
        queries = int(context.options.get("label_only_queries", 64))
        sigma = float(context.options.get("label_only_noise", 0.15))
        gen = torch.Generator().manual_seed(int(context.rng.integers(2**62)))
        correct = torch.zeros(len(context.y))
        for _ in range(queries):
            noisy = (context.x + sigma * torch.randn(context.x.shape, generator=gen)).clamp(0, 1)
            correct += (context.query_labels(noisy) == context.y).float()
        return (correct / queries).numpy().astype(np.float64)
