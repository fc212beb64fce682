"""Over-the-air mixup (OAM) as a defence against membership inference.

The target is trained exactly as :func:`learning.training.train_oam` trains the server's
model in raw mode (the in-process loop of the method ``airmix run`` runs): the members
are spread over ``users`` users (seeded IID split), each round groups them at random
into groups of ``group_size`` that transmit in one slot through the ``channel`` at
``snr_db`` with target weights from ``policy``; the server trains on the received
mixture and the mixed label. The model attacked is the server's classifier (images ->
logits), i.e. what the server ends with.

The attacker's shadow models imitate this with ``group_size``-sample static mixup at
equal weights (:class:`learning.defences.mixup.StaticMixup` with ``alpha = None``):
what it knows of the method is the group size and the equal target weights; it does
not simulate fading, power control or receiver noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from learning.data import Dataset
from learning.defences.base import ModelFactory, TrainSettings, register_defence
from learning.defences.mixup import StaticMixup
from learning.training import train_oam
from phy.rng import RngLike, make_rng, spawn


@register_defence
class OverTheAirMixup(StaticMixup):
    """OAM training of the target; ``group_size``-mixup shadows. See the module docstring.

    Args:
        users: users the members are spread over (>= group_size).
        group_size: users per slot (>= 2).
        channel, snr_db, policy: as in :func:`learning.training.train_oam`.
        arch, feature_dim: the server classifier's architecture (must be what the
            attacker's model factory builds: :func:`learning.models.build_classifier`).
    """

    name = "oam"

    def __init__(
        self,
        users: int = 8,
        group_size: int = 4,
        channel: str = "fading",
        snr_db: float = 20.0,
        policy: str = "equal",
        arch: str = "mlp",
        feature_dim: int = 32,
    ) -> None:
        super().__init__(alpha=None, k=group_size)
        if users < group_size:
            raise ValueError(f"users ({users}) must be >= group_size ({group_size})")
        self.users, self.group_size = int(users), int(group_size)
        self.channel, self.snr_db, self.policy = channel, float(snr_db), policy
        self.arch, self.feature_dim = arch, int(feature_dim)

    def describe(self) -> dict[str, Any]:
        return {
            "defence": self.name,
            "users": self.users,
            "group_size": self.group_size,
            "channel": self.channel,
            "snr_db": self.snr_db,
            "policy": self.policy,
            "arch": self.arch,
            "feature_dim": self.feature_dim,
        }

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
        """Train the server's model over the air on ``members`` spread over the users
        (``factory`` is unused: the method builds its own classifier from ``arch``)."""
        split_rng, train_rng = spawn(make_rng(rng), 2)
        members = np.asarray(members, dtype=np.int64).reshape(-1)
        users = np.array_split(split_rng.permutation(members), self.users)
        result = train_oam(
            Dataset(x, y, n_classes, "membership"),
            [np.sort(u) for u in users],
            mode="raw",
            group_size=self.group_size,
            policy=self.policy,
            channel=self.channel,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            lr=settings.lr,
            arch=self.arch,
            feature_dim=self.feature_dim,
            snr_db=self.snr_db,
            rng=train_rng,
        )
        return result.classifiers[0].eval()
