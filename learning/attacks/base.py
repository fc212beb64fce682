"""The attack interface: what an attacker observed, the ground truth it is scored
against, the :class:`Attack` base class and the name-keyed registry :data:`ATTACKS`.

Threat model. An eavesdropper or a curious server records :class:`Observation` s: the
analog payload it received (features, raw samples or an over-the-air mixture of a
group of ``K`` users), the mixed label if labels travel with the payload, and the
mixing weights if they are known. It also holds an *auxiliary* data set disjoint from
the victims', which it passes through the same observation process to train its
attack (:meth:`Attack.fit`). It is then scored on the victims' observations against
their :class:`GroupTruth` (:meth:`Attack.evaluate`).

Array conventions follow the rest of airmix: a group axis ``K`` comes first,
``(K, B, ...)``; an unmixed observation is a group of size ``K = 1``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from phy.registry import Registry
from phy.rng import RngLike, make_rng, torch_generator


@dataclass(frozen=True)
class Observation:
    """What the attacker saw for ``B`` transmissions.

    Attributes:
        payload: ``(B, D)`` real float array: received features / samples / mixture
            (complex samples must be given as real and imaginary parts side by side).
        group_size: ``K``, number of users superposed in each observation (1: unmixed).
        mixed_label: ``(B, C)`` received mixed label ``sum_k w_k onehot(y_k)`` (possibly
            noisy), or None if labels are not transmitted / not observed.
        weights: ``(K, B)`` mixing weights if the attacker knows them, else None
            (a ``(K,)`` vector is broadcast over ``B``).
    """

    payload: np.ndarray
    group_size: int = 1
    mixed_label: np.ndarray | None = None
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        payload = np.asarray(self.payload)
        if np.iscomplexobj(payload):
            raise ValueError("payload must be real: stack real and imaginary parts")
        payload = payload.astype(np.float32)
        if payload.ndim != 2 or payload.shape[0] == 0 or payload.shape[1] == 0:
            raise ValueError(f"payload must have shape (B, D) with B, D > 0, got {payload.shape}")
        if not np.all(np.isfinite(payload)):
            raise ValueError("payload contains NaN or inf")
        if isinstance(self.group_size, bool) or int(self.group_size) < 1:
            raise ValueError(f"group_size must be an int >= 1, got {self.group_size!r}")
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "group_size", int(self.group_size))
        b = payload.shape[0]
        if self.mixed_label is not None:
            lab = np.asarray(self.mixed_label, dtype=np.float32)
            if lab.ndim != 2 or lab.shape[0] != b or lab.shape[1] < 2:
                raise ValueError(f"mixed_label must have shape ({b}, C>=2), got {lab.shape}")
            if not np.all(np.isfinite(lab)):
                raise ValueError("mixed_label contains NaN or inf")
            object.__setattr__(self, "mixed_label", lab)
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float32)
            if w.ndim == 1:
                w = np.repeat(w[:, None], b, axis=1)
            if w.shape != (self.group_size, b):
                raise ValueError(f"weights must have shape ({self.group_size}, {b}), got {w.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("weights must be finite and non-negative")
            object.__setattr__(self, "weights", w)

    @property
    def n(self) -> int:
        """Number of observations ``B``."""
        return int(self.payload.shape[0])

    def subset(self, idx: np.ndarray) -> Observation:
        """The observations at indices ``idx`` (over ``B``)."""
        idx = np.asarray(idx)
        return Observation(
            payload=self.payload[idx],
            group_size=self.group_size,
            mixed_label=None if self.mixed_label is None else self.mixed_label[idx],
            weights=None if self.weights is None else self.weights[:, idx],
        )


@dataclass(frozen=True)
class GroupTruth:
    """The private data behind ``B`` observations of groups of ``K`` users.

    Attributes:
        inputs: ``(K, B, C, H, W)`` float images in [0, 1]; ``inputs[k, b]`` is what
            participant ``k`` of observation ``b`` sent.
        labels: ``(K, B)`` int64 class labels.
        n_classes: number of classes.
    """

    inputs: np.ndarray
    labels: np.ndarray
    n_classes: int

    def __post_init__(self) -> None:
        x = np.asarray(self.inputs, dtype=np.float32)
        y = np.asarray(self.labels)
        if x.ndim != 5 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"inputs must have shape (K, B, C, H, W), got {x.shape}")
        if not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0:
            raise ValueError("inputs must be finite and within [0, 1]")
        if y.dtype.kind not in "iu" or y.shape != x.shape[:2]:
            raise ValueError(f"labels must be integers of shape {x.shape[:2]}, got {y.shape}")
        if self.n_classes < 2 or y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError("labels must lie in 0..n_classes-1 with n_classes >= 2")
        object.__setattr__(self, "inputs", x)
        object.__setattr__(self, "labels", y.astype(np.int64))

    @property
    def group_size(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.inputs.shape[2:])  # type: ignore[return-value]


def check_pair(observations: Observation, truth: GroupTruth) -> None:
    """Raise ``ValueError`` unless ``observations`` and ``truth`` describe the same groups."""
    if observations.n != truth.n or observations.group_size != truth.group_size:
        raise ValueError(
            f"observations (B={observations.n}, K={observations.group_size}) do not match "
            f"truth (B={truth.n}, K={truth.group_size})"
        )


#: what an attack may observe: the payloads (and labels) a receiver got in a slot, the
#: trained model, or the model updates users sent
VIEWS = ("received_mixture", "trained_model", "model_updates")


def success_figures(views: tuple[str, ...] = VIEWS) -> dict[str, tuple[str, ...]]:
    """Attack name -> its success figures, for the registered attacks on ``views``."""
    import learning.attacks  # noqa: F401  (registers the built-in attacks)

    return {name: cls.success_figures for name, cls in ATTACKS.items() if cls.view in views}


class Attack(ABC):
    """An attack on what an eavesdropper or curious server observed.

    Life cycle: ``fit`` on auxiliary data passed through the same observation process,
    then ``attack`` (raw output) or ``evaluate`` (scored against the victims' truth,
    with the chance level of the same score computed in the same process).
    """

    name: ClassVar[str]
    #: the figures of :meth:`evaluate` that measure success (each with ``<figure>_chance``);
    #: summaries, plots and reports show exactly these, so a new attack needs no edit there
    success_figures: ClassVar[tuple[str, ...]] = ()
    #: what the attack needs to see, one of :data:`VIEWS`
    view: ClassVar[str] = "received_mixture"

    @abstractmethod
    def fit(self, aux_observations: Observation, aux_truth: GroupTruth) -> Attack:
        """Train the attack on auxiliary observations and their truth; return ``self``."""

    @abstractmethod
    def attack(self, observations: Observation) -> np.ndarray:
        """Run the attack: an array in the layout of :class:`GroupTruth` (``(K, B, C, H, W)``
        reconstructions for inversion, ``(K, B)`` labels for label inference)."""

    @abstractmethod
    def evaluate(
        self, observations: Observation, truth: GroupTruth, rng: RngLike = None
    ) -> dict[str, float]:
        """Score the attack on the victims: a flat dict of figures, each success figure
        ``<name>`` next to its chance level ``<name>_chance``."""


class MlpAttack(Attack):
    """An attack whose model is an MLP trained on the auxiliary split.

    Args:
        hidden: width of the hidden layers; depth: number of hidden layers.
        epochs, batch_size, lr: training settings.
        rng: seed for initialization and batch order.
    """

    def __init__(
        self,
        hidden: int = 256,
        depth: int = 2,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 2e-3,
        rng: RngLike = None,
    ) -> None:
        if hidden < 1 or depth < 1:
            raise ValueError("hidden and depth must be >= 1")
        self.hidden, self.depth = int(hidden), int(depth)
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self._rng = make_rng(rng)
        self.net: nn.Module | None = None

    #: whether the network also sees the observed mixed label and weights
    use_label: bool = True

    def _inputs(self, obs: Observation) -> np.ndarray:
        """The network's input ``(B, D')`` for ``obs`` (:func:`observation_matrix`)."""
        return observation_matrix(obs, self.use_label)

    def _train_net(
        self,
        x: np.ndarray,
        d_out: int,
        target: torch.Tensor,
        loss: Callable[..., torch.Tensor],
        rng_init: RngLike,
        rng_train: RngLike,
        output: nn.Module | None = None,
    ) -> None:
        """Fit the input standardizer on ``x``, build the MLP ``D' -> d_out`` (followed by
        ``output`` when given) initialized from ``rng_init``, and train it on ``(x, target)``
        with ``loss(model, xb, tb)`` and batches drawn from ``rng_train``; sets ``net`` and
        ``history``."""
        self._scaler = Standardizer(x)

        def build() -> nn.Module:
            body = mlp(x.shape[1], d_out, self.hidden, self.depth)
            return body if output is None else nn.Sequential(body, output)

        net = build_seeded(build, rng_init)
        self.history = train_model(
            net, (self._scaler(x), target), loss, self.epochs, self.batch_size, self.lr, rng_train
        )
        self.net = net

    def _net_input(self, observations: Observation) -> torch.Tensor:
        """The standardized network input for ``observations``, after checking that the
        attack is fitted, for their group size and their width."""
        if self.net is None:
            raise RuntimeError("fit the attack before using it")
        if observations.group_size != self.group_size:
            raise ValueError(
                f"attack fitted for K={self.group_size}, got {observations.group_size}"
            )
        x = self._inputs(observations)
        if x.shape[1] != self._scaler.mean.shape[1]:
            raise ValueError(
                f"observation width {x.shape[1]} != fitted {self._scaler.mean.shape[1]}"
            )
        return self._scaler(x)


def observation_matrix(obs: Observation, use_label: bool) -> np.ndarray:
    """The attacker's input vector per observation: payload, then the mixed label and
    the weights when present and ``use_label``. Returns ``(B, D')`` float32."""
    parts = [obs.payload]
    if use_label and obs.mixed_label is not None:
        parts.append(obs.mixed_label)
    if use_label and obs.weights is not None and obs.group_size > 1:
        parts.append(np.sort(obs.weights, axis=0).T)
    return np.concatenate(parts, axis=1).astype(np.float32)


class Standardizer:
    """Per-feature affine normalization fitted on auxiliary data (``(B, D)`` arrays)."""

    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(axis=0, keepdims=True)
        self.std = x.std(axis=0, keepdims=True) + 1e-6

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))


