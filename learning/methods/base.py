"""The ``Method`` interface: one privacy method, run unchanged in-process and over radios.

In the spirit of Flower's ``Strategy``, a :class:`Method` says *what* is learned and
*what travels*, never *how* it travels. Two runtimes drive the same method code:

* the in-process loop (:func:`learning.methods.loop.run_method`): users and server in
  one process, the air replaced by a channel model (:mod:`learning.channels`);
* the distributed runtime (``orchestrator/``): the server half in the orchestrator, one
  :class:`MethodUser` per user in the node processes, the air made of radios
  (:class:`radio.ota_session.OtaReceiver` / :class:`radio.ota_transmitter.OtaTransmitter`).

One round, as both runtimes run it::

    for each user: user.start_round(seed)                       # batch order, local state
    groups = grouping policy(alive users, label counts)         # learning.grouping
    repeat context.steps_per_round times, for each group:
        slots = method.slots(group)                             # who shares a slot
        for each slot:
            w = method.mixing_weights(len(slot), rng)           # target weights, (K,)
            each member k: vector_k = user_k.payload(context.slot_batch).vector   # (n_reals,)
            the air delivers estimate ~= sum_k w_k vector_k     # or None: frame missed
            -> Reception(users, estimate, w, effective weights)
        receptions += method.gather(group, exchange, rng)        # digital uplink, if granted
        outcome = method.server_step(receptions, rng)           # train, views, feedback
        each Feedback goes to its users: user.apply(feedback, weight_k)
    accuracy = method.evaluate()  or, if None, the users' evaluate(method.evaluation_request())

What travels where:

* **on the air** (analog, per slot): each user's :attr:`UserPayload.vector`, a real
  vector of :attr:`Method.payload_reals` reals (features, raw samples, a model update...;
  0 reals: the method puts nothing on the air). The receiver returns the weighted sum.
* **on the digital link, server -> users** (may carry arrays): each :class:`Feedback`
  (e.g. ``{"grad": (B, D)}`` or ``{"model": (P,)}``) and the evaluation request.
* **on the digital link, users -> server**: only :class:`EvalCounts` scalars (the
  privacy invariant of :mod:`orchestrator.messages`: a user never sends samples or
  features digitally). The one exception is declared, never implied: a method whose
  :meth:`Method.link_capabilities` grants :data:`MODEL_UPDATES` (federated averaging
  with digital or secure aggregation) collects each step's :class:`Upload` s (a model
  update, secure-aggregation key material) in :meth:`Method.gather` through the
  runtime's :data:`Exchange`; the link refuses model-update messages in every run whose
  method does not declare it.

State: :meth:`Method.state_dict` and :meth:`MethodUser.state_dict` return plain state
(tensors, numbers, strings, lists and dicts of them) that
``torch.load(weights_only=True)`` reads back; the runtimes checkpoint it.

Methods are registered by name in :data:`learning.methods.METHODS` and chosen by the
``[method]`` section of an experiment file (``name`` plus the method's :attr:`Method.options`).
To add one: subclass :class:`Method` and :class:`MethodUser`, declare ``name`` and
``options``, and register the class (``METHODS.add(name, cls)``).
"""

from __future__ import annotations

import math
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from learning.data import Dataset, UserSplit
from learning.mixup import MixingPolicy
from learning.uplink import Exchange, UplinkRequest, Upload
from phy.rng import RngLike

__all__ = [
    "MODEL_UPDATES",
    "EvalCounts",
    "Exchange",
    "Feedback",
    "Method",
    "MethodContext",
    "MethodUser",
    "Option",
    "Reception",
    "ServerView",
    "StepOutcome",
    "Upload",
    "UpdateView",
    "UplinkRequest",
    "UserPayload",
    "named_seed",
]

#: link capability: users may send model updates (and secure-aggregation key material)
#: over the digital link (:meth:`Method.link_capabilities`)
MODEL_UPDATES = "model_updates"


def named_seed(root: int, *names: str | int) -> np.random.SeedSequence:
    """A seed for the component ``names`` (e.g. ``("medium", 3)``) under the root seed:
    independent streams per name, stable across processes and runs."""
    words = [zlib.crc32(str(name).encode()) for name in names]
    return np.random.SeedSequence([int(root), *words])


