"""What the orchestrator and every node derive identically from one experiment config.

Nodes and the orchestrator run in different processes and never exchange data, so
everything they must agree on is *derived* here from the resolved config: named seeds,
the data set and its split over users, the method (:mod:`learning.methods`: its
context, initial models and payload layout) and the OFDM frame layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from learning.data import Dataset, UserSplit, downsample, load_dataset, split_users
from learning.methods import METHODS, make_method
from learning.methods.base import Method, MethodContext
from learning.methods.base import named_seed as _named_seed
from learning.mixup import make_policy
from orchestrator.config import ExperimentConfig
from phy.waveform import OfdmConfig


def named_seed(config: ExperimentConfig, *names: str | int) -> np.random.SeedSequence:
    """A seed for the component ``names`` (e.g. ``("medium", 3)``): independent streams
    per name, all fixed by ``experiment.seed``; stable across processes and runs."""
    return _named_seed(config.experiment.seed, *names)


def rng_for(config: ExperimentConfig, *names: str | int) -> np.random.Generator:
    """A numpy Generator for the component ``names`` (see :func:`named_seed`)."""
    return np.random.default_rng(named_seed(config, *names))


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
    """The data every party derives: train/test sets and the split over users."""

    train: Dataset
    test: Dataset
    split: UserSplit

    def user_data(self, user_index: int) -> Dataset:
        return self.train.subset(self.split.users[user_index])

    @property
    def auxiliary(self) -> Dataset:
        """The auxiliary split: public data every party may hold (the raw codec is
        fitted on it, and attackers train on it)."""
        return self.train.subset(self.split.auxiliary)


def load_experiment_data(config: ExperimentConfig) -> ExperimentData:
    """Load the data set and split it over users, seeded by the config."""
    root = config.data.root or None
    train, test = load_dataset(config.data.dataset, root)
    train, test = (
        downsample(train, config.data.downsample),
        downsample(test, config.data.downsample),
    )
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
    return ExperimentData(train, test, split)


def method_options(config: ExperimentConfig) -> dict:
    """The chosen method's ``[method]`` options (defaults filled in), without ``name``."""
    return {k: v for k, v in vars(config.method).items() if k != "name"}


def link_capabilities(config: ExperimentConfig) -> frozenset[str]:
    """What the digital link may carry beyond scalars in this run: exactly what the method
    declares (:meth:`learning.methods.base.Method.link_capabilities`); both ends grant it."""
    return frozenset(METHODS[config.method.name].link_capabilities(method_options(config)))


def method_context(config: ExperimentConfig, data: ExperimentData) -> MethodContext:
    """The :class:`learning.methods.base.MethodContext` of the experiment."""
    options = method_options(config)
    return MethodContext(
        data.train,
        data.test,
        data.split,
        dict(vars(config.model)),
        make_policy(config.channel.mixing),
        seed=config.experiment.seed,
        options=options,
    )


def build_method(config: ExperimentConfig, data: ExperimentData) -> Method:
    """The experiment's method (``[method] name``) over its data."""
    return make_method(config.method.name, method_context(config, data))


def ofdm_config(config: ExperimentConfig) -> OfdmConfig:
    """The OFDM frame configuration every party uses."""
    return OfdmConfig(sample_rate_hz=config.channel.sample_rate_hz)