def mlp(d_in: int, d_out: int, hidden: int, depth: int = 2) -> nn.Sequential:
    """A ReLU MLP ``d_in -> hidden x depth -> d_out`` (no output activation)."""
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def build_seeded(factory: Callable[[], nn.Module], rng: RngLike) -> nn.Module:
    """Call ``factory()`` with torch's global generator temporarily seeded from ``rng``, so
    the module's initialization is reproducible without touching the caller's torch state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(make_rng(rng).integers(2**31)))
        return factory()


def train_model(
    model: nn.Module,
    tensors: tuple[torch.Tensor, ...],
    loss_fn: Callable[..., torch.Tensor],
    epochs: int,
    batch_size: int,
    lr: float,
    rng: RngLike,
    weight_decay: float = 0.0,
) -> list[float]:
    """Mini-batch Adam training with a cosine learning-rate schedule.

    Args:
        model: module to train in place.
        tensors: aligned tensors sharing the first dimension; each batch is passed as
            ``loss_fn(model, *batch)``.
        loss_fn: returns a scalar loss.
        epochs, batch_size, lr: optimizer settings (positive).
        rng: seeds the batch shuffling.
    Returns:
        Mean loss per epoch.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError("epochs, batch_size and lr must be positive")
    n = tensors[0].shape[0]
    gen = torch_generator(make_rng(rng))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * max(1, -(-n // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    history = []
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = loss_fn(model, *(t[idx] for t in tensors))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / n)
    model.eval()
    return history


#: attack name -> class (filled by the attack modules on import)
ATTACKS: Registry[type[Attack]] = Registry("attack")


#: class decorator adding an attack class to :data:`ATTACKS` under its ``name``
register = ATTACKS.add_named


def get_attack(name: str, **kwargs: Any) -> Attack:
    """Instantiate the attack registered as ``name`` with keyword arguments ``kwargs``."""
    import learning.attacks  # noqa: F401  (registers the built-in attacks)

    return ATTACKS[name](**kwargs)
