"""The defence interface: how a model is trained, and the same recipe for many models at once.

A :class:`Defence` is a training option that trades accuracy for privacy against an
attacker holding the trained model (membership inference). Each defence can

* train one *target* model on its private samples (:meth:`Defence.train_target`), and
* train ``M`` models of the same architecture at once on ``M`` index sets of equal size
  (:meth:`Defence.train_stack`), as an attacker does for its shadow (reference) models.
  The ``M`` models are stacked with :func:`torch.func.stack_module_state` and run through
  :func:`torch.vmap`, so one batched matrix product trains them all: one step of Adam on
  the stacked parameters is exactly ``M`` independent Adam steps (Adam is element-wise
  and model ``m``'s loss depends on model ``m``'s parameters only).

Unless a defence overrides it, its target is trained by the same batched code with
``M = 1`` - the attacker's shadow models then follow the target's recipe exactly, which
is what a shadow-model attack (LiRA, Shokri) assumes.

Batch hooks: :meth:`Defence.transform_batch` turns a batch ``(M, B, ...)`` of inputs and
one-hot labels into what the models train on (mixup variants mix here), given the
fraction of training done; :meth:`Defence.gradients` computes the parameter gradients
(DP-SGD clips per sample and adds noise here).

Defences are selectable by name through :data:`DEFENCES` / :func:`get_defence`.
"""

from __future__ import annotations

import copy
from abc import ABC
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from phy.registry import Registry
from phy.rng import RngLike, make_rng, spawn, torch_generator

__all__ = [
    "DEFENCES",
    "Defence",
    "ModelStack",
    "TargetTask",
    "TrainSettings",
    "get_defence",
    "register_defence",
    "soft_cross_entropy_per_model",
]

ModelFactory = Callable[[], nn.Module]


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser settings shared by a target and its shadow models.

    Attributes:
        epochs: passes over each model's training set (>= 1).
        batch_size: samples per step per model (>= 1).
        lr: Adam learning rate (> 0).
        weight_decay: Adam's L2 penalty (>= 0).
    """

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not np.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be finite and > 0, got {self.lr}")
        if not np.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")


def soft_cross_entropy_per_model(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-model mean soft cross-entropy: logits and soft targets ``(M, B, C)`` -> ``(M,)``."""
    return -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean(dim=-1)


