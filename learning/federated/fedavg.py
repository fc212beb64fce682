"""Federated averaging (McMahan et al. 2017) with digital or over-the-air aggregation.

Pieces (the in-process loop :func:`run_fedavg` and the runtime's method drive the same):

* :class:`FedAvgClient` - one user: private data and :func:`~learning.federated.updates.
  local_update`; with ``encrypt_at_rest`` its images are held only as FLEP ciphertexts
  under its own random key (:class:`~learning.federated.vault.EncryptedImageStore`,
  FLEP's data tier) and decrypted in memory for each local round;
* :class:`FedAvgServer` - the global model, participant sampling (partial participation:
  ``max(1, round(participation * n_users))`` users drawn without replacement each round)
  and the update ``theta <- theta + server_lr * estimate`` where ``estimate`` is the
  aggregator's estimate of ``sum_k p_k delta_k``, ``p_k = n_k / sum_{participants} n``;
* :func:`run_fedavg` - ``rounds`` rounds; records per round the test accuracy, the
  cumulative channel uses and digital bytes, the predicted aggregation MSE.

Seeds: the model initialisation, the participant draws, each client's batch order and the
aggregator's channel are independent children of one ``rng`` (:func:`phy.rng.spawn`), so
digital and OTA runs with the same seed start from the same model and draw the same
participants and batches.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from learning.data import Dataset, UserSplit
from learning.federated.aggregation import AggregateResult, Aggregator, make_aggregator
from learning.federated.cipher import FlepCipher
from learning.federated.updates import LocalUpdate, get_flat, local_update, set_flat
from learning.federated.vault import EncryptedImageStore
from learning.models import build_classifier
from learning.training import evaluate
from phy.rng import RngLike, derive_seed, make_rng, spawn

__all__ = [
    "FedAvgClient",
    "FedAvgConfig",
    "FedAvgResult",
    "FedAvgServer",
    "RoundRecord",
    "run_fedavg",
]


@dataclass
class FedAvgConfig:
    """Settings of a FedAvg run.

    Attributes:
        rounds: communication rounds (>= 1).
        participation: fraction of users drawn each round, in (0, 1].
        local_epochs, batch_size, lr, max_local_steps: local SGD (see ``local_update``).
        server_lr: step applied to the aggregate (1.0 = plain FedAvg).
        aggregation: ``"digital"`` or ``"ota"`` (see :mod:`learning.federated.aggregation`).
        channel: OTA channel name (``"fading"``, ``"awgn"``, ``"ideal"``).
        snr_db: receive SNR, dB (OTA noise; digital capacity-equivalent channel uses).
        group_size: users superposed per OTA slot.
        arch, feature_dim: the model (:func:`learning.models.build_classifier`).
        encrypt_at_rest: users keep their images FLEP-encrypted at rest (8-bit pixels).
    """

    rounds: int = 30
    participation: float = 0.5
    local_epochs: int = 1
    batch_size: int = 16
    lr: float = 0.1
    max_local_steps: int | None = None
    server_lr: float = 1.0
    aggregation: str = "digital"
    channel: str = "fading"
    snr_db: float = 20.0
    group_size: int = 8
    arch: str = "mlp"
    feature_dim: int = 32
    encrypt_at_rest: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or int(self.rounds) < 1:
            raise ValueError(f"rounds must be an int >= 1, got {self.rounds!r}")
        if not 0.0 < float(self.participation) <= 1.0:
            raise ValueError(f"participation must be in (0, 1], got {self.participation}")
        if not np.isfinite(self.server_lr) or self.server_lr <= 0:
            raise ValueError(f"server_lr must be finite and > 0, got {self.server_lr}")
        if self.aggregation not in ("digital", "ota"):
            raise ValueError(f"aggregation must be 'digital' or 'ota', got {self.aggregation!r}")

    def make_aggregator(self, rng: RngLike) -> Aggregator:
        """The aggregator these settings name, its channel seeded by ``rng``."""
        if self.aggregation == "digital":
            return make_aggregator("digital", snr_db=self.snr_db)
        return make_aggregator(
            "ota", channel=self.channel, snr_db=self.snr_db, group_size=self.group_size, rng=rng
        )


class FedAvgClient:
    """One user of FedAvg: private data and local training.

    Args:
        data: the user's private data set.
        rng: seeds the user's batch order across rounds.
        encrypt_at_rest: keep ``data`` only as FLEP ciphertexts under a fresh random key
            held by this client (``data`` itself is not kept).
    """

    def __init__(self, data: Dataset, rng: RngLike = None, encrypt_at_rest: bool = False) -> None:
        if len(data) == 0:
            raise ValueError("a FedAvg client needs at least one sample")
        self.store = (
            EncryptedImageStore(FlepCipher(FlepCipher.generate_key()), data)
            if encrypt_at_rest
            else None
        )
        self.data = None if encrypt_at_rest else data
        self._rng = make_rng(rng)

    def train(self, global_model: nn.Module, config: FedAvgConfig) -> LocalUpdate:
        """Local SGD from ``global_model``; returns the update (``global_model`` unchanged)."""
        data = self.store.dataset() if self.store is not None else self.data
        return local_update(
            global_model,
            data,
            local_epochs=config.local_epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            max_steps=config.max_local_steps,
            rng=self._rng,
        )


class FedAvgServer:
    """The FedAvg server: global model, participant sampling, aggregation and update.

    Args:
        model: the global model (updated in place).
        aggregator: how updates are summed.
        server_lr: step size on the aggregate.
        rng: draws the participants.
    """

    def __init__(
        self, model: nn.Module, aggregator: Aggregator, server_lr: float = 1.0, rng: RngLike = None
    ) -> None:
        self.model = model
        self.aggregator = aggregator
        self.server_lr = float(server_lr)
        self._rng = make_rng(rng)

    def sample(self, n_users: int, participation: float) -> np.ndarray:
        """Sorted indices of this round's participants."""
        m = max(1, int(round(float(participation) * n_users)))
        return np.sort(self._rng.choice(n_users, size=m, replace=False))

    def apply(self, updates: list[LocalUpdate]) -> AggregateResult:
        """Aggregate ``updates`` with FedAvg weights and step the global model."""
        if not updates:
            raise ValueError("no updates to aggregate")
        n = np.array([u.n_samples for u in updates], dtype=np.float64)
        result = self.aggregator.aggregate(torch.stack([u.delta for u in updates]), n / n.sum())
        set_flat(self.model, get_flat(self.model) + self.server_lr * result.estimate)
        return result


