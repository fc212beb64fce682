"""Over-the-air mixup (OAM) as a defence against membership inference.

The target is trained by the method ``airmix run`` runs - :class:`learning.methods.oam.
OverTheAirMixup` in raw mode - through the in-process runtime
(:func:`learning.methods.loop.run_method`, the radios replaced by the ``channel`` model
at ``snr_db``): the members are spread over ``users`` users (seeded IID split), each
round groups them at random into groups of ``group_size`` that transmit in one slot with
target weights from ``policy``; the server trains on the received mixture and the mixed
label. One round per epoch. The raw codec (a per-pixel mean and one scale) is fitted, as
in the run, on public data: here every sample of ``x`` that is not a member. The model
attacked is the server's classifier (images -> logits): what the server ends with.

The attacker's shadow models imitate this with ``group_size``-sample static mixup at
equal weights (:class:`learning.defences.mixup.StaticMixup` with ``alpha = None``):
what it knows of the method is the group size and the equal target weights; it does
not simulate fading, power control or receiver noise.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from learning.channels import make_channel
from learning.data import Dataset, UserSplit
from learning.defences.base import TargetTask, register_defence
from learning.defences.mixup import StaticMixup
from learning.mixup import make_policy
from phy.rng import RngLike, make_rng, spawn


@register_defence
class OverTheAirMixup(StaticMixup):
    """OAM training of the target; ``group_size``-mixup shadows. See the module docstring.

    Args:
        users: users the members are spread over (>= group_size).
        group_size: users per slot (>= 2).
        channel, snr_db: the channel model (:data:`learning.channels.OTA_CHANNELS`);
            policy: the mixing policy (:data:`learning.mixup.MIXING_POLICIES`).
        arch, feature_dim: the server classifier's architecture (must be what the
            attacker's model factory builds: :func:`learning.models.build_classifier`).
    """

    name = "oam"
    knobs = ("users", "group_size", "channel", "snr_db", "policy", "arch", "feature_dim")

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

    def fit_target(self, task: TargetTask, rng: RngLike) -> nn.Module:
        """Train the server's model over the air on the task's members spread over the
        users (its ``factory`` is unused: the method builds its own classifier from
        ``arch``)."""
        x, y, n_classes, settings = task.x, task.y, task.n_classes, task.settings
        from learning.methods import METHODS  # here: learning.methods imports the defences
        from learning.methods.base import MethodContext
        from learning.methods.loop import run_method

        split_rng, channel_rng, seed_rng = spawn(make_rng(rng), 3)
        members = task.members
        users = np.array_split(split_rng.permutation(members), self.users)
        data = Dataset(x, y, n_classes, "membership")
        public = np.setdiff1d(np.arange(len(y)), members)
        context = MethodContext(
            train=data,
            test=data.subset(public),
            split=UserSplit([np.sort(u) for u in users], public),
            model={
                "mode": "raw",
                "arch": self.arch,
                "feature_dim": self.feature_dim,
                "learning_rate": settings.lr,
                "batch_size": settings.batch_size,
            },
            mixing=make_policy(self.policy),
            seed=int(seed_rng.integers(2**31)),
        )
        method = METHODS["oam"](context)
        kwargs = {} if self.channel == "ideal" else {"snr_db": self.snr_db}
        channel = make_channel(self.channel, rng=channel_rng, **kwargs)
        run_method(method, channel, settings.epochs, group_size=self.group_size)
        return method.model.classifier.eval()
