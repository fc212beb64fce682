"""Parser for one line of the IIOD legacy text protocol (libiio 0.24 ``iiod/lexer.l``,
``iiod/parser.y``).

:func:`parse_line` turns a request line into a :class:`Command`; a line that does not
match the grammar raises :class:`ParseError` (the daemon answers ``-EINVAL``). Keywords
are recognised in upper or lower case exactly as the real lexer does (``READ``/``read``;
``Read`` is not a keyword). Device, channel and attribute names stay strings: looking
them up is the server's job (unknown device -> ``-ENODEV``, unknown channel -> ``-ENXIO``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The lexer's WORD: optional ``alpha,`` or ``iio:`` prefix, then [-_.alnum]+.
_WORD = re.compile(r"^(?:[A-Za-z]+,|iio:)?[-_.A-Za-z0-9]+$")
_NUMBER = re.compile(r"^\s*[+-]?\d+")
#: C ``long`` on the 64-bit hosts iiod runs on; a number outside it is malformed.
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

_KEYWORDS = {
    "VERSION",
    "PRINT",
    "ZPRINT",
    "EXIT",
    "QUIT",
    "HELP",
    "TIMEOUT",
    "OPEN",
    "CLOSE",
    "READ",
    "READBUF",
    "WRITEBUF",
    "WRITE",
    "SETTRIG",
    "GETTRIG",
    "SET",
}


class ParseError(ValueError):
    """The line does not follow the protocol grammar (the daemon replies -EINVAL)."""


@dataclass(frozen=True)
class Command:
    """One parsed request.

    Attributes:
        op: upper-case command (``READ``, ``OPEN``, ...; ``QUIT`` becomes ``EXIT``).
        device: device id/name/label, or None for context commands.
        kind: attribute class for READ/WRITE: "device", "debug", "buffer" or "channel".
        output: channel direction for kind "channel".
        channel: channel id or label for kind "channel".
        attr: attribute name (None: all attributes of that class).
        number: the numeric argument (timeout ms, sample count, byte count, buffer count).
        mask: hex channel mask for OPEN.
        cyclic: OPEN ... CYCLIC.
        trigger: trigger name for SETTRIG (None clears it).
    """

    op: str
    device: str | None = None
    kind: str = "device"
    output: bool = False
    channel: str | None = None
    attr: str | None = None
    number: int = 0
    mask: str = ""
    cyclic: bool = False
    trigger: str | None = None


def atol(text: str) -> int:
    """C ``atol``: the leading decimal integer of ``text``, 0 when there is none.

    Raises :class:`ParseError` for a number outside a C ``long`` (where ``atol`` would
    silently saturate), checked on the digit count before converting, so a
    5,000-digit number costs nothing and gets an ``-EINVAL`` reply."""
    match = _NUMBER.match(text)
    if not match:
        return 0
    digits = match.group().strip().lstrip("+-").lstrip("0")
    if len(digits) > len(str(LONG_MAX)):
        raise ParseError(f"number {text[:24]!r}... does not fit in a C long")
    value = int(match.group())
    if not LONG_MIN <= value <= LONG_MAX:
        raise ParseError(f"number {text[:24]!r} does not fit in a C long")
    return value


def _keyword(token: str) -> str | None:
    if token in _KEYWORDS or token.upper() in _KEYWORDS and token == token.lower():
        return "EXIT" if token.upper() == "QUIT" else token.upper()
    return None


def _is(token: str, word: str) -> bool:
    return token in (word, word.lower())


def _word(token: str) -> str:
    if not _WORD.match(token):
        raise ParseError(f"bad word {token!r}")
    return token


def parse_line(line: bytes | str) -> Command | None:
    """Parse one request line (with or without its ``\\r\\n``).

    Returns None for an empty line (no reply), a :class:`Command` otherwise; raises
    :class:`ParseError` for anything the daemon's grammar rejects.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ParseError("non-ASCII request") from exc
    text = line.rstrip("\n").rstrip("\r")
    if "\n" in text or "\r" in text or "\x00" in text:
        raise ParseError("stray control characters")
    tokens = text.split()
    if not tokens:
        if text.strip(" \t"):
            raise ParseError("unrecognised characters")
        return None
    op = _keyword(tokens[0])
    if op is None:
        raise ParseError(f"unknown command {tokens[0]!r}")
    args = tokens[1:]
    n = len(args)
    if op in ("VERSION", "PRINT", "ZPRINT", "EXIT", "HELP"):
        if n:
            raise ParseError(f"{op} takes no argument")
        return Command(op)
    if op == "TIMEOUT":
        if n != 1:
            raise ParseError("TIMEOUT <ms>")
        return Command(op, number=atol(_word(args[0])))
    if n == 0:
        raise ParseError(f"{op} needs a device")
    device = _word(args[0])
    rest = args[1:]
    if op == "OPEN":
        cyclic = bool(rest) and len(rest) == 3 and _is(rest[2], "CYCLIC")
        if len(rest) != (3 if cyclic else 2):
            raise ParseError("OPEN <device> <samples_count> <mask> [CYCLIC]")
        return Command(op, device, number=atol(_word(rest[0])), mask=_word(rest[1]), cyclic=cyclic)
    if op in ("CLOSE", "GETTRIG"):
        if rest:
            raise ParseError(f"{op} <device>")
        return Command(op, device)
    if op == "SETTRIG":
        if len(rest) > 1:
            raise ParseError("SETTRIG <device> [<trigger>]")
        return Command(op, device, trigger=_word(rest[0]) if rest else None)
    if op in ("READBUF", "WRITEBUF"):
        if len(rest) != 1:
            raise ParseError(f"{op} <device> <bytes_count>")
        return Command(op, device, number=atol(_word(rest[0])))
    if op == "SET":
        if len(rest) != 2 or not _is(rest[0], "BUFFERS_COUNT"):
            raise ParseError("SET <device> BUFFERS_COUNT <count>")
        return Command(op, device, number=atol(_word(rest[1])))
    # READ / WRITE
    kind, output, channel = "device", False, None
    if rest and (_is(rest[0], "DEBUG") or _is(rest[0], "BUFFER")):
        kind = rest[0].lower()
        rest = rest[1:]
    elif rest and (_is(rest[0], "INPUT") or _is(rest[0], "OUTPUT")):
        if len(rest) < 2:
            raise ParseError(f"{op} <device> INPUT|OUTPUT <channel>")
        kind, output, channel = "channel", rest[0].lower() == "output", _word(rest[1])
        rest = rest[2:]
    if op == "READ":
        if len(rest) > 1:
            raise ParseError("READ <device> DEBUG|BUFFER|[INPUT|OUTPUT <channel>] [<attr>]")
        attr = _word(rest[0]) if rest else None
        return Command(op, device, kind, output, channel, attr)
    if len(rest) not in (1, 2):
        raise ParseError("WRITE <device> DEBUG|BUFFER|[INPUT|OUTPUT <channel>] [<attr>] <bytes>")
    attr = _word(rest[0]) if len(rest) == 2 else None
    return Command(op, device, kind, output, channel, attr, number=atol(_word(rest[-1])))