@dataclass
class RoundRecord:
    """One FedAvg round: ``accuracy`` on the test set after the update, cumulative
    ``channel_uses`` and ``digital_bytes``, this round's ``participants``, ``slots``,
    ``predicted_mse`` (per parameter) and mean local ``loss``."""

    round: int
    accuracy: float
    channel_uses: int
    digital_bytes: int
    participants: int
    slots: int
    predicted_mse: float
    loss: float


@dataclass
class FedAvgResult:
    """A FedAvg run: per-round records, the final model, its accuracy, wall time."""

    records: list[RoundRecord]
    model: nn.Module
    accuracy: float
    seconds: float
    n_parameters: int
    config: dict[str, Any] = field(default_factory=dict)


def run_fedavg(
    train: Dataset,
    test: Dataset,
    split: UserSplit,
    config: FedAvgConfig | None = None,
    rng: RngLike = None,
    progress: Any = None,
) -> FedAvgResult:
    """Run FedAvg in-process.

    Args:
        train, test: data sets; ``split.users`` index ``train`` (one array per user).
        config: :class:`FedAvgConfig` (defaults if None).
        rng: one seed for everything (see the module docstring).
        progress: optional callable ``progress(record)`` called after each round.

    Returns:
        :class:`FedAvgResult`.
    """
    config = config or FedAvgConfig()
    init_rng, sample_rng, channel_rng, *client_rngs = spawn(make_rng(rng), 3 + len(split.users))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(init_rng))
        model = build_classifier(
            train.input_shape, train.n_classes, config.arch, config.feature_dim
        )
    clients = [
        FedAvgClient(train.subset(idx), r, config.encrypt_at_rest)
        for idx, r in zip(split.users, client_rngs, strict=True)
    ]
    server = FedAvgServer(model, config.make_aggregator(channel_rng), config.server_lr, sample_rng)
    records: list[RoundRecord] = []
    uses = sent = 0
    start = time.perf_counter()
    for r in range(int(config.rounds)):
        chosen = server.sample(len(clients), config.participation)
        updates = [clients[i].train(server.model, config) for i in chosen]
        result = server.apply(updates)
        uses += result.channel_uses
        sent += result.digital_bytes
        record = RoundRecord(
            round=r + 1,
            accuracy=evaluate(server.model, test),
            channel_uses=uses,
            digital_bytes=sent,
            participants=len(chosen),
            slots=result.slots,
            predicted_mse=result.predicted_mse,
            loss=float(np.mean([u.loss for u in updates])),
        )
        records.append(record)
        if progress is not None:
            progress(record)
    return FedAvgResult(
        records,
        server.model,
        records[-1].accuracy,
        time.perf_counter() - start,
        int(get_flat(model).numel()),
        asdict(config),
    )
