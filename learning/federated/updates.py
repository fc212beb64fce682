"""Model parameters as flat vectors and one user's local FedAvg training.

A model update is the flat float32 vector ``theta_local - theta_global`` of length ``P``
(:func:`count_parameters`), in the order of ``model.parameters()``. A user trains a copy of
the global model on its private data with plain SGD (FedAvg, McMahan et al. 2017) for
``local_epochs`` passes of mini-batches of ``batch_size`` and reports the update and its
sample count (the FedAvg weight).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from learning.data import Dataset
from learning.training import iterate_batches
from phy.rng import RngLike, torch_generator

__all__ = [
    "LocalUpdate",
    "count_parameters",
    "get_flat",
    "local_update",
    "set_flat",
]


def count_parameters(model: nn.Module) -> int:
    """Number ``P`` of trainable scalars of ``model``."""
    return int(sum(p.numel() for p in model.parameters()))


def get_flat(model: nn.Module) -> torch.Tensor:
    """The parameters of ``model`` as one detached float32 vector ``(P,)``."""
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().float().clone()


def set_flat(model: nn.Module, flat: torch.Tensor) -> None:
    """Overwrite the parameters of ``model`` with ``flat`` ``(P,)`` (in place)."""
    flat = torch.as_tensor(flat, dtype=torch.float32)
    if flat.shape != (count_parameters(model),):
        raise ValueError(
            f"flat vector of shape {tuple(flat.shape)} for a model of "
            f"{count_parameters(model)} parameters"
        )
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("parameter vector contains NaN or inf")
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(flat, model.parameters())


@dataclass
class LocalUpdate:
    """What one user sends after local training.

    Attributes:
        delta: float32 ``(P,)``, ``theta_local - theta_global``.
        n_samples: local data set size (the FedAvg weight numerator).
        loss: mean training loss of the local round.
        indices: int64 ``(S,)``, indices into ``data`` of the samples the round used
            (audit only: the ground truth of attacks on the update), in order of use.
    """

    delta: torch.Tensor
    n_samples: int
    loss: float
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def local_update(
    global_model: nn.Module,
    data: Dataset,
    local_epochs: int = 1,
    batch_size: int = 16,
    lr: float = 0.1,
    max_steps: int | None = None,
    rng: RngLike = None,
) -> LocalUpdate:
    """Train a copy of ``global_model`` on ``data`` with SGD and cross-entropy.

    Args:
        global_model: images ``(B, C, H, W)`` -> logits; not modified.
        data: the user's private data set (non-empty).
        local_epochs: passes over ``data`` (>= 1).
        batch_size: mini-batch size (>= 1).
        lr: SGD learning rate (> 0).
        max_steps: optional cap on the number of SGD steps (``1`` = FedSGD).
        rng: seeds the batch order.

    Returns:
        :class:`LocalUpdate` with the parameter difference.
    """
    if len(data) == 0:
        raise ValueError("a user with no data cannot train")
    if local_epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError("local_epochs, batch_size and lr must be positive")
    model = copy.deepcopy(global_model)
    model.train()
    start = get_flat(model)
    opt = torch.optim.SGD(model.parameters(), lr=float(lr))
    gen = torch_generator(rng)
    losses: list[float] = []
    used: list[np.ndarray] = []
    steps = 0
    for _ in range(int(local_epochs)):
        for idx in iterate_batches(len(data), int(batch_size), gen):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(data.x[idx]), data.y[idx])
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            used.append(np.asarray(idx, dtype=np.int64).reshape(-1))
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        if max_steps is not None and steps >= max_steps:
            break
    indices = np.concatenate(used) if used else np.zeros(0, np.int64)
    return LocalUpdate(get_flat(model) - start, len(data), float(np.mean(losses)), indices)
