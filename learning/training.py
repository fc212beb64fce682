"""Training: the step-level API of over-the-air mixup (OAM) and the full training loops.

Step-level API (what the orchestrator drives over ZeroMQ):

* :class:`Server` holds the server-side model - the task head in feature mode, the whole
  model behind a :class:`~learning.models.RawCodec` decoder in raw mode - and its optimiser.
  :meth:`Server.server_step` trains on one received mixture and returns ``dL/dy``.
* :class:`User` holds private data and, in feature mode, its own encoder.
  :meth:`User.user_encode` produces the payload; :meth:`User.user_backward` back-propagates
  ``lambda_k * dL/dy`` through the encoder kept from the last encode and steps its optimiser.

Loops, all seeded through :mod:`phy.rng`:

* :func:`train_centralized` - plain supervised training of one model on one data set;
* :func:`train_oam` - groups of K users transmit in the same slot through an
  :class:`~learning.channels.OtaChannel`; weights from a :class:`~learning.mixup.MixingPolicy`;
* :func:`train_orthogonal` - baseline: one user per slot, no mixing (``train_oam`` with K=1);
* :func:`train_server_mixup` - baseline: each user sends alone (orthogonal slots) and the
  server mixes what it received (classic mixup: K=2, ``lambda ~ Beta(1, 1)`` by default);
* :func:`evaluate` - accuracy of a classifier on a data set.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from learning.channels import OtaChannel, make_channel
from learning.data import Dataset, UserSplit
from learning.mixup import MixingPolicy, make_policy, mix_labels, soft_cross_entropy
from learning.models import Classifier, RawCodec, build_classifier, build_encoder, build_head
from phy.rng import RngLike, derive_seed, make_rng, spawn, torch_generator

__all__ = [
    "MODES",
    "OamResult",
    "RawModel",
    "Server",
    "TrainResult",
    "User",
    "evaluate",
    "iterate_batches",
    "train_centralized",
    "train_oam",
    "train_orthogonal",
    "train_server_mixup",
]

log = logging.getLogger(__name__)

MODES = ("raw", "feature")


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_lr(lr: float) -> float:
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be finite and > 0, got {lr}")
    return float(lr)


def iterate_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches ``(<= batch_size,)`` of one shuffled pass over ``range(n)``."""
    perm = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield perm[start : start + batch_size]


class RawModel(nn.Module):
    """Raw mode server model: ``classifier(codec.decode(payload))``, payloads ``(B, D)``."""

    def __init__(self, codec: RawCodec, classifier: nn.Module) -> None:
        super().__init__()
        self.codec = codec
        self.classifier = classifier

    def forward(self, payload: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.codec.decode(payload))


class Server:
    """Server side of OAM training.

    Args:
        model: maps payloads ``(B, D)`` to logits ``(B, C)`` (feature mode: the head;
            raw mode: a :class:`RawModel`).
        lr: Adam learning rate (ignored when ``optimizer`` is given).
        optimizer: optional optimiser over ``model``'s parameters.
    """

    def __init__(
        self, model: nn.Module, lr: float = 1e-3, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        self.model = model
        self.optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=_check_lr(lr))

    def server_step(
        self, mixed_payload: torch.Tensor, mixed_label: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        """One optimiser step on a received mixture.

        Args:
            mixed_payload: float ``(B, D)``, the estimate of ``sum_k w_k x_k``.
            mixed_label: float ``(B, C)``, the soft label ``sum_k w_k onehot(y_k)``.

        Returns:
            ``(loss, grad)``: the soft cross-entropy (float) and ``dL/d mixed_payload``
            ``(B, D)``, to be broadcast once to the group.
        """
        if mixed_payload.ndim != 2 or mixed_label.ndim != 2:
            raise ValueError(
                f"expected payload (B, D) and label (B, C), got {tuple(mixed_payload.shape)} "
                f"and {tuple(mixed_label.shape)}"
            )
        if mixed_payload.shape[0] != mixed_label.shape[0]:
            raise ValueError("payload and label batch sizes differ")
        if not bool(torch.isfinite(mixed_payload).all()) or not bool(
            torch.isfinite(mixed_label).all()
        ):
            raise ValueError("mixed payload or label contains NaN or inf")
        payload = mixed_payload.detach().requires_grad_(True)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = soft_cross_entropy(self.model(payload), mixed_label)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), payload.grad.detach()