@dataclass(frozen=True)
class Option:
    """One method-specific field of the ``[method]`` section (validated like every
    experiment field: type, range, allowed values).

    Attributes:
        kind: Python type (``int``, ``float``, ``str``, ``bool``, ``list``).
        default: value when the file omits it.
        doc: one line on its meaning and unit.
        minimum, maximum: inclusive numeric bounds (None: unbounded).
        choices: allowed values (None: any).
    """

    kind: type
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MethodContext:
    """Everything a method is built from; every process derives the same one.

    Attributes:
        train, test: the data set's splits.
        split: users' index sets into ``train`` and the auxiliary (public) split.
        model: the ``[model]`` settings: ``mode`` ("raw" or "features"), ``arch``,
            ``feature_dim`` (reals), ``learning_rate``, ``batch_size`` (samples per user
            per slot, upper bound).
        options: the chosen method's ``[method]`` options (defaults filled in).
        mixing: the mixing-weight policy (``channel.mixing``).
        seed: the root seed; components draw from :meth:`seed_for`.
    """

    train: Dataset
    test: Dataset
    split: UserSplit
    model: Mapping[str, Any]
    mixing: MixingPolicy
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return self.train.n_classes

    @property
    def n_users(self) -> int:
        return len(self.split.users)

    @property
    def auxiliary(self) -> Dataset:
        """The auxiliary split: public data every party may hold."""
        return self.train.subset(self.split.auxiliary)

    def user_data(self, index: int) -> Dataset:
        """User ``index``'s private data."""
        return self.train.subset(self.split.users[index])

    @property
    def slot_batch(self) -> int:
        """Samples per user per slot: ``model.batch_size``, at most the smallest user's data."""
        return min(int(self.model["batch_size"]), min(len(u) for u in self.split.users))

    @property
    def steps_per_round(self) -> int:
        """Steps per round: one pass over the mean user's data."""
        mean = float(np.mean([len(u) for u in self.split.users]))
        return max(1, math.ceil(mean / self.slot_batch))

    def seed_for(self, *names: str | int) -> np.random.SeedSequence:
        """The seed of component ``names`` (see :func:`named_seed`)."""
        return named_seed(self.seed, *names)

    def torch_seed_for(self, *names: str | int) -> int:
        """A 63-bit int seed of component ``names`` for ``torch.manual_seed``."""
        return int(self.seed_for(*names).generate_state(1, dtype=np.uint64)[0] >> 1)


@dataclass(frozen=True)
class UserPayload:
    """What one user puts on the air for one slot.

    Attributes:
        vector: float ``(Method.payload_reals,)``, unit power per complex symbol (pairs
            of reals).
        indices: indices into the user's data of the samples it carries (audit only,
            never sent); empty when the payload carries no samples.
    """

    vector: np.ndarray
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(frozen=True)
class Reception:
    """What the server received from one slot.

    Attributes:
        users: indices of the slot's users (K).
        estimate: float ``(payload_reals,)``, the receiver's estimate of
            ``sum_k w_k vector_k``; None when the frame was not found (missed slot).
        weights: the target mixing weights ``w``, ``(K,)``.
        effective_weights: the weights the payloads arrived with, ``Re(a h_k b_k)``, ``(K,)``.
    """

    users: tuple[int, ...]
    estimate: np.ndarray | None
    weights: np.ndarray
    effective_weights: np.ndarray


@dataclass(frozen=True)
class Feedback:
    """What goes back to some users over the digital link after a server step.

    Attributes:
        users: indices of the users it is for.
        weights: one scale per user, ``(len(users),)`` (e.g. ``lambda_k`` for a gradient).
        arrays: name -> array, the same for every listed user (``{"grad": (B, D)}``,
            ``{"model": (P,)}``...).
    """

    users: tuple[int, ...]
    weights: np.ndarray
    arrays: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class ServerView:
    """What the server saw in one reception, as the attacks read it (the "received
    mixture" view).

    Attributes:
        users: the slot's users; weights: the target mixing weights ``(K,)``.
        payload: float ``(B, D)``, the mixed payload the server trained on.
        label: float ``(B, C)``, the mixed soft label it read, or None.
    """

    users: tuple[int, ...]
    weights: np.ndarray
    payload: np.ndarray
    label: np.ndarray | None


@dataclass(frozen=True)
class UpdateView:
    """What the server saw of the users' model updates in one aggregation, as gradient
    inversion reads it (the "model updates" view).

    Attributes:
        users: the users whose updates it holds (K).
        kind: ``"single_update"`` (one user's update, unprotected), ``"secure_sum"``
            (the securely aggregated mean of the K), ``"ota_sum"`` (the mean received
            over the air, noisy).
        update: float ``(P,)``, the update seen (the mean update for a sum).
        model: float ``(P,)``, the global parameters the users started from.
        air_scale: the public scale the updates had on the air (a received payload,
            unspread, times it is the update; 1 when nothing went on the air).
    """

    users: tuple[int, ...]
    kind: str
    update: np.ndarray
    model: np.ndarray
    air_scale: float = 1.0


@dataclass
class StepOutcome:
    """Result of :meth:`Method.server_step`.

    Attributes:
        losses: training loss of each server update made (empty if none).
        feedback: what to send back to users (applied in order).
        views: what the server saw, one per reception it used.
        update_views: model updates the server saw (federated methods).
    """

    losses: list[float] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    views: list[ServerView] = field(default_factory=list)
    update_views: list[UpdateView] = field(default_factory=list)


@dataclass(frozen=True)
class EvalCounts:
    """One user's evaluation (scalars only): mean loss, correct predictions, samples."""

    loss: float
    correct: int
    count: int


