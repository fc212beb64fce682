"""Federated averaging as a :class:`~learning.methods.base.Method` (``[method] name =
"fedavg"``), so the in-process loop (:func:`learning.methods.loop.run_method`) and the
distributed runtime run it on the same air as SIMix.

What travels (the runtime's rules: users send arrays only on the air):

* **on the air**: each user's model update ``delta_k``, scaled to the public calibration
  scale ``c`` (``x_k = delta_k / max(c, rms_k)``, so its power is at most one unit per
  complex symbol: an update larger than ``c`` is clipped in norm), zero-padded to an even
  length, then spread by a public random permutation and sign flip (seeded by the
  context, the same in every process) so that every OFDM block carries about the average
  power (an update's energy is uneven across layers, and a block far above unit power would
  clip the DAC); the server undoes the spreading, which commutes with the superposition;
  ``payload_reals = P`` rounded up to even;
* **server -> users (digital)**: after every aggregation, the new global model ``theta``
  and the scale ``c`` for the next one.

``c`` is calibrated by the server on public data: the RMS per complex symbol of the update
that local training on a batch of the auxiliary split makes from the current global model
(so it needs no per-user scalar on the uplink). The loss the method reports per
aggregation is the global model's training loss on that public calibration batch: the
users' own losses never reach the server. Local training: ``local_steps`` SGD steps of
``model.batch_size`` samples at ``local_lr`` (:func:`learning.federated.updates.local_update`).

Aggregation (option ``aggregation``):

* ``"ota"`` - the group shares one slot; equal target weights ``1/K`` (FedAvg weights for
  equal local batches); the receiver's estimate of ``(1/K) sum_k x_k`` times ``c`` is the
  averaged update; the closed-form power control and the channel are the runtime's;
* ``"orthogonal"`` - one user per slot (analog, no superposition); the server averages the
  ``K`` received updates: the same air without the superposition gain.

Exact digital aggregation of updates needs a user -> server array on the digital link,
which the runtime's privacy invariant forbids; it runs in process in
:func:`learning.federated.fedavg.run_fedavg`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from learning.federated.updates import count_parameters, get_flat, local_update, set_flat
from learning.methods import METHODS
from learning.methods.base import (
    Feedback,
    Method,
    MethodContext,
    MethodUser,
    Option,
    Reception,
    StepOutcome,
    UserPayload,
)
from learning.models import build_classifier
from learning.training import evaluate
from phy.rng import RngLike, make_rng

__all__ = ["FedAvgUser", "FederatedAveraging"]


def _rms_per_symbol(v: torch.Tensor) -> float:
    return float(torch.sqrt(2.0 * v.double().pow(2).mean()))


class FederatedAveraging(Method):
    """FedAvg over the air or in orthogonal slots (see the module docstring)."""

    name = "fedavg"
    summary = "federated averaging: users' model updates summed over the air (or orthogonal)"
    options = {
        "aggregation": Option(
            str,
            "ota",
            "updates superposed in one slot per group, or one slot each",
            choices=("ota", "orthogonal"),
        ),
        "local_steps": Option(int, 5, "local SGD steps per update", minimum=1),
        "local_lr": Option(float, 0.1, "local SGD learning rate", minimum=1e-9),
    }

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.aggregation = str(context.options.get("aggregation", "ota"))
        if self.aggregation not in ("ota", "orthogonal"):
            raise ValueError(f"aggregation must be 'ota' or 'orthogonal', got {self.aggregation!r}")
        self.local_steps = int(context.options.get("local_steps", 5))
        self.local_lr = float(context.options.get("local_lr", 0.1))
        if len(context.split.auxiliary) == 0:
            raise ValueError("the auxiliary split is empty: nothing to calibrate the scale on")
        torch.manual_seed(context.torch_seed_for("fedavg-model"))
        self.model = build_classifier(
            context.train.input_shape,
            context.n_classes,
            context.model["arch"],
            int(context.model["feature_dim"]),
        )
        self.n_parameters = count_parameters(self.model)
        self.calibration_rounds = 0
        self.scale = self.calibrate()
        spread_rng = make_rng(context.seed_for("fedavg-spreading"))
        self._perm = spread_rng.permutation(self.payload_reals)
        self._signs = spread_rng.choice(np.array([-1.0, 1.0]), size=self.payload_reals)

    def spread(self, vector: np.ndarray) -> np.ndarray:
        """Public spreading ``(payload_reals,)`` -> ``(payload_reals,)`` (see module doc)."""
        return self._signs * np.asarray(vector, dtype=np.float64)[self._perm]

    def unspread(self, vector: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`spread` (linear: applies to a received sum as well)."""
        out = np.empty(self.payload_reals)
        out[self._perm] = self._signs * np.asarray(vector, dtype=np.float64)
        return out

    # ---------------------------------------------------------------- the air
    @property
    def payload_reals(self) -> int:
        return self.n_parameters + self.n_parameters % 2

    def slots(self, group: Sequence[int]) -> list[list[int]]:
        if self.aggregation == "ota":
            return [list(group)]
        return [[user] for user in group]

    def mixing_weights(self, n_users: int, rng: RngLike) -> np.ndarray:
        """FedAvg weights of equal local batches: ``1/K`` each."""
        return np.full(n_users, 1.0 / n_users)

    # ------------------------------------------------------------------ server
    def calibrate(self) -> float:
        """The public scale ``c``: RMS per complex symbol of a local update on auxiliary
        data from the current global model (seeded per calibration)."""
        aux = self.context.auxiliary
        update = local_update(
            self.model,
            aux,
            batch_size=int(self.context.model["batch_size"]),
            lr=self.local_lr,
            max_steps=self.local_steps,
            rng=self.context.seed_for("fedavg-calibration", self.calibration_rounds),
        )
        self.calibration_rounds += 1
        self.public_loss = update.loss
        return max(_rms_per_symbol(update.delta), 1e-12)

    def server_step(self, receptions: Sequence[Reception], rng: RngLike) -> StepOutcome:
        received = [r for r in receptions if r.estimate is not None]
        outcome = StepOutcome()
        if not received:
            return outcome
        total = self.unspread(np.sum([np.asarray(r.estimate, float) for r in received], axis=0))
        if self.aggregation == "orthogonal":  # each slot carried one user at weight 1
            total = total / len(received)
        delta = torch.as_tensor(total[: self.n_parameters] * self.scale, dtype=torch.float32)
        set_flat(self.model, get_flat(self.model) + delta)
        self.scale = self.calibrate()
        outcome.losses.append(self.public_loss)  # users' losses never reach the server
        users = tuple(range(self.context.n_users))
        outcome.feedback.append(
            Feedback(
                users,
                np.ones(len(users)),
                {
                    "model": get_flat(self.model).numpy(),
                    "scale": np.array([self.scale], dtype=np.float64),
                },
            )
        )
        return outcome

    def evaluate(self) -> float | None:
        return float(evaluate(self.model, self.context.test))

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "scale": float(self.scale),
            "calibration_rounds": int(self.calibration_rounds),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.scale = float(state["scale"])
        self.calibration_rounds = int(state["calibration_rounds"])

    # -------------------------------------------------------------------- users
    def make_user(self, index: int) -> FedAvgUser:
        return FedAvgUser(self, index, self.context.user_data(index))


