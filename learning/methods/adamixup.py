"""AdaMixup as a method of the run (``[method] name = "adamixup"``).

Each member of a group sends its batch alone (orthogonal slots, like ``server_mixup``);
the server mixes what it received with AdaMixup's schedule
(:class:`learning.defences.mixup.AdaMixup`, read from arXiv 2501.02182's abstract): a
random member of the group is *dominant* with weight ``1 - lam(t)``, the others share
``lam(t)``; ``lam`` decays linearly from ``lam_start`` to ``lam_end`` over the first
``decay_rounds`` rounds (training progress counted in samples received, one round being
one pass over every user's data) and stays at ``lam_end`` after; the mixture is labelled
with the dominant member's label. In feature mode each member back-propagates its
weight times ``dL/dy``, as in ``server_mixup``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from learning.defences.mixup import AdaMixup
from learning.methods import METHODS
from learning.methods.base import MethodContext, Option, Reception, ServerView, StepOutcome
from learning.methods.oam import ServerMixup
from phy.rng import RngLike, make_rng


class AdaMixupMethod(ServerMixup):
    """AdaMixup at the server over orthogonal slots (see the module docstring)."""

    name = "adamixup"
    summary = "orthogonal slots, AdaMixup at the server (decaying weight, dominant label)"
    options = {
        "lam_start": Option(float, 0.5, "partner weight at the start", minimum=0, maximum=0.5),
        "lam_end": Option(float, 0.4, "partner weight after decay_rounds", minimum=0, maximum=0.5),
        "decay_rounds": Option(int, 60, "rounds over which the weight decays", minimum=1),
    }

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        options = {name: spec.default for name, spec in self.options.items()}
        options.update(context.options)
        self.schedule = AdaMixup(float(options["lam_start"]), float(options["lam_end"]))
        self.decay_samples = int(options["decay_rounds"]) * sum(len(u) for u in context.split.users)
        self.samples_seen = 0

    def coefficient(self) -> float:
        """The partner weight ``lam`` at the current training progress."""
        return self.schedule.coefficient(min(1.0, self.samples_seen / self.decay_samples))

    def server_step(self, receptions: Sequence[Reception], rng: RngLike) -> StepOutcome:
        outcome = StepOutcome()
        received = [r for r in receptions if r.estimate is not None]
        if not received:
            return outcome
        k = len(received)
        gen = make_rng(rng)
        lam = self.coefficient() if k > 1 else 0.0
        weights = np.full(k, lam / max(k - 1, 1))
        dominant = int(gen.integers(k))
        weights[dominant] = 1.0 - lam
        mixed = sum(
            w * np.asarray(r.estimate, float) for w, r in zip(weights, received, strict=True)
        )
        payload, _ = self.read(mixed)
        _, label = self.read(np.asarray(received[dominant].estimate, float))
        users = tuple(r.users[0] for r in received)
        scale = weights * np.array([r.effective_weights[0] for r in received])
        loss, feedback = self.train_on(payload, label, users, scale)
        self.samples_seen += k * self.batch
        outcome.losses.append(loss)
        if feedback is not None:
            outcome.feedback.append(feedback)
        outcome.views.append(ServerView(users, weights, payload.numpy(), label.numpy()))
        return outcome

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "samples_seen": self.samples_seen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.samples_seen = int(state["samples_seen"])


METHODS.add(AdaMixupMethod.name, AdaMixupMethod)
