"""What the orchestrator and every node derive identically from one experiment config.

Nodes and the orchestrator run in different processes and never exchange data, so
everything they must agree on is *derived* here from the resolved config: named seeds,
the data set and its split over users, the raw-mode codec, the initial models, the OFDM
frame layout, and the payload layout.

Payload layout (one OTA slot, ``B`` samples per user)::

    per sample:  [ x-payload (D reals) | label tail (C reals, even-padded) ]
    one slot:    B samples, flattened row by row -> n_reals = B * (D + C_pad)

The label tail is ``sqrt(C_pad / 2) * onehot(y)`` (unit power per complex symbol, like
the x-payload), so the labels mix over the air with exactly the weights the data get;
the server reads the mixed label back from the tail (:func:`split_payload`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from learning.data import Dataset, UserSplit, load_dataset, split_users
from learning.models import RawCodec, build_classifier, build_encoder, build_head
from learning.training import RawModel
from orchestrator.config import ExperimentConfig
from phy.waveform import OfdmConfig


def named_seed(config: ExperimentConfig, *names: str | int) -> np.random.SeedSequence:
    """A seed for the component ``names`` (e.g. ``("medium", 3)``): independent streams
    per name, all fixed by ``experiment.seed``; stable across processes and runs."""
    words = [zlib.crc32(str(name).encode()) for name in names]
    return np.random.SeedSequence([config.experiment.seed, *words])


def rng_for(config: ExperimentConfig, *names: str | int) -> np.random.Generator:
    """A numpy Generator for the component ``names`` (see :func:`named_seed`)."""
    return np.random.default_rng(named_seed(config, *names))


def torch_seed_for(config: ExperimentConfig, *names: str | int) -> int:
    return int(named_seed(config, *names).generate_state(1, dtype=np.uint64)[0] >> 1)


def user_ids(config: ExperimentConfig) -> list[str]:
    """Ids of all users, ``u000, u001, ...`` (index order)."""
    return [f"u{index:03d}" for index in range(config.users.count)]


def node_users(config: ExperimentConfig) -> dict[str, list[str]]:
    """Users hosted by each node, round robin: the remote nodes named in the experiment,
    else local processes ``node0, node1, ...`` (``node0: [u000, u002, ...]``)."""
    ids = user_ids(config)
    names = list(config.users.remote_nodes) or [
        f"node{i}" for i in range(config.users.node_processes)
    ]
    return {name: ids[i :: len(names)] for i, name in enumerate(names)}


@dataclass(frozen=True)
class ExperimentData:
    """The data every party derives: train/test sets, the split, and the codec."""

    train: Dataset
    test: Dataset
    split: UserSplit
    codec: RawCodec

    def user_data(self, user_index: int) -> Dataset:
        return self.train.subset(self.split.users[user_index])

    @property
    def auxiliary(self) -> Dataset:
        return self.train.subset(self.split.auxiliary)


def load_experiment_data(config: ExperimentConfig) -> ExperimentData:
    """Load the data set and split it over users, seeded by the config.

    The raw-mode codec is fitted on the auxiliary split: public data every party may
    hold (so the server can decode without seeing any user's data)."""
    root = config.data.root or None
    train, test = load_dataset(config.data.dataset, root)
    split = split_users(
        train,
        config.users.count,
        scheme=config.data.split,
        alpha=config.data.alpha,
        labels_per_user=config.data.labels_per_user,
        auxiliary_fraction=config.data.auxiliary_fraction,
        rng=rng_for(config, "split"),
    )
    if len(split.auxiliary) == 0:
        raise ValueError("data.auxiliary_fraction leaves no auxiliary data to fit the codec on")
    codec = RawCodec.fit(train.subset(split.auxiliary).x)
    return ExperimentData(train, test, split, codec)


def payload_dim(config: ExperimentConfig, data: ExperimentData) -> int:
    """Reals per sample carrying the input (D): codec size (raw) or feature size."""
    if config.model.mode == "raw":
        return data.codec.payload_dim
    return config.model.feature_dim


def label_dim(n_classes: int) -> int:
    """Reals per sample carrying the label: the class count rounded up to even."""
    return n_classes + n_classes % 2


def pack_payload(x_payload: torch.Tensor, labels: torch.Tensor, n_classes: int) -> np.ndarray:
    """``(B, D)`` payloads and ``(B,)`` labels -> the slot's real vector ``(B*(D+C),)``."""
    c = label_dim(n_classes)
    tail = torch.zeros(labels.shape[0], c)
    tail[torch.arange(labels.shape[0]), labels] = float(np.sqrt(c / 2))
    return torch.cat([x_payload.detach().float(), tail], dim=1).reshape(-1).numpy()


def split_payload(
    vector: np.ndarray, batch: int, dim: int, n_classes: int, *, soft_label: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_payload` on a received mixture.

    Returns ``(mixed x-payload (B, D), mixed soft label (B, C))``; the soft label is the
    received tail rescaled, clipped at 0 and normalised to sum 1 per row (noise can make
    entries slightly negative). ``soft_label=False`` returns the rescaled tail as
    received (an eavesdropper's view, whose mixture weights are not real and
    non-negative)."""
    c = label_dim(n_classes)
    rows = torch.as_tensor(np.asarray(vector, dtype=np.float32)).reshape(batch, dim + c)
    label = rows[:, dim : dim + n_classes] / float(np.sqrt(c / 2))
    if not soft_label:
        return rows[:, :dim].contiguous(), label.contiguous()
    label = label.clamp(min=0)
    total = label.sum(dim=1, keepdim=True)
    uniform = torch.full_like(label, 1.0 / n_classes)
    label = torch.where(total > 1e-6, label / total.clamp(min=1e-6), uniform)
    return rows[:, :dim].contiguous(), label


def ofdm_config(config: ExperimentConfig) -> OfdmConfig:
    """The OFDM frame configuration every party uses."""
    return OfdmConfig(sample_rate_hz=config.channel.sample_rate_hz)


def build_server_model(config: ExperimentConfig, data: ExperimentData) -> nn.Module:
    """The server's model: the whole classifier behind the codec (raw) or the head."""
    torch.manual_seed(torch_seed_for(config, "server-model"))
    n_classes = data.train.n_classes
    if config.model.mode == "raw":
        classifier = build_classifier(
            data.train.input_shape, n_classes, config.model.arch, config.model.feature_dim
        )
        return RawModel(data.codec, classifier)
    return build_head(config.model.feature_dim, n_classes)


def build_user_encoder(config: ExperimentConfig, data: ExperimentData) -> nn.Module:
    """Feature mode: every user starts from the same encoder weights."""
    torch.manual_seed(torch_seed_for(config, "encoder-init"))
    return build_encoder(data.train.input_shape, config.model.feature_dim, config.model.arch)