class MethodUser(ABC):
    """A method's user half (one per user, in the user's process).

    Args:
        method: the method it belongs to (shared, derived state: codec, initial weights).
        index: the user's index; data: the user's private data set.
    """

    def __init__(self, method: Method, index: int, data: Dataset) -> None:
        self.method = method
        self.index = int(index)
        self.data = data

    def start_round(self, seed: RngLike) -> None:  # noqa: B027 - optional hook
        """A round begins (``seed``: this user's seed for the round, e.g. batch order)."""

    @abstractmethod
    def payload(self, batch_size: int) -> UserPayload:
        """What this user puts on the air in the next slot (``batch_size`` samples at
        most, when it sends samples)."""

    def apply(self, feedback: Feedback, weight: float) -> None:  # noqa: B027 - optional hook
        """Use ``feedback`` (scaled by this user's ``weight``), e.g. back-propagate a
        gradient; default: nothing to learn on the user side."""

    def upload(self, request: UplinkRequest) -> Upload | None:
        """Answer the server's digital :class:`UplinkRequest` (only for methods granted
        :data:`MODEL_UPDATES`); None: this user drops out of the exchange."""
        raise NotImplementedError(f"{type(self).__name__} sends nothing digitally")

    def evaluate(self, request: Mapping[str, np.ndarray]) -> EvalCounts:
        """Evaluate this user's part of the model given the server's ``request`` (see
        :meth:`Method.evaluation_request`); only asked when :meth:`Method.evaluate`
        returns None."""
        raise NotImplementedError(f"{type(self).__name__} has no user-side evaluation")

    def state_dict(self) -> dict[str, Any]:
        """Plain state to checkpoint (default: none)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`state_dict`."""


class Method(ABC):
    """A privacy method's server half and the factory of its user halves.

    Class attributes:
        name: registry name (``[method] name``).
        options: method-specific ``[method]`` fields.
        summary: one line for ``--help`` and the README.
        air_view: what its slots carry on the air (see the attribute).
    """

    name: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}
    summary: ClassVar[str] = ""
    #: what its slots carry on the air, as the attacks' views name it
    #: (:data:`learning.attacks.base.VIEWS`): mixtures of samples or features, or
    #: ``"model_updates"`` (federated methods); the eavesdropper's audit attacks that
    air_view: ClassVar[str] = "received_mixture"

    def __init__(self, context: MethodContext) -> None:
        self.context = context

    # ------------------------------------------------------------------ the air
    @property
    @abstractmethod
    def payload_reals(self) -> int:
        """Reals each user puts on the air per slot (even; 0: nothing goes on the air)."""

    def slots(self, group: Sequence[int]) -> list[list[int]]:
        """How one step of ``group`` uses the air: the users sharing each slot, in order.
        Default: the whole group in one slot (over-the-air mixing)."""
        return [list(group)]

    def mixing_weights(self, n_users: int, rng: RngLike) -> np.ndarray:
        """Target weights ``(n_users,)`` of one slot (default: the mixing policy)."""
        return np.asarray(self.context.mixing.draw(n_users, rng), dtype=float)

    @classmethod
    def link_capabilities(cls, options: Mapping[str, Any]) -> frozenset[str]:
        """What this method, with ``[method]`` ``options``, needs the digital link to carry
        beyond scalars: :data:`MODEL_UPDATES` or nothing (the default: the privacy
        invariant holds unchanged). Both ends of the link grant exactly this."""
        return frozenset()

    @property
    def update_length(self) -> int:
        """Length ``P`` every :attr:`Upload.update` must have (methods granted
        :data:`MODEL_UPDATES`; 0 otherwise)."""
        return 0

    def gather(self, group: Sequence[int], exchange: Exchange, rng: RngLike) -> list[Reception]:
        """What one step of ``group`` delivers over the digital link, as receptions for
        :meth:`server_step` (after the air's); ``exchange`` sends requests to the users
        and returns their uploads. Default: nothing (the method uses only the air)."""
        return []

    # ------------------------------------------------------------------- server
    @abstractmethod
    def server_step(self, receptions: Sequence[Reception], rng: RngLike) -> StepOutcome:
        """Use what one step of a group delivered (one :class:`Reception` per slot of
        :meth:`slots`, in order; missed slots have ``estimate=None``)."""

    @abstractmethod
    def evaluate(self) -> float | None:
        """Test accuracy in [0, 1] of the server's model, or None when it needs the
        users (then the runtime asks each user's :meth:`MethodUser.evaluate` with
        :meth:`evaluation_request` and pools their counts)."""

    def evaluation_request(self) -> dict[str, np.ndarray]:
        """Arrays the users need to evaluate (e.g. the server's head); default none."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The server's plain state (``torch.load(weights_only=True)`` reads it back)."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    # -------------------------------------------------------------------- users
    @abstractmethod
    def make_user(self, index: int) -> MethodUser:
        """The user half for user ``index`` (with its data, ``context.user_data(index)``)."""
