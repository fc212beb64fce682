"""The semantic-link interface, its registry, and the shared pass through the air.

A :class:`Link` is a task-oriented semantic link for one user per slot: a user-side
encoder (images ``(B, C, H, W)`` -> power-normalised features ``(B, D)``), what the user
puts on the air (:meth:`Link.transmit`, given the legitimate channel's noise-to-signal
ratio per real it knows from the closed loop), and the legitimate receiver's classifier
(:meth:`Link.predict`, received reals -> logits). Peers: ``"plain"``
(:mod:`learning.diffsem.plain`), ``"ibal"`` (:mod:`learning.diffsem.ibal`),
``"diffsem"`` (:mod:`learning.diffsem.diffsem_link`), selected by name through
:data:`LINKS` / :func:`make_link`.

:func:`air_pass` is the one path from images to received features (encoder, transmit,
:mod:`learning.diffsem.air`), used by training, evaluation and the eavesdropper's model
of its view alike.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from learning.data import Dataset
from learning.diffsem import air
from learning.diffsem.selfnoise import add_self_noise
from learning.diffsem.settings import LinkSettings
from learning.models import build_encoder, build_head
from phy.registry import Registry, UnknownChoice
from phy.rng import RngLike, derive_seed, make_rng, spawn, torch_generator

__all__ = ["LINKS", "AirPass", "Link", "air_pass", "link_accuracy", "make_link", "register"]


@dataclass
class AirPass:
    """One batch through the legitimate link.

    Attributes:
        features: encoder output ``(B, D)`` (power-normalised).
        sent: what the user transmitted ``(B, D)``.
        received: what the legitimate receiver demodulated ``(B, D)``.
        channel_nsr: the legitimate channel's noise-to-signal ratio per real ``(B,)``.
    """

    features: torch.Tensor
    sent: torch.Tensor
    received: torch.Tensor
    channel_nsr: np.ndarray


class Link(ABC):
    """A semantic link (module doc). Subclasses set :attr:`name` and :attr:`settings_type`.

    Args:
        settings: the link's settings (an instance of :attr:`settings_type`).
        input_shape: ``(C, H, W)`` of the images; n_classes: classes of the task.
        rng: seed or Generator; every draw of the link (initialisation, batches, air,
            self-noise) derives from it.
    """

    name: ClassVar[str]
    settings_type: ClassVar[type[LinkSettings]] = LinkSettings

    def __init__(
        self,
        settings: LinkSettings,
        input_shape: tuple[int, int, int],
        n_classes: int,
        rng: RngLike = None,
    ) -> None:
        if not isinstance(settings, self.settings_type):
            raise TypeError(f"{self.name} needs {self.settings_type.__name__}, got {settings!r}")
        self.settings = settings
        self.input_shape, self.n_classes = tuple(input_shape), int(n_classes)
        g_init, self._g_train, self._g_air = spawn(rng, 3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(g_init))
            self.encoder = build_encoder(self.input_shape, settings.feature_dim, settings.encoder)
            self.head = build_head(settings.feature_dim, self.n_classes)
        self.noise = torch.Generator().manual_seed(derive_seed(self._g_air))
        self.training_seconds = 0.0

    @property
    def noise_level(self) -> float | None:
        """The target total noise-to-signal ratio ``r_T`` up to which the users add
        self-noise (:mod:`learning.diffsem.selfnoise`), or None: they send their features
        as they are."""
        return None

    def transmit(
        self,
        features: torch.Tensor,
        channel_nsr: np.ndarray,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """What the user sends for power-normalised ``features`` ``(B, D)`` when its
        legitimate channel has noise-to-signal ratios ``channel_nsr`` ``(B,)``: the
        features self-noised up to :attr:`noise_level` (draws from ``generator``), or the
        features themselves when the link has no self-noise."""
        if self.noise_level is None:
            return features
        return add_self_noise(features, channel_nsr, self.noise_level, generator)

    @abstractmethod
    def predict(self, received: torch.Tensor, channel_nsr: np.ndarray) -> torch.Tensor:
        """The legitimate receiver's logits ``(B, n_classes)`` for received ``(B, D)``."""

    @abstractmethod
    def fit(self, train: Dataset) -> Link:
        """Train the link on ``train``; sets :attr:`training_seconds`; returns ``self``."""

    def fit_transmitter(self, train: Dataset) -> Link:
        """Train what the user side needs (encoder, transmit rule); default: the whole
        link (:meth:`fit`). Returns ``self``."""
        return self.fit(train)

    def eval(self) -> None:
        """Put every module of the link in eval mode."""
        for value in vars(self).values():
            if isinstance(value, nn.Module):
                value.eval()

    def train_through_air(
        self,
        train: Dataset,
        parameters: list[nn.Parameter],
        logits_fn: Callable[[AirPass], torch.Tensor],
        extra_loss: Callable[[AirPass, torch.Tensor, int], torch.Tensor] | None = None,
        before_epoch: Callable[[int], None] | None = None,
        epochs: int | None = None,
    ) -> float:
        """Adam on ``parameters`` for cross-entropy of ``logits_fn(pass)`` (+ ``extra_loss
        (pass, images, epoch)``), one legitimate SNR drawn uniformly from
        ``settings.train_snr_db`` per batch. Returns the wall-clock seconds."""
        s = self.settings
        optimizer = torch.optim.Adam(parameters, lr=s.lr)
        batches = torch.Generator().manual_seed(derive_seed(self._g_train))
        start = time.perf_counter()
        for epoch in range(epochs or s.epochs):
            if before_epoch is not None:
                before_epoch(epoch)
            self.encoder.train()
            self.head.train()
            for idx in torch.randperm(len(train), generator=batches).split(s.batch_size):
                snr_db = float(self._g_train.uniform(*s.train_snr_db))
                step = air_pass(self, train.x[idx], snr_db, self._g_air)
                loss = nn.functional.cross_entropy(logits_fn(step), train.y[idx])
                if extra_loss is not None:
                    loss = loss + extra_loss(step, train.x[idx], epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        self.eval()
        return time.perf_counter() - start


def air_pass(link: Link, images: torch.Tensor, snr_db: float, rng: RngLike = None) -> AirPass:
    """Images ``(B, C, H, W)`` through ``link``'s encoder and transmitter and the
    legitimate link at ``snr_db`` (:mod:`learning.diffsem.air`)."""
    s = link.settings
    g = make_rng(rng)
    features = link.encoder(images)
    gains = air.legit_gains(features.shape[0], snr_db, s.fading, s.policy, g)
    nsr = air.channel_nsr(gains, snr_db)
    sent = link.transmit(features, nsr, torch_generator(g))
    return AirPass(features, sent, air.receive(sent, gains, snr_db, g), nsr)


@torch.no_grad()
def link_accuracy(link: Link, test: Dataset, snr_db: float, rng: RngLike = None) -> float:
    """The legitimate receiver's top-1 accuracy in [0, 1] on ``test`` at ``snr_db``."""
    link.eval()
    step = air_pass(link, test.x, snr_db, rng)
    pred = link.predict(step.received, step.channel_nsr).argmax(dim=1)
    return float((pred == test.y).float().mean())


#: link name -> class
LINKS: Registry[type[Link]] = Registry("link")
#: class decorator adding a link class to :data:`LINKS` under its ``name``
register = LINKS.add_named


def make_link(
    name: str,
    input_shape: tuple[int, int, int],
    n_classes: int,
    settings: LinkSettings | dict[str, Any] | None = None,
    rng: RngLike = None,
) -> Link:
    """Build the link registered as ``name``; ``settings`` may be a mapping of fields."""
    import learning.diffsem  # noqa: F401  (registers the built-in links)

    try:
        cls = LINKS[name]
    except UnknownChoice as error:  # the field is the method's
        raise ValueError(f"method: {error}") from None
    if settings is None:
        settings = cls.settings_type()
    elif isinstance(settings, dict):
        from learning.diffsem.settings import settings_from_dict

        settings = settings_from_dict(cls.settings_type, settings)
    return cls(settings, input_shape, n_classes, rng)