class User:
    """User side: private data and (feature mode) an encoder, or (raw mode) a codec.

    Args:
        data: the user's private data set.
        encoder: feature mode: the user's encoder ``(B, C, H, W) -> (B, D)``.
        codec: raw mode: the :class:`RawCodec` that turns images into payloads.
        lr: Adam learning rate of the encoder.
        batch_size: samples per :meth:`sample_batch`.
        rng: seed or Generator for the batch order.
    """

    def __init__(
        self,
        data: Dataset,
        encoder: nn.Module | None = None,
        codec: RawCodec | None = None,
        lr: float = 1e-3,
        batch_size: int = 32,
        rng: RngLike = None,
    ) -> None:
        if (encoder is None) == (codec is None):
            raise ValueError("give exactly one of encoder (feature mode) or codec (raw mode)")
        if len(data) == 0:
            raise ValueError("a user needs at least one sample")
        self.data = data
        self.encoder = encoder
        self.codec = codec
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.optimizer = (
            torch.optim.Adam(encoder.parameters(), lr=_check_lr(lr))
            if encoder is not None
            else None
        )
        self._generator = torch_generator(rng)
        self._batches: Iterator[torch.Tensor] = iter(())
        self._output: torch.Tensor | None = None

    @property
    def mode(self) -> str:
        return "feature" if self.encoder is not None else "raw"

    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Next ``(x (B, C, H, W), y (B,))`` from reshuffled passes over the user's data."""
        x, y, _ = self.sample_batch_with_indices()
        return x, y

    def sample_batch_with_indices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`sample_batch`, plus the batch's indices into the user's data."""
        idx = next(self._batches, None)
        if idx is None or len(idx) < min(self.batch_size, len(self.data)):
            self._batches = iterate_batches(len(self.data), self.batch_size, self._generator)
            idx = next(self._batches)
        return self.data.x[idx], self.data.y[idx], idx

    def reseed(self, rng: RngLike) -> None:
        """Restart the batch order from ``rng`` (called at each round so a resumed run
        draws exactly the batches an uninterrupted one would)."""
        self._generator = torch_generator(rng)
        self._batches = iter(())

    def user_encode(self, x: torch.Tensor) -> torch.Tensor:
        """Payload ``(B, D)`` for images ``x`` (detached; the graph is kept for backward)."""
        if self.encoder is None:
            return self.codec.encode(x)
        self.encoder.train()
        self._output = self.encoder(x)
        return self._output.detach()

    def user_backward(self, grad: torch.Tensor, weight: float) -> None:
        """Back-propagate ``weight * grad`` (``grad = dL/dy``, ``(B, D)``) through the encoder
        output of the last :meth:`user_encode` and step the optimiser. Raw mode: no-op (raw
        users have no trainable parameters)."""
        if self.encoder is None:
            return
        if self._output is None:
            raise RuntimeError("user_backward called before user_encode")
        if grad.shape != self._output.shape:
            raise ValueError(
                f"grad shape {tuple(grad.shape)} != payload {tuple(self._output.shape)}"
            )
        if not np.isfinite(weight):
            raise ValueError(f"weight must be finite, got {weight}")
        self.optimizer.zero_grad(set_to_none=True)
        self._output.backward(grad * float(weight))
        self.optimizer.step()
        self._output = None


@dataclass
class TrainResult:
    """Losses per step and wall-clock seconds of a centralized run."""

    losses: list[float]
    seconds: float


def train_centralized(
    model: nn.Module,
    train: Dataset,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    rng: RngLike = None,
    progress: bool = False,
) -> TrainResult:
    """Plain supervised training of ``model`` (images -> logits) with Adam and cross-entropy.

    Batches come from :func:`iterate_batches` with a generator seeded from ``rng``.
    """
    epochs = _check_positive_int("epochs", epochs)
    batch_size = _check_positive_int("batch_size", batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=_check_lr(lr))
    generator = torch_generator(rng)
    losses: list[torch.Tensor] = []
    model.train()
    start = time.perf_counter()
    for _ in tqdm(range(epochs), desc="centralized", disable=not progress, leave=False):
        for idx in iterate_batches(len(train), batch_size, generator):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(train.x[idx]), train.y[idx])
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
    seconds = time.perf_counter() - start
    return TrainResult([float(v) for v in losses], seconds)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 1024) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (images -> logits) on ``dataset``."""
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty data set")
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(dataset), batch_size):
        logits = model(dataset.x[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == dataset.y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(dataset)


@dataclass
class OamResult:
    """Outcome of :func:`train_oam` and its baselines.

    Attributes:
        classifiers: models mapping images to logits - feature mode: one per user (its
            encoder + the shared server head); raw mode: the server's one classifier.
        losses: server loss per step.
        server_steps: number of server optimiser steps.
        slots: channel slots used (one slot carries one transmission of ``B`` payloads).
        channel_uses: complex symbols sent per receiver = ``slots * B * D / 2``.
        mean_mse: mean expected MSE per complex symbol reported by the channel.
        seconds: wall-clock training time.
    """

    classifiers: list[nn.Module]
    losses: list[float] = field(default_factory=list)
    server_steps: int = 0
    slots: int = 0
    channel_uses: int = 0
    mean_mse: float = 0.0
    seconds: float = 0.0

    def accuracy(self, test: Dataset) -> float:
        """Mean test accuracy over :attr:`classifiers`."""
        return float(np.mean([evaluate(m, test) for m in self.classifiers]))


def _user_indices(split: UserSplit | Sequence[np.ndarray]) -> list[np.ndarray]:
    users = split.users if isinstance(split, UserSplit) else list(split)
    if not users:
        raise ValueError("need at least one user")
    return [np.asarray(u, dtype=np.int64) for u in users]


def _setup(
    train: Dataset,
    user_idx: list[np.ndarray],
    mode: str,
    arch: str,
    feature_dim: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[Server, list[User], list[nn.Module]]:
    """Build the server, the users and the evaluation classifiers (seeded)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    init_rng, *user_rngs = spawn(rng, 1 + len(user_idx))
    datasets = [train.subset(u) for u in user_idx]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(init_rng))
        if mode == "raw":
            codec = RawCodec.fit(train.subset(np.concatenate(user_idx)).x)
            classifier = build_classifier(train.input_shape, train.n_classes, arch, feature_dim)
            server = Server(RawModel(codec, classifier), lr=lr)
            users = [
                User(d, codec=codec, batch_size=batch_size, rng=r)
                for d, r in zip(datasets, user_rngs, strict=True)
            ]
            return server, users, [classifier]
        # feature mode: every user starts from the same encoder weights (sent by the server)
        encoder0 = build_encoder(train.input_shape, feature_dim, arch)
        head = build_head(feature_dim, train.n_classes)
    server = Server(head, lr=lr)
    users = [
        User(d, encoder=copy.deepcopy(encoder0), lr=lr, batch_size=batch_size, rng=r)
        for d, r in zip(datasets, user_rngs, strict=True)
    ]
    return server, users, [Classifier(u.encoder, head) for u in users]


def _run(
    server: Server,
    users: list[User],
    channel: OtaChannel,
    policy: MixingPolicy,
    group_size: int,
    n_classes: int,
    rounds: int,
    mix_at_server: bool,
    rng: np.random.Generator,
    result: OamResult,
    progress: bool,
    desc: str,
) -> None:
    """Run ``rounds`` rounds; each round regroups the users at random into groups of
    ``group_size`` (the last may be smaller) and runs one slot (OAM) or one slot per member
    (``mix_at_server``) per group, then one server step per group."""
    mses: list[float] = []
    for _ in tqdm(range(rounds), desc=desc, disable=not progress, leave=False):
        order = rng.permutation(len(users))
        for start in range(0, len(users), group_size):
            group = [users[i] for i in order[start : start + group_size]]
            batches = [u.sample_batch() for u in group]
            n = min(len(x) for x, _ in batches)  # equal batch sizes within a slot
            payloads = torch.stack(
                [u.user_encode(x[:n]) for u, (x, _) in zip(group, batches, strict=True)]
            )
            labels = torch.stack([y[:n] for _, y in batches])
            target = policy.draw(len(group), rng)
            if mix_at_server:
                outs = [channel.transmit(p[None], np.ones(1)) for p in payloads]
                label_w = policy.label_weights(target, None)
                received = torch.stack([o.estimate for o in outs])
                mixed = torch.einsum(
                    "k,kbd->bd", torch.as_tensor(label_w, dtype=received.dtype), received
                )
                user_w = label_w * np.array([o.effective_weights[0] for o in outs])
                mses += [o.mse for o in outs]
                result.slots += len(group)
            else:
                out = channel.transmit(payloads, target)
                mixed = out.estimate
                label_w = policy.label_weights(target, out.effective_weights)
                user_w = out.effective_weights
                mses.append(out.mse)
                result.slots += 1
            loss, grad = server.server_step(mixed, mix_labels(labels, label_w, n_classes))
            for user, w in zip(group, user_w, strict=True):
                user.user_backward(grad, float(w))
            result.losses.append(loss)
            result.server_steps += 1
            result.channel_uses += (len(group) if mix_at_server else 1) * n * payloads.shape[2] // 2
    result.mean_mse = float(np.mean(mses)) if mses else 0.0
    log.info(
        "%s: %d server steps, %d slots, final loss %.4f",
        desc,
        result.server_steps,
        result.slots,
        result.losses[-1] if result.losses else float("nan"),
    )


def _train_groups(
    train: Dataset,
    split: UserSplit | Sequence[np.ndarray],
    mode: str,
    group_size: int,
    policy: str | MixingPolicy,
    channel: str | OtaChannel,
    epochs: int,
    batch_size: int,
    lr: float,
    arch: str,
    feature_dim: int,
    snr_db: float,
    rng: RngLike,
    progress: bool,
    mix_at_server: bool,
    desc: str,
) -> OamResult:
    group_size = _check_positive_int("group_size", group_size)
    epochs = _check_positive_int("epochs", epochs)
    batch_size = _check_positive_int("batch_size", batch_size)
    gen = make_rng(rng)
    setup_rng, channel_rng, run_rng = spawn(gen, 3)
    user_idx = _user_indices(split)
    server, users, classifiers = _setup(
        train, user_idx, mode, arch, feature_dim, lr, batch_size, setup_rng
    )
    if isinstance(policy, str):
        policy = make_policy(policy)
    if isinstance(channel, str):
        kwargs = {} if channel == "ideal" else {"snr_db": snr_db}
        channel = make_channel(channel, rng=channel_rng, **kwargs)
    # one round = one batch from every user; an epoch = one pass over the mean user's data
    mean_size = float(np.mean([len(u) for u in user_idx]))
    rounds = epochs * max(1, int(np.ceil(mean_size / batch_size)))
    result = OamResult(classifiers)
    start = time.perf_counter()
    _run(
        server,
        users,
        channel,
        policy,
        group_size,
        train.n_classes,
        rounds,
        mix_at_server,
        run_rng,
        result,
        progress,
        desc,
    )
    result.seconds = time.perf_counter() - start
    return result


def train_oam(
    train: Dataset,
    split: UserSplit | Sequence[np.ndarray],
    mode: str = "feature",
    group_size: int = 4,
    policy: str | MixingPolicy = "equal",
    channel: str | OtaChannel = "fading",
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 1e-3,
    arch: str = "cnn",
    feature_dim: int = 32,
    snr_db: float = 20.0,
    rng: RngLike = None,
    progress: bool = False,
) -> OamResult:
    """Over-the-air mixup training.

    Every round, the users (``split``: a :class:`UserSplit` or index arrays into ``train``)
    are regrouped at random into groups of ``group_size``; each group member draws a batch,
    all members transmit in one slot through ``channel`` (name from
    :data:`learning.channels.OTA_CHANNELS`, built with ``snr_db``, or an instance) with
    target weights from ``policy`` (name from :data:`learning.mixup.MIXING_POLICIES` or an
    instance); the server trains on ``(estimate, mixed label)`` and, in feature mode, each
    user back-propagates ``effective_weight_k * dL/dy``. ``mode`` is ``"raw"`` (users send
    :class:`RawCodec` payloads, the server holds the whole ``arch`` classifier) or
    ``"feature"`` (users hold ``arch`` encoders with ``feature_dim`` outputs, all initialised
    alike; the server holds the head). An epoch is ``ceil(mean user size / batch_size)``
    rounds. Returns an :class:`OamResult`.
    """
    return _train_groups(
        train,
        split,
        mode,
        group_size,
        policy,
        channel,
        epochs,
        batch_size,
        lr,
        arch,
        feature_dim,
        snr_db,
        rng,
        progress,
        mix_at_server=False,
        desc=f"oam K={group_size}",
    )


def train_orthogonal(
    train: Dataset,
    split: UserSplit | Sequence[np.ndarray],
    mode: str = "feature",
    channel: str | OtaChannel = "fading",
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 1e-3,
    arch: str = "cnn",
    feature_dim: int = 32,
    snr_db: float = 20.0,
    rng: RngLike = None,
    progress: bool = False,
) -> OamResult:
    """Baseline: one user per slot, no mixing (the server trains on each user's payload
    alone). Same arguments as :func:`train_oam`."""
    return _train_groups(
        train,
        split,
        mode,
        1,
        "equal",
        channel,
        epochs,
        batch_size,
        lr,
        arch,
        feature_dim,
        snr_db,
        rng,
        progress,
        mix_at_server=False,
        desc="orthogonal",
    )


def train_server_mixup(
    train: Dataset,
    split: UserSplit | Sequence[np.ndarray],
    mode: str = "feature",
    group_size: int = 2,
    policy: str | MixingPolicy | None = None,
    channel: str | OtaChannel = "fading",
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 1e-3,
    arch: str = "cnn",
    feature_dim: int = 32,
    snr_db: float = 20.0,
    rng: RngLike = None,
    progress: bool = False,
) -> OamResult:
    """Baseline: classic mixup done by the server. Each group member transmits alone
    (orthogonal slots); the server mixes the ``group_size`` received payloads and labels
    with weights from ``policy`` (default ``Dirichlet(1)``: with K=2, ``lambda ~ Beta(1, 1)``
    as in Zhang et al.'s mixup). Other arguments as in :func:`train_oam`."""
    if policy is None:
        policy = make_policy("dirichlet", alpha=1.0)
    return _train_groups(
        train,
        split,
        mode,
        group_size,
        policy,
        channel,
        epochs,
        batch_size,
        lr,
        arch,
        feature_dim,
        snr_db,
        rng,
        progress,
        mix_at_server=True,
        desc="server mixup",
    )