class FedAvgUser(MethodUser):
    """User half: a copy of the global model, local training, the scaled update."""

    method: FederatedAveraging

    def __init__(self, method: FederatedAveraging, index: int, data: Any) -> None:
        super().__init__(method, index, data)
        self.model = build_classifier(
            method.context.train.input_shape,
            method.context.n_classes,
            method.context.model["arch"],
            int(method.context.model["feature_dim"]),
        )
        set_flat(self.model, get_flat(method.model))
        self.scale = float(method.scale)
        self._rng = make_rng(method.context.seed_for("fedavg-user", index))

    def start_round(self, seed: RngLike) -> None:
        self._rng = make_rng(seed)

    def payload(self, batch_size: int) -> UserPayload:
        update = local_update(
            self.model,
            self.data,
            batch_size=int(batch_size),
            lr=self.method.local_lr,
            max_steps=self.method.local_steps,
            rng=self._rng,
        )
        x = update.delta.double() / max(self.scale, _rms_per_symbol(update.delta))
        vector = np.zeros(self.method.payload_reals)
        vector[: x.numel()] = x.numpy()
        return UserPayload(self.method.spread(vector))

    def apply(self, feedback: Feedback, weight: float) -> None:
        set_flat(self.model, torch.as_tensor(np.asarray(feedback.arrays["model"], np.float32)))
        self.scale = float(np.asarray(feedback.arrays["scale"]).reshape(-1)[0])

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "scale": float(self.scale)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.scale = float(state["scale"])


METHODS.add(FederatedAveraging.name, FederatedAveraging)
