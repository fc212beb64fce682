"""Lab inventory (a TOML file) and discovery of attached Plutos through libiio's scan.

Inventory format (``tomllib``; every radio needs ``uri`` or ``serial``)::

    [[radio]]
    name = "rx0"                   # unique
    uri = "ip:192.168.2.1"         # or: serial = "104473dc599..." (resolved by scan)
    role = "receiver"              # receiver | user | eavesdropper | spare
    position = [0.0, 0.0, 1.2]     # metres, optional
    [radio.calibration]            # optional numbers, free keys, e.g.
    xo_correction_hz = 40000012
    tx_power_offset_db = -0.5

:func:`discover` lists Plutos found by ``iio.scan_contexts()`` plus any extra URIs
(virtual Plutos are not on USB) with their ``hw_serial``; :func:`merge` matches them to
the inventory by serial or URI.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from radio.pluto import scan_contexts

ROLES = ("receiver", "user", "eavesdropper", "spare")
_URI_RE = re.compile(r"^(ip|usb):\S+$")
_SERIAL_RE = re.compile(r"^[0-9a-fA-F]{8,64}$")
_KNOWN_KEYS = {"name", "uri", "serial", "role", "position", "calibration", "notes"}


class InventoryError(ValueError):
    """The inventory file is missing, not TOML, or does not follow the schema."""


@dataclass(frozen=True)
class RadioEntry:
    """One radio of the inventory (units in the names)."""

    name: str
    role: str
    uri: str | None = None
    serial: str | None = None
    position_m: tuple[float, float, float] | None = None
    calibration: dict[str, float] = field(default_factory=dict)
    notes: str = ""

    @property
    def open_uri(self) -> str:
        """``uri`` if given, else ``serial:<serial>`` (for :class:`radio.pluto.PlutoRadio`)."""
        return self.uri if self.uri else f"serial:{self.serial}"


@dataclass(frozen=True)
class Inventory:
    """All radios of a lab, in file order."""

    radios: tuple[RadioEntry, ...]

    def get(self, name: str) -> RadioEntry:
        for entry in self.radios:
            if entry.name == name:
                return entry
        raise KeyError(f"no radio {name!r} in the inventory; have {[r.name for r in self.radios]}")

    def by_role(self, role: str) -> list[RadioEntry]:
        if role not in ROLES:
            raise InventoryError(f"role must be one of {ROLES}, got {role!r}")
        return [r for r in self.radios if r.role == role]


def _entry(index: int, raw: object) -> RadioEntry:
    where = f"radio #{index + 1}"
    if not isinstance(raw, dict):
        raise InventoryError(f"{where}: must be a table")
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise InventoryError(
            f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(_KNOWN_KEYS)}"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InventoryError(f"{where}: 'name' must be a non-empty string")
    where = f"radio {name!r}"
    role = raw.get("role", "user")
    if role not in ROLES:
        raise InventoryError(f"{where}: role must be one of {ROLES}, got {role!r}")
    uri, serial = raw.get("uri"), raw.get("serial")
    if uri is None and serial is None:
        raise InventoryError(f"{where}: give 'uri' or 'serial'")
    if uri is not None and (not isinstance(uri, str) or not _URI_RE.match(uri)):
        raise InventoryError(
            f"{where}: uri must look like ip:HOST[:PORT] or usb:B.D.I, got {uri!r}"
        )
    if serial is not None and (not isinstance(serial, str) or not _SERIAL_RE.match(serial)):
        raise InventoryError(f"{where}: serial must be 8-64 hex digits, got {serial!r}")
    position = raw.get("position")
    if position is not None:
        if (
            not isinstance(position, list)
            or len(position) != 3
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in position)
        ):
            raise InventoryError(f"{where}: position must be [x, y, z] in metres")
        position = tuple(float(v) for v in position)
    calibration = raw.get("calibration", {})
    if not isinstance(calibration, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in calibration.values()
    ):
        raise InventoryError(f"{where}: calibration must be a table of finite numbers")
    notes = raw.get("notes", "")
    if not isinstance(notes, str):
        raise InventoryError(f"{where}: notes must be a string")
    return RadioEntry(
        name.strip(), role, uri, serial, position,
        {k: float(v) for k, v in calibration.items()}, notes,
    )  # fmt: skip


def parse_inventory(text: str) -> Inventory:
    """Parse and validate inventory TOML text (raises :class:`InventoryError`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"inventory is not valid TOML: {exc}") from exc
    radios = data.get("radio")
    if not isinstance(radios, list) or not radios:
        raise InventoryError("inventory needs at least one [[radio]] table")
    entries = tuple(_entry(i, raw) for i, raw in enumerate(radios))
    for key in ("name", "uri", "serial"):
        values = [getattr(e, key) for e in entries if getattr(e, key) is not None]
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise InventoryError(f"duplicate {key}: {duplicates}")
    return Inventory(entries)


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate the inventory file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc}") from exc
    return parse_inventory(text)


@dataclass(frozen=True)
class Discovered:
    """A Pluto found by discovery: its URI, ``hw_serial`` (may be empty) and description."""

    uri: str
    serial: str
    description: str


def discover(extra_uris: tuple[str, ...] | list[str] = ()) -> list[Discovered]:
    """Plutos reachable now: libiio's scan plus ``extra_uris`` probed over the network."""
    import iio

    found: dict[str, Discovered] = {}
    for uri, description in scan_contexts().items():
        match = re.search(r"serial=([0-9a-fA-F]+)", description)
        found[uri] = Discovered(uri, match.group(1) if match else "", description)
    for uri in extra_uris:
        try:
            ctx = iio.Context(uri)
        except OSError:
            continue
        found[uri] = Discovered(uri, str(ctx.attrs.get("hw_serial", "")), ctx.description)
    return list(found.values())


@dataclass(frozen=True)
class RadioStatus:
    """An inventory entry with where it was found (``uri`` None: not found)."""

    entry: RadioEntry | None
    uri: str | None
    serial: str


def merge(inventory: Inventory, discovered: list[Discovered]) -> list[RadioStatus]:
    """Match discovered radios to inventory entries (by serial, then by URI).

    Returns one status per inventory entry (in file order), then one per discovered radio
    that is not in the inventory (``entry`` None).
    """
    used: set[str] = set()
    out: list[RadioStatus] = []
    for entry in inventory.radios:
        match = next((d for d in discovered if entry.serial and d.serial == entry.serial), None)
        if match is None and entry.uri:
            match = next((d for d in discovered if d.uri == entry.uri), None)
        if match is not None:
            used.add(match.uri)
        out.append(RadioStatus(entry, match.uri if match else None, match.serial if match else ""))
    out.extend(RadioStatus(None, d.uri, d.serial) for d in discovered if d.uri not in used)
    return out
