"""The IIOD server against the real libiio client stack and raw sockets."""

from __future__ import annotations

import socket

import iio
import pytest

from hardware.iiod import XML_HEADER, parse_line
from hardware.iiod.parser import ParseError
from tests.hardware.conftest import run_tool


def _raw(server, payload: bytes, expect_lines: int) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"\n") < expect_lines:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\n")[:expect_lines]


def test_iio_info_lists_the_pluto_devices(model_server):
    _, server = model_server
    result = run_tool("iio_info", "-u", server.uri)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    for name in ("ad9361-phy", "cf-ad9361-lpc", "cf-ad9361-dds-core-lpc", "RX_LO", "TX_LO"):
        assert name in out
    assert "hardwaregain value: 71.000000 dB" in out
    assert "voltage0:  (input, index: 0, format: le:S12/16>>0)" in out


def test_iio_attr_writes_and_rejects_out_of_range(model_server):
    model, server = model_server
    ok = run_tool(
        "iio_attr", "-u", server.uri, "-c", "ad9361-phy", "RX_LO", "frequency", "915000000"
    )
    assert ok.returncode == 0, ok.stderr
    assert model.state.rx_lo_hz == 915_000_000
    bad = run_tool("iio_attr", "-u", server.uri, "-c", "ad9361-phy", "RX_LO", "frequency", "100")
    assert bad.returncode != 0
    assert b"Invalid argument" in bad.stdout + bad.stderr
    assert model.state.rx_lo_hz == 915_000_000


def test_context_xml_has_the_daemon_doctype_and_parses_in_libiio(model_server):
    _, server = model_server
    xml = server.context.xml()
    assert xml.startswith(XML_HEADER)
    net = iio.Context(server.uri)  # libiio validates the XML against its DTD
    assert {d.name for d in net.devices} == {
        "ad9361-phy",
        "xadc",
        "cf-ad9361-lpc",
        "cf-ad9361-dds-core-lpc",
    }
    adc = net.find_device("cf-ad9361-lpc")
    assert [c.id for c in adc.channels if c.scan_element] == ["voltage0", "voltage1"]


def test_raw_protocol_replies(model_server):
    _, server = model_server
    lines = _raw(server, b"VERSION\r\n\r\nread iio:device0 INPUT voltage0 hardwaregain\r\n", 3)
    assert lines[0] == b"0.24.airmix0"
    assert lines[1] == b"13"  # "71.000000 dB" + NUL
    assert lines[2] == b"71.000000 dB\x00"
    # unknown device, unknown channel, unknown attribute, mixed-case keyword, garbage
    lines = _raw(
        server,
        b"READ nodev foo\r\nREAD ad9361-phy INPUT nochan foo\r\nREAD ad9361-phy nosuch\r\n"
        b"Read ad9361-phy ensm_mode\r\n\x01\x02garbage !!\r\nGETTRIG cf-ad9361-lpc\r\n",
        6,
    )
    assert lines == [b"-19", b"-6", b"-2", b"-22", b"-22", b"-2"]


def test_write_with_trailing_nul_and_bad_value(model_server):
    model, server = model_server
    lines = _raw(
        server,
        b"WRITE ad9361-phy OUTPUT voltage0 hardwaregain 7\r\n-20.25\x00"
        b"WRITE ad9361-phy OUTPUT voltage0 hardwaregain 4\r\n1.0\x00",
        2,
    )
    assert lines == [b"7", b"-22"]
    assert model.state.tx_atten_mdb == 20_250


def test_parser_grammar():
    cmd = parse_line(b"OPEN iio:device2 1024 00000003 CYCLIC\r\n")
    assert (cmd.op, cmd.device, cmd.number, cmd.mask, cmd.cyclic) == (
        "OPEN",
        "iio:device2",
        1024,
        "00000003",
        True,
    )
    cmd = parse_line("write ad9361-phy debug loopback 2\r\n")
    assert (cmd.op, cmd.kind, cmd.attr, cmd.number) == ("WRITE", "debug", "loopback", 2)
    assert parse_line("\r\n") is None
    for bad in ("OPEN dev", "Print", "READ a b c d e f", "SET dev BUFFERS 3", "TIMEOUT"):
        with pytest.raises(ParseError):
            parse_line(bad)
