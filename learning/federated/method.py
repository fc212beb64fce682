"""Federated averaging as a :class:`~learning.methods.base.Method` (``[method] name =
"fedavg"``), so the in-process loop (:func:`learning.methods.loop.run_method`) and the
distributed runtime run it on the same air as SIMix.

What travels (the runtime's rules: users send arrays only on the air, unless the method
declares the digital uplink, as ``"digital"`` and ``"secure"`` aggregation do):

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
  ``K`` received updates: the same air without the superposition gain;
* ``"digital"`` - nothing on the air: each user sends its float32 update ``delta_k``
  over the digital link (:meth:`FederatedAveraging.gather`, phase ``fedavg/update``; the
  method grants the link :data:`~learning.methods.base.MODEL_UPDATES`, the one declared
  exception to the privacy invariant) and the server averages the exact updates of the
  users that answered. The server sees every user's update;
* ``"secure"`` - the same, securely aggregated (:func:`learning.federated.secagg.secure_sum`
  over the link, four phases): the server learns only the mean of the survivors; users
  that drop out after sharing their keys are recovered from the others' shares.

Options ``noise_multiplier`` ``z`` and ``clip_norm`` ``C`` (digital and secure): each
user clips its update to norm ``C`` and adds its share ``N(0, (z C)^2 / K)`` of Gaussian
noise (``K``: all the method's users, one aggregation of everyone as in the FedAvg
experiments), so the aggregate carries ``N(0, (z C)^2)``
(:mod:`learning.federated.distributed_noise`): what the exact secure sum still reveals
(the pooled label counts and class structure) is hidden by noise.

Option ``dropout`` (digital and secure): the probability that a user drops out of an
aggregation after the key sharing (Bonawitz et al.'s failure case), drawn from the
user's round generator; such a user answers no further phase. (A user whose node dies is
dropped by the runtime the same way.)

What the server saw of the updates (:class:`~learning.methods.base.UpdateView`, for the
run's gradient-inversion audit): each user's update (``"digital"``), the secure mean
(``"secure"``), the mean received over the air (``"ota"``); with the global model the
users started from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from learning.federated.distributed_noise import noisy_share
from learning.federated.secagg import PHASES, SecAggClient, secure_sum
from learning.federated.updates import (
    LocalUpdate,
    count_parameters,
    get_flat,
    local_update,
    set_flat,
)
from learning.methods import METHODS
from learning.methods.base import (
    MODEL_UPDATES,
    Exchange,
    Feedback,
    Method,
    MethodContext,
    MethodUser,
    Option,
    Reception,
    StepOutcome,
    UpdateView,
    UplinkRequest,
    Upload,
    UserPayload,
)
from learning.models import build_classifier
from learning.training import evaluate
from phy.rng import RngLike, make_rng

__all__ = ["FedAvgUser", "FederatedAveraging"]

log = logging.getLogger(__name__)

#: aggregations over the air / over the digital link
AIR, DIGITAL = ("ota", "orthogonal"), ("digital", "secure")
#: the digital aggregation's phase (secure aggregation's are secagg.PHASES)
UPDATE_PHASE = "fedavg/update"


def _rms_per_symbol(v: torch.Tensor) -> float:
    return float(torch.sqrt(2.0 * v.double().pow(2).mean()))


class FederatedAveraging(Method):
    """FedAvg over the air or in orthogonal slots (see the module docstring)."""

    name = "fedavg"
    summary = "federated averaging: users' model updates summed over the air (or orthogonal)"
    air_view = "model_updates"
    options = {
        "aggregation": Option(
            str,
            "ota",
            "updates superposed in one slot per group, one slot each, or sent over the "
            "digital link (plain, or securely aggregated)",
            choices=(*AIR, *DIGITAL),
        ),
        "local_steps": Option(int, 5, "local SGD steps per update", minimum=1),
        "local_lr": Option(float, 0.1, "local SGD learning rate", minimum=1e-9),
        "dropout": Option(
            float,
            0.0,
            "probability a user drops out of a digital aggregation after the key sharing",
            minimum=0.0,
            maximum=1.0,
        ),
        "noise_multiplier": Option(
            float,
            0.0,
            "distributed Gaussian noise z on a digital aggregate (0: none)",
            minimum=0.0,
        ),
        "clip_norm": Option(
            float, 1.0, "L2 norm each update is clipped to when noise is added", minimum=1e-9
        ),
    }

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.aggregation = str(context.options.get("aggregation", "ota"))
        if self.aggregation not in (*AIR, *DIGITAL):
            raise ValueError(
                f"aggregation must be one of {[*AIR, *DIGITAL]}, got {self.aggregation!r}"
            )
        self.local_steps = int(context.options.get("local_steps", 5))
        self.local_lr = float(context.options.get("local_lr", 0.1))
        self.dropout = float(context.options.get("dropout", 0.0))
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {self.dropout}")
        self.noise_multiplier = float(context.options.get("noise_multiplier", 0.0))
        self.clip_norm = float(context.options.get("clip_norm", 1.0))
        if self.noise_multiplier < 0 or not self.clip_norm > 0:
            raise ValueError("need noise_multiplier >= 0 and clip_norm > 0")
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

    def read_update(self, received: np.ndarray, air_scale: float) -> np.ndarray:
        """The update ``(P,)`` a received payload ``(payload_reals,)`` carries at the public
        scale ``air_scale`` (the mean update when it is a slot's weighted sum)."""
        return self.unspread(received)[: self.n_parameters] * float(air_scale)

    # ---------------------------------------------------------------- the air
    @property
    def payload_reals(self) -> int:
        """``P`` rounded up to even on the air; 0 (nothing on the air) when digital."""
        if self.aggregation in DIGITAL:
            return 0
        return self.n_parameters + self.n_parameters % 2

    # ----------------------------------------------------------- digital uplink
    @classmethod
    def link_capabilities(cls, options: Mapping[str, Any]) -> frozenset[str]:
        """:data:`MODEL_UPDATES` for digital and secure aggregation, else nothing."""
        return frozenset({MODEL_UPDATES}) if options.get("aggregation") in DIGITAL else frozenset()

    @property
    def update_length(self) -> int:
        return self.n_parameters if self.aggregation in DIGITAL else 0

    def _valid(self, user: int, upload: Upload) -> bool:
        """Whether ``upload`` holds a model update of the right length and dtype."""
        update = upload.update
        ok = (
            update is not None
            and np.asarray(update).shape == (self.n_parameters,)
            and np.asarray(update).dtype == np.float32
            and bool(np.all(np.isfinite(update)))
        )
        if not ok:
            log.warning("user %d sent a malformed model update: left out", user)
        return ok

    def gather(self, group: Sequence[int], exchange: Exchange, rng: RngLike) -> list[Reception]:
        """``"digital"``: one reception per user that answered, its float32 update
        (weight 1); ``"secure"``: one reception, the exact mean of the survivors' updates
        (weights ``1/K``), or none when too few survived to unmask. Over the air: none."""
        users = [int(u) for u in group]
        if self.aggregation == "digital":
            answers = exchange({u: UplinkRequest(UPDATE_PHASE) for u in users})
            return [
                Reception((u,), np.asarray(a.update, np.float64), np.ones(1), np.ones(1))
                for u, a in sorted(answers.items())
                if u in users and self._valid(u, a)
            ]
        if self.aggregation == "secure" and len(users) >= 2:
            try:
                result = secure_sum(users, self.n_parameters, exchange)
            except (ValueError, KeyError) as error:  # too few left, or a malformed answer
                log.warning("secure aggregation of %s failed: %s", users, error)
                return []
            k = len(result.survivors)
            weights = np.full(k, 1.0 / k)
            return [Reception(tuple(result.survivors), result.total / k, weights, weights)]
        return []

    def slots(self, group: Sequence[int]) -> list[list[int]]:
        if self.aggregation in DIGITAL:  # nothing on the air: see gather
            return []
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
        total = np.sum([np.asarray(r.estimate, float) for r in received], axis=0)
        if self.aggregation in AIR:
            total = self.read_update(total, self.scale)
        if self.aggregation in ("orthogonal", "digital"):  # one user per reception, weight 1
            total = total / len(received)
        start = get_flat(self.model)
        outcome.update_views.extend(self._views(received, total, start.numpy()))
        set_flat(self.model, start + torch.as_tensor(total, dtype=torch.float32))
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

    def _views(
        self, received: list[Reception], mean: np.ndarray, model: np.ndarray
    ) -> list[UpdateView]:
        """What the server saw of the updates (see the module docstring)."""
        if self.aggregation == "digital":
            return [
                UpdateView(r.users, "single_update", np.asarray(r.estimate, float), model)
                for r in received
            ]
        if self.aggregation == "orthogonal":
            return [
                UpdateView(
                    r.users,
                    "single_update",
                    self.read_update(np.asarray(r.estimate, float), self.scale),
                    model,
                    self.scale,
                )
                for r in received
            ]
        users = tuple(u for r in received for u in r.users)
        if self.aggregation == "secure":
            return [UpdateView(users, "secure_sum", mean, model)]
        return [UpdateView(users, "ota_sum", mean, model, self.scale)]

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
        self._secagg: SecAggClient | None = None
        self._dropped = False

    def start_round(self, seed: RngLike) -> None:
        self._rng = make_rng(seed)

    def _train(self, batch_size: int) -> LocalUpdate:
        return local_update(
            self.model,
            self.data,
            batch_size=int(batch_size),
            lr=self.method.local_lr,
            max_steps=self.method.local_steps,
            rng=self._rng,
        )

    def payload(self, batch_size: int) -> UserPayload:
        update = self._train(batch_size)
        x = update.delta.double() / max(self.scale, _rms_per_symbol(update.delta))
        vector = np.zeros(self.method.payload_reals)
        vector[: x.numel()] = x.numpy()
        return UserPayload(self.method.spread(vector), update.indices)

    def _sent(self, update: LocalUpdate) -> np.ndarray:
        """The update a digital aggregation gets: as trained, or clipped and noised
        (options ``noise_multiplier``, ``clip_norm``), float64 ``(P,)``."""
        delta = update.delta.numpy().astype(np.float64)
        if self.method.noise_multiplier == 0:
            return delta
        z, c, k = self.method.noise_multiplier, self.method.clip_norm, self.method.context.n_users
        return noisy_share(delta, c, z, k, self._rng)

    def _drops_out(self) -> bool:
        """Whether this user leaves the aggregation now (option ``dropout``)."""
        return self.method.dropout > 0 and bool(self._rng.random() < self.method.dropout)

    def upload(self, request: UplinkRequest) -> Upload | None:
        """``fedavg/update``: the float32 update; ``secagg/*``: one phase of secure
        aggregation (fresh keys at the first; the update, masked, at the third). None:
        the user dropped out (after the key sharing, option ``dropout``)."""
        batch = self.method.context.slot_batch
        if request.phase == UPDATE_PHASE:
            if self._drops_out():
                return None
            update = self._train(batch)
            return Upload(self._sent(update).astype(np.float32), indices=update.indices)
        if request.phase == PHASES[0]:
            self._secagg, self._dropped = SecAggClient(self.index), False
        if self._secagg is None or self._dropped:
            return None
        if request.phase == PHASES[2]:
            self._dropped = self._drops_out()
            if self._dropped:
                return None
            update = self._train(batch)
            answer = self._secagg.respond(request, self._sent(update))
            return Upload(answer.update, answer.blobs, update.indices)
        return self._secagg.respond(request)

    def apply(self, feedback: Feedback, weight: float) -> None:
        set_flat(self.model, torch.as_tensor(np.array(feedback.arrays["model"], np.float32)))
        self.scale = float(np.asarray(feedback.arrays["scale"]).reshape(-1)[0])

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "scale": float(self.scale)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.scale = float(state["scale"])


METHODS.add(FederatedAveraging.name, FederatedAveraging)
