"""Fuzzing the virtual Pluto's IIOD server with generated hostile inputs.

Each input is one request (sometimes with a payload): random bytes, protocol commands
with hostile numbers (huge, negative, 5,000 digits, outside a C long), hostile names and
masks, payloads shorter or longer than announced. Inputs go out ten per connection on
several connections at once; whatever the server answers is read (up to a cap) and the
connection closed. Afterwards the server must have logged no handler failure, hold no
connection or buffer, and still serve ``adi.Pluto`` correctly (a cyclic tone sent by one
virtual Pluto is found at the right frequency by the other).
"""

from __future__ import annotations

import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hardware.virtual_pluto import TX_ROOM_TIMEOUT_S
from tests.hardware.test_virtual_pluto import (
    test_cyclic_tx_is_received_by_another_pluto as _tone_round_trip,
)

DEVICES = [
    b"ad9361-phy",
    b"cf-ad9361-lpc",
    b"cf-ad9361-dds-core-lpc",
    b"iio:device0",
    b"iio:device1",
    b"iio:device2",
    b"nodev",
    b"../../etc",
    b"",
]
NUMBERS = [
    b"0",
    b"1",
    b"-1",
    b"4",
    b"1024",
    b"4096",
    b"65537",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"99999999999",
    b"9" * 5000,
    b"-" + b"1" * 300,
    b"12abc",
    b"0x10",
    b"1e9",
    b"+7",
    b"",
]
MASKS = [b"00000003", b"00000001", b"00000000", b"ffffffff", b"0000000g", b"3", b"0" * 4000]
ATTRIBUTES = [
    b"",
    b"INPUT voltage0 hardwaregain",
    b"OUTPUT altvoltage0 frequency",
    b"OUTPUT altvoltage1 frequency",
    b"INPUT voltage0 gain_control_mode",
    b"ensm_mode",
    b"DEBUG direct_reg_access",
    b"BUFFER data_available",
    b"INPUT nochan x",
    b"OUTPUT",
]
KEYWORDS = [
    b"VERSION",
    b"PRINT",
    b"ZPRINT",
    b"HELP",
    b"TIMEOUT",
    b"OPEN",
    b"CLOSE",
    b"READ",
    b"WRITE",
    b"READBUF",
    b"WRITEBUF",
    b"SETTRIG",
    b"GETTRIG",
    b"SET",
    b"read",
    b"Open",
]
CONNECTIONS_AT_ONCE = 4
INPUTS_PER_CONNECTION = 10
READ_CAP = 1 << 20


def _pick(rng: np.random.Generator, options: list[bytes]) -> bytes:
    return options[int(rng.integers(len(options)))]


