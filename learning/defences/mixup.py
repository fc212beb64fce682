"""Mixup defences: no defence, static mixup, and AdaMixup.

* ``"none"`` - plain training on the samples with their one-hot labels.
* ``"mixup"`` - static mixup (Zhang et al. 2018), generalised to ``k`` samples: each
  training sample is mixed with ``k - 1`` partners drawn from the same model's batch
  (random permutations), weights ``~ Dirichlet(alpha 1_k)`` per sample (``k = 2``:
  ``lambda ~ Beta(alpha, alpha)``), or equal weights ``1/k`` when ``alpha`` is None; the
  label is mixed with the same weights. ``k = group_size, alpha = None`` is the
  attacker's model of over-the-air mixup with equal target weights.
* ``"adamixup"`` - AdaMixup (Chen et al., "AdaMixup: A Dynamic Defense Framework for
  Membership Inference Attack Mitigation", arXiv 2501.02182). Read from the paper's
  abstract and public summaries (its full text is not reachable here): mixup whose
  strength adapts during training - a *linearly decaying mixing coefficient* - and
  labels *allocated from the dominant sample*. Our reading, written down as the
  knobs: at training progress ``p`` in [0, 1) the partner's weight is
  ``lam(p) = lam_start + (lam_end - lam_start) * p`` (clipped to [0, 0.5], so the
  first sample dominates), the input is ``(1 - lam) x_i + lam x_j`` with ``j`` a random
  partner from the batch, and the label is ``onehot(y_i)`` (the dominant sample's hard
  label; ``dominant_label = False`` mixes the labels instead). ``jitter`` > 0 draws each
  sample's weight uniformly in ``[(1 - jitter) lam(p), lam(p)]`` instead of using
  ``lam(p)`` itself.
"""

from __future__ import annotations

import numpy as np
import torch

from learning.defences.base import Defence, register_defence


def _numpy_generator(gen: torch.Generator) -> np.random.Generator:
    """A numpy Generator drawn from the torch generator of the training loop."""
    return np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))


def _partners(shape: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """``(M, B)`` per-model random permutations of the batch positions."""
    return torch.argsort(torch.rand(shape, generator=gen), dim=1)


def _take(t: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``t (M, B, ...)`` reordered along B by ``perm (M, B)``."""
    index = perm.reshape(*perm.shape, *([1] * (t.ndim - 2))).expand_as(t)
    return t.gather(1, index)


def _weighted(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``t (M, B, ...)`` scaled per sample by ``w (M, B)``."""
    return t * w.reshape(*w.shape, *([1] * (t.ndim - 2)))


@register_defence
class NoDefence(Defence):
    """Plain training (the undefended baseline)."""

    name = "none"


@register_defence
class StaticMixup(Defence):
    """Static ``k``-sample mixup; see the module docstring.

    Args:
        alpha: Dirichlet / Beta concentration (> 0), or None for equal weights ``1/k``.
        k: samples per mixture (>= 2).
    """

    name = "mixup"
    knobs = ("alpha", "k")

    def __init__(self, alpha: float | None = 1.0, k: int = 2) -> None:
        if alpha is not None and (not np.isfinite(alpha) or alpha <= 0):
            raise ValueError(f"alpha must be finite and > 0 (or None), got {alpha}")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
            raise ValueError(f"k must be an int >= 2, got {k!r}")
        self.alpha = None if alpha is None else float(alpha)
        self.k = int(k)

    def transform_batch(self, x, y, progress, gen):
        m, b = y.shape[:2]
        if self.alpha is None:
            w = torch.full((m, b, self.k), 1.0 / self.k)
        else:
            draws = _numpy_generator(gen).dirichlet(np.full(self.k, self.alpha), size=(m, b))
            w = torch.from_numpy(draws.astype(np.float32))
        x_mix, y_mix = _weighted(x, w[..., 0]), _weighted(y, w[..., 0])
        for j in range(1, self.k):
            perm = _partners((m, b), gen)
            x_mix = x_mix + _weighted(_take(x, perm), w[..., j])
            y_mix = y_mix + _weighted(_take(y, perm), w[..., j])
        return x_mix, y_mix


@register_defence
class AdaMixup(Defence):
    """AdaMixup as read from arXiv 2501.02182 (see the module docstring).

    Args:
        lam_start, lam_end: the partner's weight at the start and the end of training,
            each in [0, 0.5] (linear in between).
        dominant_label: label each mixture with its dominant sample's hard label (True)
            or with the mixed soft label (False).
        jitter: in [0, 1]; 0 uses ``lam(p)`` for every sample.
    """

    name = "adamixup"
    knobs = ("lam_start", "lam_end", "dominant_label", "jitter")

    def __init__(
        self,
        lam_start: float = 0.5,
        lam_end: float = 0.2,
        dominant_label: bool = True,
        jitter: float = 0.0,
    ) -> None:
        for label, value in (("lam_start", lam_start), ("lam_end", lam_end)):
            if not 0.0 <= value <= 0.5:
                raise ValueError(f"{label} must be in [0, 0.5], got {value}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        self.lam_start, self.lam_end = float(lam_start), float(lam_end)
        self.dominant_label = bool(dominant_label)
        self.jitter = float(jitter)

    def coefficient(self, progress: float) -> float:
        """The partner's weight ``lam(p)`` at training progress ``p`` in [0, 1]."""
        lam = self.lam_start + (self.lam_end - self.lam_start) * float(progress)
        return float(np.clip(lam, 0.0, 0.5))

    def transform_batch(self, x, y, progress, gen):
        m, b = y.shape[:2]
        lam = torch.full((m, b), self.coefficient(progress))
        if self.jitter > 0:
            lam = lam * (1.0 - self.jitter * torch.rand((m, b), generator=gen))
        perm = _partners((m, b), gen)
        x_mix = _weighted(x, 1.0 - lam) + _weighted(_take(x, perm), lam)
        if self.dominant_label:
            return x_mix, y
        return x_mix, _weighted(y, 1.0 - lam) + _weighted(_take(y, perm), lam)
