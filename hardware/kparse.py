"""Attribute values parsed the way the Linux kernel parses sysfs/debugfs writes.

A real Pluto's drivers use a handful of kernel parsers; a value such as
``"600000.0"`` is accepted by one (``iio_str_to_fixpoint``, behind every
``info_mask`` attribute like ``sampling_frequency``) and refused by another
(``kstrtoull``, behind ``out_altvoltage0_RX_LO_frequency``). Each function here
takes the written text (trailing NUL already removed, as iiod passes it) and returns
the parsed value or raises :class:`~hardware.iiod.context.IIOError` with the errno
the kernel returns: ``EINVAL`` for malformed text, ``ERANGE`` for a number that does
not fit the C type. The Pluto's Zynq is a 32-bit ARM: ``long`` is 32 bits.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence

from hardware.iiod.context import IIOError

_UINT_RE = re.compile(r"^\+?(\d+)$")
_SINT_RE = re.compile(r"^([+-]?)(\d+)$")
#: C ``%i`` / ``strtol(base 0)``: optional sign, then hex (0x), octal (0) or decimal.
_CINT_RE = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)")

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
S32 = (-(2**31), 2**31 - 1)
S64 = (-(2**63), 2**63 - 1)


def _strip_newline(text: str) -> str:
    """The kstrto* family accepts one trailing newline."""
    return text[:-1] if text.endswith("\n") else text


def kstrtou(text: str, bits: int = 64) -> int:
    """``kstrtoull``/``kstrtoul``/``kstrtouint`` (base 10): optional ``+``, digits.

    Raises ``EINVAL`` for anything else (a sign ``-``, a decimal point, an exponent)
    and ``ERANGE`` above ``2**bits - 1``.
    """
    match = _UINT_RE.match(_strip_newline(text))
    if not match:
        raise IIOError(errno.EINVAL, f"not an unsigned decimal integer: {text!r}")
    value = int(match.group(1))
    if value > 2**bits - 1:
        raise IIOError(errno.ERANGE, f"{text!r} does not fit {bits} bits")
    return value


def kstrtos(text: str, bits: int = 64) -> int:
    """``kstrtoll``/``kstrtol``/``kstrtoint`` (base 10): optional sign, digits."""
    match = _SINT_RE.match(_strip_newline(text))
    if not match:
        raise IIOError(errno.EINVAL, f"not a decimal integer: {text!r}")
    value = int(match.group(2)) * (-1 if match.group(1) == "-" else 1)
    if not -(2 ** (bits - 1)) <= value <= 2 ** (bits - 1) - 1:
        raise IIOError(errno.ERANGE, f"{text!r} does not fit {bits} bits")
    return value


def kstrtobool(text: str) -> bool:
    """``kstrtobool``: y/Y/1/on -> True, n/N/0/off -> False (first characters only)."""
    if not text:
        raise IIOError(errno.EINVAL, "empty boolean")
    first = text[0]
    if first in "yY1":
        return True
    if first in "nN0":
        return False
    if first in "oO" and len(text) > 1:
        if text[1] in "nN":
            return True
        if text[1] in "fF":
            return False
    raise IIOError(errno.EINVAL, f"not a boolean: {text!r}")


def fixpoint(text: str, micro: bool = True, db: bool = False) -> tuple[int, int]:
    """``iio_str_to_fixpoint``: the parser behind every ``info_mask`` attribute.

    Returns ``(integer, fraction)`` with the fraction in millionths (``micro``) or
    billionths. Accepts an optional sign, digits, one ``.``, more digits, a trailing
    newline and, for ``*_DB`` formats (``hardwaregain``), a ``dB`` / `` dB`` suffix;
    anything else is ``EINVAL``. The integer part is a C ``int`` and wraps like one.
    """
    mult = 100_000 if micro else 100_000_000
    s = text
    negative = False
    if s[:1] == "-":
        negative, s = True, s[1:]
    elif s[:1] == "+":
        s = s[1:]
    integer = fract = 0
    in_integer = True
    pos = 0
    while pos < len(s):
        ch = s[pos]
        if ch.isdigit() and ch.isascii():
            if in_integer:
                integer = integer * 10 + int(ch)
            else:
                fract += mult * int(ch)
                mult //= 10
        elif ch == "\n":
            if pos + 1 == len(s):
                break
            raise IIOError(errno.EINVAL, f"not a fixed-point number: {text!r}")
        elif db and s.startswith(" dB", pos):
            pos += 3
            continue
        elif db and s.startswith("dB", pos):
            pos += 2
            continue
        elif ch == "." and in_integer:
            in_integer = False
        else:
            raise IIOError(errno.EINVAL, f"not a fixed-point number: {text!r}")
        pos += 1
    integer = (integer + 2**31) % 2**32 - 2**31  # C int arithmetic
    if negative:
        if integer:
            integer = -integer
        else:
            fract = -fract
    return integer, fract


def fixpoint_float(text: str, db: bool = False) -> float:
    """The signed value ``integer.fraction`` the driver reconstructs from
    :func:`fixpoint` (``val`` and ``val2`` carry the same sign)."""
    integer, fract = fixpoint(text, db=db)
    if integer < 0:
        return integer - fract / 1e6
    return integer + fract / 1e6


def sysfs_choice(text: str, choices: Sequence[str]) -> int:
    """``sysfs_match_string`` (``IIO_ENUM`` writes): index of the exact match, a
    trailing newline ignored; ``EINVAL`` otherwise."""
    value = _strip_newline(text)
    for index, choice in enumerate(choices):
        if choice and value == choice:
            return index
    raise IIOError(errno.EINVAL, f"{text!r} is not one of {' '.join(c for c in choices if c)}")


def sscanf_ints(text: str, limit: int) -> list[int]:
    """``sscanf(buf, "%i %i ...")``: up to ``limit`` C integers (hex ``0x``, octal
    ``0``, decimal, optional sign), stopping at the first that does not parse.
    Values wrap to 32 bits like ``%i`` into an ``int``/``u32``."""
    values: list[int] = []
    pos = 0
    while len(values) < limit:
        match = _CINT_RE.match(text, pos)
        if not match:
            break
        sign, digits = match.groups()
        if digits[:2].lower() == "0x":
            value = int(digits, 16)
        elif digits.startswith("0") and len(digits) > 1:
            value = int(digits, 8)
        else:
            value = int(digits)
        value = -value if sign == "-" else value
        values.append(value % 2**32)
        pos = match.end()
    return values
