"""CurveZMQ key pairs of an experiment: ``airmix keys DIR [--nodes N]`` and a Python API.

A key directory holds ``server.key`` / ``server.key_secret`` (the orchestrator) and
``<node_id>.key`` / ``<node_id>.key_secret`` per node (default ids ``node0`` ..
``node{N-1}``), written by :func:`zmq.auth.create_certificates`. Secret files are
mode 0600. The orchestrator admits exactly the nodes whose ``.key`` files are in the
directory (:func:`load_node_public_keys`); each node needs ``server.key`` and its own
secret file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

SERVER_NAME = "server"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class KeyFileError(FileNotFoundError):
    """A key file is missing or unreadable."""


@dataclass(frozen=True)
class KeyPaths:
    """Files written by :func:`create_keys`: the server's and each node's (public, secret)."""

    server: tuple[Path, Path]
    nodes: dict[str, tuple[Path, Path]]


def node_names(n_nodes: int) -> list[str]:
    """The default node ids ``node0`` .. ``node{n_nodes-1}``."""
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 0:
        raise ValueError(f"n_nodes must be a non-negative int, got {n_nodes!r}")
    return [f"node{i}" for i in range(n_nodes)]


def _write_pair(directory: Path, name: str, overwrite: bool) -> tuple[Path, Path]:
    if not _NAME.match(name):
        raise ValueError(f"key name must match {_NAME.pattern}, got {name!r}")
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not overwrite and (public.exists() or secret.exists()):
        raise FileExistsError(f"{public} already exists (use overwrite / --force)")
    old_umask = os.umask(0o077)  # the secret file is never world-readable, not even briefly
    try:
        pub_str, sec_str = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old_umask)
    os.chmod(sec_str, 0o600)
    os.chmod(pub_str, 0o644)
    return Path(pub_str), Path(sec_str)


def create_keys(
    directory: str | Path,
    n_nodes: int = 0,
    *,
    names: list[str] | None = None,
    overwrite: bool = False,
) -> KeyPaths:
    """Create the server key pair (if absent) and node key pairs in ``directory``.

    Args:
        directory: created (mode 0700) if missing.
        n_nodes: number of nodes named ``node0``.. (ignored when ``names`` is given).
        names: explicit node ids.
        overwrite: replace existing key files (otherwise FileExistsError; an existing
            server key pair is kept and reused).
    """
    names = list(names) if names is not None else node_names(n_nodes)
    directory = Path(directory)
    if SERVER_NAME in names or len(set(names)) != len(names):
        raise ValueError(f"node names must be unique and not {SERVER_NAME!r}")
    for name in names:  # check all before writing anything
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"key name must match {_NAME.pattern}, got {name!r}")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    server_pub = directory / f"{SERVER_NAME}.key"
    if server_pub.exists() and not overwrite:
        server = (server_pub, directory / f"{SERVER_NAME}.key_secret")
    else:
        server = _write_pair(directory, SERVER_NAME, overwrite)
    nodes = {name: _write_pair(directory, name, overwrite) for name in names}
    return KeyPaths(server=server, nodes=nodes)


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise KeyFileError(f"key file {path} not found (create keys with `airmix keys DIR`)")
    public, secret_key = zmq.auth.load_certificate(path)
    if secret and secret_key is None:
        raise KeyFileError(f"{path} holds no secret key")
    return public, secret_key


def load_server_keys(directory: str | Path, *, secret: bool = True) -> tuple[bytes, bytes | None]:
    """The orchestrator's (public, secret) z85 keys; ``secret=False`` reads only server.key."""
    name = f"{SERVER_NAME}.key_secret" if secret else f"{SERVER_NAME}.key"
    return _load(Path(directory) / name, secret)


def load_node_keys(directory: str | Path, node_id: str) -> tuple[bytes, bytes]:
    """A node's (public, secret) z85 keys."""
    public, secret = _load(Path(directory) / f"{node_id}.key_secret", True)
    assert secret is not None
    return public, secret


def load_node_public_keys(directory: str | Path) -> dict[bytes, str]:
    """Every node public key in ``directory``: z85 key -> node id (file stem)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyFileError(f"key directory {directory} not found")
    keys = {}
    for path in sorted(directory.glob("*.key")):
        if path.stem == SERVER_NAME:
            continue
        public, _ = _load(path, False)
        keys[public] = path.stem
    return keys


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``airmix keys``."""
    parser.add_argument("directory", type=Path, help="key directory (created if missing)")
    parser.add_argument("--nodes", type=int, default=1, help="number of node key pairs")
    parser.add_argument("--names", nargs="+", help="explicit node ids instead of node0..")
    parser.add_argument("--force", action="store_true", help="overwrite existing keys")


def main(args: argparse.Namespace) -> int:
    """Create the keys; print the files; exit code 0, or 2 on bad input."""
    if args.nodes < 0:
        print("error: --nodes must be >= 0", file=sys.stderr)
        return 2
    try:
        paths = create_keys(args.directory, args.nodes, names=args.names, overwrite=args.force)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"server: {paths.server[0]} (secret {paths.server[1]})")
    for name, (public, secret) in paths.nodes.items():
        print(f"{name}: {public} (secret {secret})")
    return 0
