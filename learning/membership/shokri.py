"""The shadow-model attack of Shokri et al. ("Membership Inference Attacks Against
Machine Learning Models", IEEE S&P 2017).

Each offline shadow model (trained on population data only) is queried on its own
training samples (labelled IN) and on as many population samples it did not train on
(OUT). An attack classifier - scikit-learn's histogram gradient boosting, one model
with the true label as a categorical input rather than Shokri's one model per class -
learns IN vs OUT from the shadow's prediction vector; it then scores the target's
prediction on each challenge sample (probability of IN). Features per prediction: the
log-probabilities sorted in decreasing order, the true class's log-probability and
logit-scaled confidence, whether the prediction is right, and the label.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from learning.membership.base import (
    MembershipAttack,
    MembershipContext,
    log_softmax,
    register_membership_attack,
    true_class_logit,
)


def prediction_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Attack-model features of predictions ``(N, C)`` with true labels ``(N,)``:
    ``(N, C + 4)`` float."""
    logp = log_softmax(logits)
    y = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(y))
    return np.column_stack(
        [
            -np.sort(-logp, axis=1),
            logp[rows, y],
            true_class_logit(logits, y),
            (logp.argmax(axis=1) == y).astype(np.float64),
            y.astype(np.float64),
        ]
    )


@register_membership_attack
class ShokriShadow(MembershipAttack):
    name = "shokri"
    shadow_families = ("offline",)

    def score(self, context: MembershipContext) -> np.ndarray:
        family = context.family("offline")
        n_classes = context.logits.shape[1]
        features, targets = [], []
        for m in range(family.n_models):
            inside = np.flatnonzero(family.own_in[m])
            outside = np.flatnonzero(~family.own_in[m])
            k = min(len(inside), len(outside))
            if k == 0:
                continue
            for rows, label in (
                (context.rng.choice(inside, k, replace=False), 1),
                (context.rng.choice(outside, k, replace=False), 0),
            ):
                features.append(
                    prediction_features(family.own_logits[m, rows], family.own_labels[rows])
                )
                targets.append(np.full(k, label))
        if not features:
            raise ValueError("Shokri's attack needs shadow models with IN and OUT samples")
        classifier = HistGradientBoostingClassifier(
            max_iter=200,
            categorical_features=[n_classes + 3],
            random_state=int(context.rng.integers(2**31 - 1)),
        )
        classifier.fit(np.concatenate(features), np.concatenate(targets))
        query = prediction_features(context.logits, context.y.numpy())
        return classifier.predict_proba(query)[:, 1]
