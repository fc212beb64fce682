"""Checks of an experiment that only the data or the operating system can refute, run
before anything is written.

The schema (:mod:`orchestrator.config`) checks each field's type and range; these
checks need the data set or the machine: how many users the data can feed, whether the
output folder can be created, whether the orchestrator can listen where it is told to.
Each failure is a :class:`~orchestrator.config.ConfigError` naming the field, so the
``airmix run`` and ``airmix sweep`` commands exit 2 with nothing written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from orchestrator.config import ConfigError, ExperimentConfig


def check_data(config: ExperimentConfig) -> None:
    """The data set loads and can be split over ``users.count`` users as configured.

    Raises:
        ConfigError: naming ``data.root``/``data.dataset`` (cannot load),
            ``users.count`` (more users than training samples left after the auxiliary
            split), or the split field the data refutes.
    """
    from learning.data import load_dataset
    from orchestrator.experiment import load_experiment_data

    root = config.data.root or None
    try:
        train, _ = load_dataset(config.data.dataset, root)
    except (OSError, ValueError) as error:
        field = "data.root" if root else "data.dataset"
        raise ConfigError(field, f"cannot load {config.data.dataset!r}: {error}") from error
    counts = np.bincount(train.y.numpy(), minlength=train.n_classes)
    fraction = config.data.auxiliary_fraction
    pool = int(sum(int(c) - int(round(fraction * int(c))) for c in counts))
    if config.users.count > pool:
        raise ConfigError(
            "users.count",
            f"must be <= {pool} (training samples of {config.data.dataset!r} left after the "
            f"auxiliary split), got {config.users.count}",
        )
    try:
        load_experiment_data(config)
    except ValueError as error:
        if "auxiliary" in str(error):
            field = "data.auxiliary_fraction"
        elif config.data.split == "dirichlet":
            field = "data.alpha"
        else:
            field = "data.split"
        raise ConfigError(field, str(error)) from error


def check_out_dir(out_dir: Path, field: str) -> None:
    """``out_dir`` is a directory this process can write in, or can be created (its
    nearest existing ancestor is a writable directory). Creates nothing.

    Raises:
        ConfigError: naming ``field`` (``experiment.out_dir`` or ``--out``).
    """
    path = Path(out_dir).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(field, f"cannot create {out_dir}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot create {out_dir}: {existing} is not writable")


def check_endpoint(config: ExperimentConfig) -> None:
    """The orchestrator can listen on ``link.endpoint`` (binds a socket, then closes it).

    Raises:
        ConfigError: naming ``link.endpoint``.
    """
    import zmq

    socket = zmq.Context.instance().socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.bind(config.link.endpoint)
    except zmq.ZMQError as error:
        raise ConfigError(
            "link.endpoint", f"cannot listen on {config.link.endpoint!r}: {error}"
        ) from error
    finally:
        socket.close()


def check_nodes(config: ExperimentConfig) -> None:
    """Every node can host its share of the users: a node's hello lists them, at most
    :data:`orchestrator.messages.MAX_LIST` (4,096).

    Raises:
        ConfigError: naming ``users.node_processes`` (or ``users.remote_nodes``) and the
            nodes needed.
    """
    from orchestrator.messages import MAX_LIST

    nodes = len(config.users.remote_nodes) or config.users.node_processes
    if -(-config.users.count // nodes) > MAX_LIST:
        field = "users.remote_nodes" if config.users.remote_nodes else "users.node_processes"
        raise ConfigError(
            field,
            f"a node hosts at most {MAX_LIST} users (its hello lists them): "
            f"{config.users.count} users need at least {-(-config.users.count // MAX_LIST)} "
            f"nodes, got {nodes}",
        )


def check_experiment(config: ExperimentConfig, out_dir: Path, out_field: str) -> None:
    """Every check of this module (see each for what it raises)."""
    check_out_dir(out_dir, out_field)
    check_endpoint(config)
    check_data(config)
    check_nodes(config)
