"""The membership-inference attack interface.

Threat model. The attacker holds the *trained model* (black-box: it queries logits, or
only predicted labels for a label-only attack), a balanced challenge set of samples
(half the target's members, half non-members, which it cannot tell apart), and its own
*population* data from the same distribution, disjoint from the challenge set. It
knows the training recipe (architecture, optimiser settings, defence) and may train
shadow models with it (:mod:`learning.membership.shadows`):

* ``"offline"`` shadows train on random subsets of the population only: they never
  see a challenge sample, so never a member of the target;
* ``"online"`` shadows train on random halves of the challenge set (LiRA online): each
  challenge sample - member or not, chosen without knowing which - is IN about half of
  them. These are the only models that see target members, as the attacker's
  candidates, which is what the online attack is.

An attack (:class:`MembershipAttack`) declares the view it needs (:attr:`needs`:
``"trained_model"``) and the shadow families it uses, and maps a
:class:`MembershipContext` to one score per challenge sample (higher: more likely a
member). Attacks are selectable by name via :data:`MEMBERSHIP_ATTACKS` /
:func:`get_membership_attack`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from learning.membership.scoring import roc_figures
from phy.registry import Registry


def true_class_logit(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's logit-scaled confidence ``log(p_y / (1 - p_y))`` of the true class, computed
    stably as ``z_y - logsumexp_{c != y} z_c``. ``logits (..., N, C)``, ``labels (N,)``
    -> ``(..., N)``."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    picked = np.take_along_axis(z, np.broadcast_to(y[:, None], (*z.shape[:-1], 1)), axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, np.broadcast_to(y[:, None], (*z.shape[:-1], 1)), -np.inf, axis=-1)
    top = others.max(axis=-1, keepdims=True)
    lse = top[..., 0] + np.log(np.exp(others - top).sum(axis=-1))
    return picked - lse


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``(..., C)`` logits (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass
class ShadowFamily:
    """Shadow models of one family and their outputs.

    Attributes:
        kind: ``"offline"`` or ``"online"``.
        challenge_logits: ``(M, N, C)`` each shadow's logits on the challenge samples.
        challenge_in: ``(M, N)`` bool, challenge sample ``i`` in shadow ``m``'s training set.
        own_logits: ``(M, P, C)`` logits on the samples the family trained from
            (population for offline, challenge set for online).
        own_labels: ``(P,)`` labels of those samples.
        own_in: ``(M, P)`` bool, sample in shadow ``m``'s training set.
    """

    kind: str
    challenge_logits: np.ndarray
    challenge_in: np.ndarray
    own_logits: np.ndarray
    own_labels: np.ndarray
    own_in: np.ndarray

    @property
    def n_models(self) -> int:
        return int(self.challenge_logits.shape[0])

    def first(self, n_models: int) -> ShadowFamily:
        """The family of the first ``n_models`` shadows (shadows are independent draws,
        so any subset is a family of that size)."""
        if not 1 <= n_models <= self.n_models:
            raise ValueError(f"n_models must be in [1, {self.n_models}], got {n_models}")
        k = slice(0, n_models)
        return ShadowFamily(
            self.kind,
            self.challenge_logits[k],
            self.challenge_in[k],
            self.own_logits[k],
            self.own_labels,
            self.own_in[k],
        )


@dataclass
class MembershipContext:
    """What a membership attacker works with.

    Attributes:
        x: challenge inputs ``(N, ...)``; y: their labels ``(N,)`` int64.
        logits: the target's logits on ``x``, ``(N, C)`` (black-box query answers).
        query_labels: label-only oracle: inputs ``(B, ...)`` -> predicted labels ``(B,)``.
        shadows: shadow families by kind (only those some selected attack uses).
        rng: the attack's own random generator.
        options: attack settings by name (e.g. ``label_only_queries``).
    """

    x: torch.Tensor
    y: torch.Tensor
    logits: np.ndarray
    query_labels: Callable[[torch.Tensor], torch.Tensor]
    shadows: dict[str, ShadowFamily]
    rng: np.random.Generator
    options: dict[str, Any]

    def family(self, kind: str) -> ShadowFamily:
        if kind not in self.shadows:
            raise ValueError(f"this attack needs {kind!r} shadow models, none were trained")
        return self.shadows[kind]


class MembershipAttack(ABC):
    """A membership-inference attack on a trained model (see the module docstring)."""

    name: ClassVar[str]
    #: the view of the target the attack needs
    needs: ClassVar[str] = "trained_model"
    #: shadow-model families the attack uses (``"offline"``, ``"online"``)
    shadow_families: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def score(self, context: MembershipContext) -> np.ndarray:
        """One membership score per challenge sample, ``(N,)`` float, higher = member."""

    def evaluate(self, context: MembershipContext, is_member: np.ndarray) -> dict[str, float]:
        """:func:`~learning.membership.scoring.roc_figures` of :meth:`score`."""
        return roc_figures(self.score(context), is_member)


#: attack name -> class (filled by the attack modules on import)
MEMBERSHIP_ATTACKS: Registry[type[MembershipAttack]] = Registry("membership attack")


#: class decorator adding an attack to :data:`MEMBERSHIP_ATTACKS` under its ``name``
register_membership_attack = MEMBERSHIP_ATTACKS.add_named


def get_membership_attack(name: str, **kwargs: Any) -> MembershipAttack:
    """Instantiate the membership attack registered as ``name``
    (:class:`phy.registry.UnknownChoice` for an unknown name)."""
    import learning.membership  # noqa: F401  (registers the built-in attacks)

    return MEMBERSHIP_ATTACKS.create(name, **kwargs)
