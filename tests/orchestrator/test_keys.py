"""`airmix keys`: key files, permissions, loading, refusal to overwrite."""

from __future__ import annotations

import stat

import pytest
import zmq

from orchestrator import cli
from orchestrator.keys import (
    KeyFileError,
    create_keys,
    load_node_keys,
    load_node_public_keys,
    load_server_keys,
)


def test_cli_creates_server_and_node_keys_with_private_secrets(tmp_path, capsys):
    directory = tmp_path / "keys"
    assert cli.main(["keys", str(directory), "--nodes", "3"]) == 0
    names = sorted(p.name for p in directory.iterdir())
    expected = [
        f"{n}.{ext}" for n in ("node0", "node1", "node2", "server") for ext in ("key", "key_secret")
    ]  # noqa: E501
    assert names == expected
    for path in directory.glob("*.key_secret"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "node2" in capsys.readouterr().out
    # a second run refuses to overwrite
    assert cli.main(["keys", str(directory), "--nodes", "1"]) == 2
    assert cli.main(["keys", str(directory), "--nodes", "-1"]) == 2


def test_keys_load_and_are_distinct_valid_curve_keys(tmp_path):
    paths = create_keys(tmp_path, names=["alpha", "beta"])
    assert set(paths.nodes) == {"alpha", "beta"}
    server_public, server_secret = load_server_keys(tmp_path)
    assert load_server_keys(tmp_path, secret=False) == (server_public, None)
    alpha = load_node_keys(tmp_path, "alpha")
    assert zmq.curve_public(alpha[1]) == alpha[0]  # the pair belongs together
    assert zmq.curve_public(server_secret) == server_public
    publics = load_node_public_keys(tmp_path)
    assert sorted(publics.values()) == ["alpha", "beta"] and server_public not in publics
    # adding nodes later keeps the server key
    create_keys(tmp_path, names=["gamma"])
    assert load_server_keys(tmp_path)[0] == server_public
    create_keys(tmp_path, names=["gamma"], overwrite=True)
    assert load_node_keys(tmp_path, "gamma")[0] in load_node_public_keys(tmp_path)


def test_bad_input(tmp_path):
    with pytest.raises(KeyFileError):
        load_node_keys(tmp_path, "missing")
    with pytest.raises(KeyFileError):
        load_node_public_keys(tmp_path / "nope")
    with pytest.raises(ValueError):
        create_keys(tmp_path, names=["server"])
    with pytest.raises(ValueError):
        create_keys(tmp_path / "fresh", names=["ok", "a/b"])
    assert not (tmp_path / "fresh").exists()  # nothing half written
    with pytest.raises(ValueError):
        create_keys(tmp_path, names=["x", "x"])
    with pytest.raises(ValueError):
        create_keys(tmp_path, -2)