def hostile_input(rng: np.random.Generator) -> bytes:
    """One generated hostile request (with its payload, if any)."""
    kind = int(rng.integers(8))
    end = _pick(rng, [b"\r\n", b"\n", b"\r", b"", b"\x00\r\n"])
    if kind == 0:  # random bytes
        return rng.bytes(int(rng.integers(0, 300))) + end
    if kind == 1:  # a keyword with random tokens
        tokens = [_pick(rng, KEYWORDS)] + [
            _pick(rng, DEVICES + NUMBERS + MASKS) for _ in range(int(rng.integers(0, 5)))
        ]
        return b" ".join(tokens) + end
    if kind == 2:  # OPEN with hostile sizes and masks
        cyclic = b" CYCLIC" if rng.random() < 0.3 else b""
        device, number, mask = _pick(rng, DEVICES), _pick(rng, NUMBERS), _pick(rng, MASKS)
        return b"OPEN %s %s %s%s%s" % (device, number, mask, cyclic, end)
    if kind == 3:  # READBUF / WRITEBUF with hostile counts, sometimes with data
        op = _pick(rng, [b"READBUF", b"WRITEBUF"])
        data = rng.bytes(int(rng.integers(0, 5000))) if op == b"WRITEBUF" else b""
        return b"%s %s %s%s" % (op, _pick(rng, DEVICES), _pick(rng, NUMBERS), end) + data
    if kind == 4:  # WRITE whose payload is shorter, longer or as long as announced
        announced = _pick(rng, NUMBERS)
        try:
            size = max(0, min(int(announced), 70_000))
        except ValueError:
            size = int(rng.integers(0, 100))
        size = int(size * rng.choice([0.5, 1.0, 1.5]))
        payload = rng.bytes(size) if rng.random() < 0.5 else b"1000000\x00".ljust(size, b"7")
        device, attribute = _pick(rng, DEVICES), _pick(rng, ATTRIBUTES)
        return b"WRITE %s %s %s%s" % (device, attribute, announced, end) + payload
    if kind == 5:  # READ of anything
        return b"READ %s %s%s" % (_pick(rng, DEVICES), _pick(rng, ATTRIBUTES), end)
    if kind == 6:  # SET / TIMEOUT with hostile numbers
        if rng.random() < 0.5:
            return b"TIMEOUT %s%s" % (_pick(rng, NUMBERS), end)
        return b"SET %s BUFFERS_COUNT %s%s" % (_pick(rng, DEVICES), _pick(rng, NUMBERS), end)
    # a legal buffer sequence with a hostile tail
    return (
        b"OPEN cf-ad9361-lpc 256 00000003\r\nREADBUF cf-ad9361-lpc %s\r\n" % _pick(rng, NUMBERS)
        + b"OPEN cf-ad9361-dds-core-lpc 256 00000003 CYCLIC\r\nWRITEBUF "
        + b"cf-ad9361-dds-core-lpc 1024\r\n"
        + rng.bytes(int(rng.integers(0, 2048)))
    )


def _one_connection(port: int, inputs: list[bytes]) -> None:
    """Send ``inputs`` on one connection, read the replies up to a cap, close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            for request in inputs:
                sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            received = 0
            while received < READ_CAP:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
        except (TimeoutError, ConnectionError):
            pass  # the server may close on us or wait for a payload we never send


def fuzz(radio, n_inputs: int, seed: int) -> None:
    """Send ``n_inputs`` generated hostile inputs to ``radio``'s server.

    Hostile inputs push TX streams and abandon them; an RX read then waits (by design,
    ``medium.pusher_wait_s``, 5 s) for such a "feeder" to keep up before the clock moves.
    The fuzz is about the protocol, not feeder timing, so that wait is cut to 50 ms."""
    radio.medium.pusher_wait_s = 0.05
    rng = np.random.default_rng(seed)
    inputs = [hostile_input(rng) for _ in range(n_inputs)]
    batches = [
        inputs[i : i + INPUTS_PER_CONNECTION] for i in range(0, n_inputs, INPUTS_PER_CONNECTION)
    ]
    with ThreadPoolExecutor(CONNECTIONS_AT_ONCE) as pool:
        list(pool.map(lambda batch: _one_connection(radio.server.port, batch), batches))


def _assert_still_serving(lab, caplog) -> None:
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures
    for radio in lab.radios:
        server = radio.server
        # handlers notice the closed connections; a hostile streaming WRITEBUF on a
        # clock nobody reads may block (as on a kernel with a full TX queue) until its
        # ETIMEDOUT, so allow that timeout plus slack for a loaded machine
        deadline = time.monotonic() + TX_ROOM_TIMEOUT_S + 30
        while server._conns and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server._conns
        for device in server.context.devices:
            assert server.open_sessions(device) == 0
    # the full client stack still works: a cyclic tone crosses from one Pluto to the other
    _tone_round_trip(lab)


def test_fuzz_1000_hostile_inputs_then_adi_pluto_works(lab, caplog):
    caplog.set_level(logging.WARNING)
    fuzz(lab.radios[0], 1000, seed=16)
    fuzz(lab.radios[1], 200, seed=17)
    _assert_still_serving(lab, caplog)


@pytest.mark.slow
def test_fuzz_50000_hostile_inputs_then_adi_pluto_works(lab, caplog):
    caplog.set_level(logging.WARNING)
    for seed in range(25):
        fuzz(lab.radios[seed % 2], 2000, seed=1000 + seed)
    _assert_still_serving(lab, caplog)
