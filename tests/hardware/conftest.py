"""Fixtures for the hardware tests: IIOD servers on 127.0.0.1 with free ports, always
stopped by finalizers."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from hardware.ad9361_model import AD9361Model
from hardware.iiod import IIODServer

TOOL_TIMEOUT_S = 30


@pytest.fixture
def model_server() -> Iterator[tuple[AD9361Model, IIODServer]]:
    """An AD9361 device model served without an RF side (attribute and protocol tests)."""
    model = AD9361Model()
    server = IIODServer(model.context, None, host="127.0.0.1", port=0, lock=model.lock).start()
    try:
        yield model, server
    finally:
        server.stop()


def run_tool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a libiio command-line tool with a timeout; skips if the tool is not installed."""
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} not installed (Debian package libiio-utils)")
    return subprocess.run(
        list(args), input=stdin, capture_output=True, timeout=TOOL_TIMEOUT_S, check=False
    )


@pytest.fixture
def lab() -> Iterator:
    """Two virtual Plutos (stock AD9363 ranges) on a seeded AWGN medium."""
    from hardware.virtual_pluto import VirtualPlutoLab

    with VirtualPlutoLab(2, seed=7, channel_model="awgn", medium_name=None) as running:
        yield running
