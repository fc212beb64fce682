"""SIMix's over-the-air mixup (``"oam"``) and its two baselines as peer methods.

* ``"oam"`` (:class:`OverTheAirMixup`): every member of a group sends its next batch
  in the same slot; the air adds them with the mixing weights, labels included (the
  label tail of :mod:`learning.framing` travels in the same frame). The server trains on
  the received mixture; in feature mode the gradient ``dL/dy`` goes back to the group
  once and user ``k`` back-propagates ``effective_weight_k * dL/dy``.
* ``"orthogonal"`` (:class:`Orthogonal`): one user per slot, no mixing; one server
  update per user.
* ``"server_mixup"`` (:class:`ServerMixup`): each member sends alone (orthogonal
  slots); the server mixes the received payloads and labels itself with weights from
  the mixing policy (classic mixup, Zhang et al.).

Payload modes (``[model] mode``): ``"raw"``, users send :class:`learning.models.RawCodec`
payloads (the codec is fitted on the auxiliary split, public data every party holds)
and the server holds the whole classifier; ``"features"``, users hold encoders (same
initial weights for all) and the server holds the head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from learning.framing import frame_reals, pack_payload, split_payload
from learning.methods.base import (
    EvalCounts,
    Feedback,
    Method,
    MethodContext,
    MethodUser,
    Reception,
    ServerView,
    StepOutcome,
    UserPayload,
)
from learning.mixup import soft_cross_entropy
from learning.models import RawCodec, build_classifier, build_encoder, build_head
from learning.training import RawModel, Server, User, evaluate
from phy.rng import RngLike

__all__ = ["MixupUser", "Orthogonal", "OverTheAirMixup", "ServerMixup"]

MODES = ("raw", "features")


class OverTheAirMixup(Method):
    """SIMix's over-the-air mixup (see the module docstring)."""

    name = "oam"
    summary = "over-the-air mixup: a group's payloads and labels mix in one slot (SIMix)"

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.mode = str(context.model["mode"])
        if self.mode not in MODES:
            raise ValueError(f"model mode must be one of {MODES}, got {self.mode!r}")
        if len(context.split.auxiliary) == 0:
            raise ValueError("the auxiliary split is empty: nothing to fit the raw codec on")
        self.codec = RawCodec.fit(context.auxiliary.x)
        self.batch = context.slot_batch
        self.dim = (
            self.codec.payload_dim if self.mode == "raw" else int(context.model["feature_dim"])
        )
        self.model = self.build_server_model()
        self.server = Server(self.model, lr=float(context.model["learning_rate"]))
        self._initial_encoder: nn.Module | None = None  # see initial_encoder

    # ------------------------------------------------------------------ models
    def build_server_model(self) -> nn.Module:
        """The server's model, seeded: the classifier behind the codec (raw) or the head."""
        ctx = self.context
        torch.manual_seed(ctx.torch_seed_for("server-model"))
        if self.mode == "raw":
            classifier = build_classifier(
                ctx.train.input_shape, ctx.n_classes, ctx.model["arch"], ctx.model["feature_dim"]
            )
            return RawModel(self.codec, classifier)
        return build_head(int(ctx.model["feature_dim"]), ctx.n_classes)

    def build_user_encoder(self) -> nn.Module:
        """Feature mode: every user starts from the same encoder weights."""
        ctx = self.context
        torch.manual_seed(ctx.torch_seed_for("encoder-init"))
        return build_encoder(ctx.train.input_shape, ctx.model["feature_dim"], ctx.model["arch"])

    def initial_encoder(self) -> nn.Module:
        """Feature mode: the one :meth:`build_user_encoder` instance this process's users
        share until their first update (copy on write, see
        :class:`learning.training.User`): 1,000 users of a node hold one encoder, not
        1,000 (about 0.84 MB each for the default MLP), until they train."""
        if self._initial_encoder is None:
            self._initial_encoder = self.build_user_encoder()
        return self._initial_encoder

    # ---------------------------------------------------------------- the air
    @property
    def payload_reals(self) -> int:
        return frame_reals(self.batch, self.dim, self.context.n_classes)

    def read(self, estimate: np.ndarray, soft: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """A received slot -> (mixed payload ``(B, D)``, mixed label ``(B, C)``): the
        server's soft label, or (``soft=False``) the rescaled tail as received."""
        return split_payload(
            estimate, self.batch, self.dim, self.context.n_classes, soft_label=soft
        )

    @torch.no_grad()
    def public_payloads(self, x: torch.Tensor) -> np.ndarray:
        """The payloads ``(N, D)`` an outsider can compute for public images ``x``: the
        codec's (raw; it is fitted on public data) or the users' *initial* encoder's
        (features; the only encoder an attacker ever had)."""
        if self.mode == "raw":
            return self.codec.encode(x).numpy()
        return self.build_user_encoder().eval()(x).numpy()

    # ------------------------------------------------------------------ server
    def train_on(
        self, payload: torch.Tensor, label: torch.Tensor, users: Sequence[int], weights: Any
    ) -> tuple[float, Feedback | None]:
        """One server update on a mixture; the feedback (feature mode) sends ``dL/dy``
        to ``users`` with their ``weights``."""
        loss, grad = self.server.server_step(payload, label)
        if self.mode == "raw":
            return loss, None
        scale = np.asarray(weights, dtype=float)
        return loss, Feedback(tuple(users), scale, {"grad": grad.numpy().astype(np.float32)})

    def server_step(self, receptions: Sequence[Reception], rng: RngLike) -> StepOutcome:
        outcome = StepOutcome()
        for reception in receptions:
            if reception.estimate is None:  # missed: nothing to train on
                continue
            payload, label = self.read(reception.estimate)
            loss, feedback = self.train_on(
                payload, label, reception.users, reception.effective_weights
            )
            outcome.losses.append(loss)
            if feedback is not None:
                outcome.feedback.append(feedback)
            outcome.views.append(
                ServerView(reception.users, reception.weights, payload.numpy(), label.numpy())
            )
        return outcome

    def evaluate(self) -> float | None:
        if self.mode == "raw":
            return float(evaluate(self.model.classifier, self.context.test))
        return None  # feature mode: head(encoder_k) at each user

    def evaluation_request(self) -> dict[str, np.ndarray]:
        if self.mode == "raw":
            return {}
        return {"head": nn.utils.parameters_to_vector(self.model.parameters()).detach().numpy()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.server.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.server.optimizer.load_state_dict(state["optimizer"])

    def make_user(self, index: int) -> MixupUser:
        return MixupUser(self, index, self.context.user_data(index))


class Orthogonal(OverTheAirMixup):
    """Baseline: one user per slot, no mixing (one server update per user)."""

    name = "orthogonal"
    summary = "orthogonal slots: one user per slot, no mixing (baseline)"

    def slots(self, group: Sequence[int]) -> list[list[int]]:
        return [[user] for user in group]


class ServerMixup(OverTheAirMixup):
    """Baseline: orthogonal slots, then the server mixes the group's received payloads
    and labels with weights from the mixing policy (classic mixup at the server)."""

    name = "server_mixup"
    summary = "orthogonal slots, mixup computed by the server (baseline)"

    def slots(self, group: Sequence[int]) -> list[list[int]]:
        return [[user] for user in group]

    def server_step(self, receptions: Sequence[Reception], rng: RngLike) -> StepOutcome:
        outcome = StepOutcome()
        received = [r for r in receptions if r.estimate is not None]
        if not received:
            return outcome
        lam = self.mixing_weights(len(received), rng)
        mixed = sum(w * np.asarray(r.estimate, float) for w, r in zip(lam, received, strict=True))
        payload, label = self.read(mixed)
        users = tuple(r.users[0] for r in received)
        scale = lam * np.array([r.effective_weights[0] for r in received])
        loss, feedback = self.train_on(payload, label, users, scale)
        outcome.losses.append(loss)
        if feedback is not None:
            outcome.feedback.append(feedback)
        outcome.views.append(ServerView(users, lam, payload.numpy(), label.numpy()))
        return outcome


class MixupUser(MethodUser):
    """User half of the mixup methods: next batch -> payload (codec or encoder output)
    plus label tail; in feature mode, back-propagates the server's gradient."""

    method: OverTheAirMixup

    def __init__(self, method: OverTheAirMixup, index: int, data: Any) -> None:
        super().__init__(method, index, data)
        batch_size = int(method.context.model["batch_size"])
        if method.mode == "raw":
            self.learner = User(data, codec=method.codec, batch_size=batch_size)
        else:
            self.learner = User(
                data,
                encoder=method.initial_encoder(),
                lr=float(method.context.model["learning_rate"]),
                batch_size=batch_size,
                shared_encoder=True,  # copied at the user's first update
            )

    def start_round(self, seed: RngLike) -> None:
        self.learner.reseed(seed)

    def payload(self, batch_size: int) -> UserPayload:
        x, y, indices = self.learner.sample_batch_with_indices()
        batch = min(len(y), batch_size)
        x, y, indices = x[:batch], y[:batch], indices[:batch]
        vector = pack_payload(self.learner.user_encode(x), y, self.method.context.n_classes)
        return UserPayload(vector, np.asarray(indices, dtype=np.int64))

    def apply(self, feedback: Feedback, weight: float) -> None:
        grad = torch.as_tensor(np.array(feedback.arrays["grad"], dtype=np.float32))
        self.learner.user_backward(grad[:, : self.method.dim], float(weight))

    def evaluate(self, request: Mapping[str, np.ndarray]) -> EvalCounts:
        """Feature mode: head(encoder(test)) with the server's head."""
        method = self.method
        head = build_head(int(method.context.model["feature_dim"]), method.context.n_classes)
        nn.utils.vector_to_parameters(
            torch.as_tensor(np.array(request["head"], dtype=np.float32)), head.parameters()
        )
        test = method.context.test
        encoder = self.learner.encoder
        encoder.eval()
        with torch.no_grad():
            logits = head(encoder(test.x))
            onehot = nn.functional.one_hot(test.y, method.context.n_classes).float()
            loss = float(soft_cross_entropy(logits, onehot))
            correct = int((logits.argmax(1) == test.y).sum())
        return EvalCounts(loss, correct, len(test))

    def state_dict(self) -> dict[str, Any]:
        if self.learner.encoder is None:
            return {}
        return {
            "encoder": self.learner.encoder.state_dict(),
            "optimizer": self.learner.optimizer_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.learner.encoder is not None:
            self.learner.own_encoder()
            self.learner.encoder.load_state_dict(state["encoder"])
            self.learner.optimizer.load_state_dict(state["optimizer"])
