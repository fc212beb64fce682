"""Training building blocks: the step-level API of over-the-air mixup and centralized
training.

Step-level API (driven by the mixup methods of :mod:`learning.methods.oam`, in process
and over radios alike):

* :class:`Server` holds the server-side model - the task head in feature mode, the whole
  model behind a :class:`~learning.models.RawCodec` decoder in raw mode - and its optimiser.
  :meth:`Server.server_step` trains on one received mixture and returns ``dL/dy``.
* :class:`User` holds private data and, in feature mode, its own encoder.
  :meth:`User.user_encode` produces the payload; :meth:`User.user_backward` back-propagates
  ``lambda_k * dL/dy`` through the encoder kept from the last encode and steps its optimiser.

Also :func:`train_centralized` (plain supervised training of one model on one data set,
the reference the methods are compared with), :func:`evaluate` (accuracy of a
classifier) and :func:`iterate_batches`. The training *loops* of the privacy methods are
:func:`learning.methods.loop.run_method` (in process) and ``orchestrator/engine.py``
(over radios).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from learning.data import Dataset
from learning.mixup import soft_cross_entropy
from learning.models import RawCodec
from phy.rng import RngLike, torch_generator

__all__ = [
    "RawModel",
    "Server",
    "TrainResult",
    "User",
    "evaluate",
    "iterate_batches",
    "train_centralized",
]

log = logging.getLogger(__name__)


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
        shared_encoder: ``encoder`` is an instance other users hold too (the common
            initial weights): it is never modified; the user copies it at its first
            :meth:`user_backward` (copy on write) and only then holds weights and Adam
            moments of its own. Payloads and updates are those of a private copy from the
            start; a user that never trains costs no encoder memory, and one that does
            keeps no gradients between updates.
    """

    def __init__(
        self,
        data: Dataset,
        encoder: nn.Module | None = None,
        codec: RawCodec | None = None,
        lr: float = 1e-3,
        batch_size: int = 32,
        rng: RngLike = None,
        shared_encoder: bool = False,
    ) -> None:
        if (encoder is None) == (codec is None):
            raise ValueError("give exactly one of encoder (feature mode) or codec (raw mode)")
        if len(data) == 0:
            raise ValueError("a user needs at least one sample")
        self.data = data
        self.encoder = encoder
        self.codec = codec
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.lr = _check_lr(lr)
        #: True while ``encoder`` is the instance shared with other users (copy on write)
        self.shares_encoder = encoder is not None and shared_encoder
        #: built on a shared encoder: also drops its gradients after each update (the
        #: encoder's size again); other users keep them for inspection
        self.lean = self.shares_encoder
        self.optimizer = (
            torch.optim.Adam(encoder.parameters(), lr=self.lr)
            if encoder is not None and not self.shares_encoder
            else None
        )
        self._generator = torch_generator(rng)
        self._batches: Iterator[torch.Tensor] = iter(())
        self._output: torch.Tensor | None = None
        self._input: torch.Tensor | None = None  # shared encoder: the last encoded batch

    def own_encoder(self) -> None:
        """Copy the shared encoder into one of this user's own, with its own Adam
        optimiser (no-op when the user already owns its encoder)."""
        if not self.shares_encoder:
            return
        self.encoder = copy.deepcopy(self.encoder)
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=self.lr)
        self.shares_encoder = False

    def optimizer_state(self) -> dict:
        """The Adam optimiser's state dict (a fresh optimiser's while the encoder is shared)."""
        if self.optimizer is None:
            return torch.optim.Adam(self.encoder.parameters(), lr=self.lr).state_dict()
        return self.optimizer.state_dict()

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
        if self.shares_encoder:  # no graph on shared weights: user_backward recomputes it
            self._input = x
            with torch.no_grad():
                self._output = self.encoder(x)
            return self._output
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
        if self.shares_encoder:  # first update: a copy of its own, the same forward on it
            self.own_encoder()
            self._output = self.encoder(self._input)
            self._input = None
        self.optimizer.zero_grad(set_to_none=True)
        self._output.backward(grad * float(weight))
        self.optimizer.step()
        if self.lean:  # no gradient kept between updates
            self.optimizer.zero_grad(set_to_none=True)
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
