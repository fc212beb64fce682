"""LiRA, the likelihood-ratio attack of Carlini et al. ("Membership Inference Attacks
From First Principles", IEEE S&P 2022), offline and online.

For every challenge sample ``(x, y)`` and every shadow model, the statistic is the
logit-scaled confidence ``phi = log(p_y / (1 - p_y))``
(:func:`~learning.membership.base.true_class_logit`), which is close to Gaussian over
training runs. Per sample, Gaussians are fitted to the shadows that trained on it (IN)
and to those that did not (OUT):

* ``"lira_online"`` (online shadow family): score = ``log N(phi_target; mu_in, s_in) -
  log N(phi_target; mu_out, s_out)``, the log-likelihood ratio.
* ``"lira_offline"`` (offline family: all OUT, none ever saw a challenge sample): the
  one-sided test ``(phi_target - mu_out) / s_out``, which ranks exactly as the paper's
  ``Pr[Z < phi_target]``, ``Z ~ N(mu_out, s_out)``, without saturating at 1.

The standard deviations are per sample, or one global value per side (the paper's
"fixed variance", better with few shadow models) - ``lira_global_variance``: True,
False, or None to use the global one below 32 models per side.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from scipy.stats import norm

from learning.membership.base import (
    MembershipAttack,
    MembershipContext,
    register_membership_attack,
    true_class_logit,
)

#: models per side below which the default is a global variance
GLOBAL_VARIANCE_BELOW = 32


def _masked_stats(phi: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample mean, per-sample std and count of ``phi (M, N)`` over ``mask (M, N)``."""
    count = mask.sum(axis=0)
    safe = np.maximum(count, 1)
    mean = np.where(mask, phi, 0.0).sum(axis=0) / safe
    var = np.where(mask, (phi - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count - 1, 1)
    return mean, np.sqrt(var), count


def _global(std: np.ndarray, count: np.ndarray) -> float:
    ok = count > 1
    return float(np.sqrt(np.mean(std[ok] ** 2))) if ok.any() else 1.0


def _use_global(context: MembershipContext, count: np.ndarray) -> bool:
    option = context.options.get("lira_global_variance")
    if option is None:
        return bool(np.median(count) < GLOBAL_VARIANCE_BELOW)
    return bool(option)


def _phi(context: MembershipContext, family_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = context.y.numpy()
    return true_class_logit(context.logits, y), true_class_logit(family_logits, y)


class _Lira(MembershipAttack):
    """LiRA on the one shadow family it names: ``phi`` of the target and of the family's
    models on every challenge sample, compared by :meth:`test`."""

    def score(self, context: MembershipContext) -> np.ndarray:
        (kind,) = self.shadow_families
        family = context.family(kind)
        target, phi = _phi(context, family.challenge_logits)
        return self.test(context, target, phi, family.challenge_in)

    @abstractmethod
    def test(
        self, context: MembershipContext, target: np.ndarray, phi: np.ndarray, inside: np.ndarray
    ) -> np.ndarray:
        """Scores ``(N,)`` from the target's ``phi`` ``(N,)``, the shadows' ``phi``
        ``(M, N)`` and which shadows trained on each sample, ``inside`` ``(M, N)``."""


@register_membership_attack
class LiraOffline(_Lira):
    name = "lira_offline"
    shadow_families = ("offline",)

    def test(self, context, target, phi, inside):
        mean, std, count = _masked_stats(phi, ~inside)
        if _use_global(context, count):
            std = np.full_like(std, _global(std, count))
        return (target - mean) / (std + 1e-8)


@register_membership_attack
class LiraOnline(_Lira):
    name = "lira_online"
    shadow_families = ("online",)

    def test(self, context, target, phi, inside):
        mean_in, std_in, n_in = _masked_stats(phi, inside)
        mean_out, std_out, n_out = _masked_stats(phi, ~inside)
        if _use_global(context, np.minimum(n_in, n_out)):
            std_in = np.full_like(std_in, _global(std_in, n_in))
            std_out = np.full_like(std_out, _global(std_out, n_out))
        # a side without models falls back to the other side's fit (ratio 0 there)
        mean_in = np.where(n_in > 0, mean_in, mean_out)
        mean_out = np.where(n_out > 0, mean_out, mean_in)
        log_in = norm.logpdf(target, mean_in, std_in + 1e-8)
        log_out = norm.logpdf(target, mean_out, std_out + 1e-8)
        return log_in - log_out