class ModelStack:
    """``M`` models of one architecture whose parameters are stacked on a leading axis.

    Args:
        template: a module of the architecture (its own weights are not used).
        params, buffers: stacked state from :func:`torch.func.stack_module_state`
            (each tensor ``(M, ...)``).
    """

    def __init__(
        self, template: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]
    ) -> None:
        self.template = copy.deepcopy(template).to("meta")
        self.params = params
        self.buffers = buffers

    @classmethod
    def initialise(cls, factory: ModelFactory, n_models: int, rng: RngLike) -> ModelStack:
        """``n_models`` fresh models from ``factory``, each initialised from its own seed."""
        models = []
        for child in spawn(rng, n_models):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(child.integers(2**62)))
                models.append(factory())
        params, buffers = stack_module_state(models)
        return cls(models[0], params, buffers)

    @property
    def n_models(self) -> int:
        return int(next(iter(self.params.values())).shape[0])

    def _call(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-model inputs ``(M, B, ...)`` -> logits ``(M, B, C)`` (differentiable)."""
        return torch.vmap(self._call)(self.params, self.buffers, x)

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """Every model on the same inputs ``(N, ...)`` -> logits ``(M, N, C)``."""
        call = torch.vmap(self._call, in_dims=(0, 0, None))
        parts = [
            call(self.params, self.buffers, x[s : s + batch_size])
            for s in range(0, len(x), batch_size)
        ]
        return torch.cat(parts, dim=1)

    def module(self, index: int) -> nn.Module:
        """Model ``index`` as an ordinary module (a copy; eval mode)."""
        model = copy.deepcopy(self.template).to_empty(device="cpu")
        state = {k: v[index].detach().clone() for k, v in {**self.params, **self.buffers}.items()}
        model.load_state_dict(state)
        return model.eval()


@dataclass(frozen=True)
class TargetTask:
    """What a target model is trained on.

    Attributes:
        factory: builds a fresh model; x: the pool's inputs ``(N, ...)``; y: its int64
        labels ``(N,)``; members: int64 ``(n,)`` indices of the target's training
        samples; n_classes: number of classes; settings: the optimiser settings.
    """

    factory: ModelFactory
    x: torch.Tensor
    y: torch.Tensor
    members: np.ndarray
    n_classes: int
    settings: TrainSettings


class Defence(ABC):
    """A training recipe; see the module docstring. Subclasses set :attr:`name` and
    override the hooks they change. ``describe()`` lists the knobs for reports."""

    name: ClassVar[str]

    #: the attributes :meth:`describe` reports (the defence's knobs)
    knobs: ClassVar[tuple[str, ...]] = ()

    def describe(self) -> dict[str, Any]:
        """The defence's name and knobs (:attr:`knobs`; JSON-serialisable)."""
        return {"defence": self.name, **{k: getattr(self, k) for k in self.knobs}}

    # ------------------------------------------------------------------ batch hooks
    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, progress: float, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the models train on: inputs ``(M, B, ...)`` and one-hot labels ``(M, B, C)``
        at ``progress`` in [0, 1) of training -> (inputs, soft labels) of the same shapes."""
        return x, y

    def gradients(
        self, stack: ModelStack, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[dict[str, torch.Tensor], float]:
        """Gradients of each model's mean batch loss w.r.t. its parameters (stacked like
        ``stack.params``) and the mean loss. ``x (M, B, ...)``, soft labels ``y (M, B, C)``."""
        params = list(stack.params.values())
        losses = soft_cross_entropy_per_model(stack.forward(x), y)
        grads = torch.autograd.grad(losses.sum(), params)
        return dict(zip(stack.params, grads, strict=True)), float(losses.mean().detach())

    # ------------------------------------------------------------------ training
    def train_stack(
        self,
        factory: ModelFactory,
        x: torch.Tensor,
        y: torch.Tensor,
        index_sets: np.ndarray,
        n_classes: int,
        settings: TrainSettings,
        rng: RngLike = None,
    ) -> ModelStack:
        """Train ``M`` models at once, model ``m`` on samples ``index_sets[m]``.

        Args:
            factory: builds one model (inputs ``(B, ...)`` -> logits ``(B, n_classes)``).
            x: inputs ``(N, ...)`` float; y: labels ``(N,)`` int64 in ``[0, n_classes)``.
            index_sets: ``(M, n)`` int indices into ``x`` (every model gets ``n`` samples).
            settings: optimiser settings; rng: seeds initialisation and batch order.
        Returns:
            The trained :class:`ModelStack`.
        """
        index_sets = np.asarray(index_sets, dtype=np.int64)
        if index_sets.ndim != 2 or index_sets.shape[0] < 1 or index_sets.shape[1] < 1:
            raise ValueError(
                f"index_sets must have shape (M, n) with M, n >= 1, got {index_sets.shape}"
            )
        if index_sets.min() < 0 or index_sets.max() >= len(x):
            raise IndexError(f"index_sets out of range for {len(x)} samples")
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        init_rng, order_rng = spawn(make_rng(rng), 2)
        stack = ModelStack.initialise(factory, index_sets.shape[0], init_rng)
        gen = torch_generator(order_rng)
        onehot = torch.nn.functional.one_hot(y, n_classes).to(torch.float32)
        sets = torch.from_numpy(index_sets)
        n = sets.shape[1]
        batch = min(settings.batch_size, n)
        steps = -(-n // batch)
        optimizer = torch.optim.Adam(
            stack.params.values(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        total = settings.epochs * steps
        for epoch in range(settings.epochs):
            order = sets.gather(1, torch.argsort(torch.rand(sets.shape, generator=gen), dim=1))
            for step in range(steps):
                idx = order[:, step * batch : (step + 1) * batch]
                xb, yb = self.transform_batch(
                    x[idx], onehot[idx], (epoch * steps + step) / total, gen
                )
                grads, _ = self.gradients(stack, xb, yb, gen)
                for name, param in stack.params.items():
                    param.grad = grads[name]
                optimizer.step()
        for param in stack.params.values():
            param.grad = None
            param.requires_grad_(False)
        return stack

    def train_target(
        self,
        factory: ModelFactory,
        x: torch.Tensor,
        y: torch.Tensor,
        members: np.ndarray,
        n_classes: int,
        settings: TrainSettings,
        rng: RngLike = None,
    ) -> nn.Module:
        """Train the target model on samples ``members`` (``(n,)`` indices into ``x``);
        returns it in eval mode (the recipe is :meth:`fit_target`)."""
        members = np.asarray(members, dtype=np.int64).reshape(-1)
        return self.fit_target(TargetTask(factory, x, y, members, n_classes, settings), rng)

    def fit_target(self, task: TargetTask, rng: RngLike) -> nn.Module:
        """The recipe of :meth:`train_target`. Default: :meth:`train_stack` with one model."""
        t = task
        stack = self.train_stack(
            t.factory, t.x, t.y, t.members.reshape(1, -1), t.n_classes, t.settings, rng
        )
        return stack.module(0)


#: defence name -> class (filled by the defence modules on import)
DEFENCES: Registry[type[Defence]] = Registry("defence")


#: class decorator adding a defence to :data:`DEFENCES` under its ``name``
register_defence = DEFENCES.add_named


def get_defence(name: str, **kwargs: Any) -> Defence:
    """Instantiate the defence registered as ``name`` with keyword arguments ``kwargs``
    (:class:`phy.registry.UnknownChoice` for an unknown name)."""
    import learning.defences  # noqa: F401  (registers the built-in defences)

    return DEFENCES.create(name, **kwargs)
