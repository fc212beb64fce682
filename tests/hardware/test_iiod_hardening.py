"""The IIOD server against hostile numbers: sizes the driver would refuse, malformed and
oversized lengths, connection floods and idle connections (issue 16, item 5)."""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardware.ad9361_model import AD9361Model
from hardware.iiod import IIODServer
from hardware.iiod.server import DMA_POOL_BYTES, MAX_KERNEL_BUFFERS, WRITE_MAX
from tests.hardware.conftest import run_tool

RX_MASK = b"00000003"


class Client:
    """A raw protocol client: send bytes, read reply lines."""

    def __init__(self, port: int, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; pending {self.buf[:80]!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def ask(self, request: bytes) -> bytes:
        self.send(request)
        return self.line()

    def closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hardened_server():
    """A model server with a small connection cap and a short idle time."""
    model = AD9361Model()
    server = IIODServer(
        model.context, None, port=0, lock=model.lock, max_connections=4, idle_timeout_s=0.5
    ).start()
    try:
        yield server
    finally:
        server.stop()


def _no_tracebacks(caplog) -> None:
    failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failed, [r.getMessage() for r in failed]


def test_open_refuses_what_the_driver_refuses_before_touching_the_radio(lab, caplog):
    radio = lab.radios[0]
    port = radio.port
    size_before, position_before = port.rx_buffer_size, port.stream_position
    client = Client(radio.server.port)
    try:
        # buffer/length is an unsigned int in the kernel: kstrtouint says ERANGE
        assert client.ask(b"OPEN cf-ad9361-lpc 99999999999 00000003\r\n") == b"%d" % -errno.ERANGE
        # fits in an unsigned int, but 4 kernel buffers of it exceed the DMA pool: ENOMEM
        too_big = DMA_POOL_BYTES // 4 // 4 + 1
        reply = client.ask(b"OPEN cf-ad9361-lpc %d 00000003\r\n" % too_big)
        assert reply == b"%d" % -errno.ENOMEM
        assert client.ask(b"OPEN cf-ad9361-lpc 0 00000003\r\n") == b"%d" % -errno.EINVAL
        # nothing was opened, so READBUF has no buffer and the stream never moved
        assert client.ask(b"READBUF cf-ad9361-lpc 4096\r\n") == b"%d" % -errno.EBADF
        assert radio.server.open_sessions(radio.model.context.find_device("cf-ad9361-lpc")) == 0
        assert (port.rx_buffer_size, port.stream_position) == (size_before, position_before)
        # a legal size still works on the same connection
        assert client.ask(b"OPEN cf-ad9361-lpc 1024 00000003\r\n") == b"0"
        client.send(b"READBUF cf-ad9361-lpc 4096\r\n")
        assert client.line() == b"4096"
        assert client.line() == b"00000003"
    finally:
        client.close()
    _no_tracebacks(caplog)


def test_kernel_buffer_count_is_bounded_and_counts_against_the_pool(lab):
    radio = lab.radios[0]
    client = Client(radio.server.port)
    try:
        big = b"SET cf-ad9361-lpc BUFFERS_COUNT %d\r\n" % (MAX_KERNEL_BUFFERS + 1)
        assert client.ask(big) == b"%d" % -errno.EINVAL
        assert client.ask(b"SET cf-ad9361-lpc BUFFERS_COUNT %d\r\n" % MAX_KERNEL_BUFFERS) == b"0"
        fits_with_four = DMA_POOL_BYTES // 4 // 4  # samples of 4 bytes, 4 buffers
        reply = client.ask(b"OPEN cf-ad9361-lpc %d 00000003\r\n" % fits_with_four)
        assert reply == b"%d" % -errno.ENOMEM
    finally:
        client.close()


@pytest.mark.parametrize(
    "request_line",
    [
        b"TIMEOUT " + b"9" * 5000 + b"\r\n",
        b"OPEN cf-ad9361-lpc " + b"1" * 5000 + b" 00000003\r\n",
        b"READBUF cf-ad9361-lpc " + b"7" * 5000 + b"\r\n",
        b"SET cf-ad9361-lpc BUFFERS_COUNT -" + b"3" * 5000 + b"\r\n",
        b"WRITE ad9361-phy ensm_mode " + b"5" * 5000 + b"\r\n",
        b"TIMEOUT 99999999999999999999\r\n",
    ],
    ids=["timeout", "open", "readbuf", "set", "write", "int64-overflow"],
)
def test_malformed_numbers_get_an_error_and_the_connection_lives(
    model_server, caplog, request_line
):
    _, server = model_server
    client = Client(server.port)
    try:
        assert client.ask(request_line) == b"%d" % -errno.EINVAL
        assert client.ask(b"VERSION\r\n") == b"0.24.airmix0"
    finally:
        client.close()
    _no_tracebacks(caplog)


def test_negative_write_length_does_not_swallow_the_next_commands(model_server):
    model, server = model_server
    client = Client(server.port)
    try:
        client.send(b"WRITE ad9361-phy ensm_mode -5\r\nVERSION\r\nREAD ad9361-phy ensm_mode\r\n")
        assert client.line() == b"%d" % -errno.EINVAL
        assert client.line() == b"0.24.airmix0"
        assert int(client.line()) > 0
    finally:
        client.close()


def test_oversized_write_is_drained_and_refused(model_server):
    model, server = model_server
    before = model.state.rx_lo_hz
    client = Client(server.port)
    try:
        payload = b"915000000\x00".ljust(WRITE_MAX + 1, b"\x00")
        client.send(b"WRITE ad9361-phy OUTPUT altvoltage0 frequency %d\r\n" % len(payload))
        client.send(payload)
        assert client.line() == b"%d" % -errno.E2BIG
        assert client.ask(b"VERSION\r\n") == b"0.24.airmix0"  # in sync after the payload
    finally:
        client.close()
    assert model.state.rx_lo_hz == before


def test_overlong_line_is_refused_once_and_the_next_line_is_served(model_server):
    _, server = model_server
    client = Client(server.port)
    try:
        client.send(b"READ " + b"x" * 100_000 + b"\r\nVERSION\r\n")
        assert client.line() == b"%d" % -errno.EINVAL
        assert client.line() == b"0.24.airmix0"
    finally:
        client.close()


def test_connections_are_capped_and_a_freed_slot_is_reusable(hardened_server):
    server = hardened_server
    held = [Client(server.port) for _ in range(4)]
    try:
        for client in held:
            assert client.ask(b"VERSION\r\n") == b"0.24.airmix0"
        extra = Client(server.port)
        assert extra.closed_by_peer()
        extra.close()
        held.pop().close()
        again = None
        for _ in range(100):  # the handler of the closed one frees its slot
            again = Client(server.port)
            try:
                if again.ask(b"VERSION\r\n") == b"0.24.airmix0":
                    break
            except ConnectionError:
                pass
            again.close()
            time.sleep(0.05)
        assert again is not None and again.ask(b"VERSION\r\n") == b"0.24.airmix0"
        held.append(again)
    finally:
        for client in held:
            client.close()


def test_idle_connections_are_closed(hardened_server):
    client = Client(hardened_server.port)
    try:
        assert client.ask(b"VERSION\r\n") == b"0.24.airmix0"
        assert client.closed_by_peer()  # nothing sent for longer than idle_timeout_s
    finally:
        client.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_stays_bounded_under_an_oversized_write_and_iio_info_still_works():
    """A separate virtual-Pluto process: streaming 128 MB into a WRITE that announces
    99,999,999,999 bytes must not grow its memory by more than a few MB."""
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "virtual-pluto", "--base-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline().split()
        uri = first[1]
        port = int(uri.rsplit(":", 1)[1])
        client = Client(port)
        assert client.ask(b"VERSION\r\n") == b"0.24.airmix0"
        before = _rss_kib(process.pid)
        client.send(b"WRITE ad9361-phy ensm_mode 99999999999\r\n")
        block = b"A" * (1 << 20)
        for _ in range(128):
            client.send(block)
        client.sock.settimeout(0.2)
        grown_kib = _rss_kib(process.pid) - before
        client.close()
        assert grown_kib < 16 * 1024, f"server memory grew by {grown_kib} KiB"
        result = run_tool("iio_info", "-u", uri)
        assert result.returncode == 0, result.stderr
        assert b"cf-ad9361-lpc" in result.stdout
    finally:
        process.terminate()
        process.wait(timeout=30)
