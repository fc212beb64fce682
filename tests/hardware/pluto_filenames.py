"""The filenames a real Pluto Rev.C (stock firmware v0.32, AD9363A) publishes for its
channel attributes, as ``channel/direction/attribute=filename`` (direction ``i``/``o``),
taken from that unit's context description (test data for tests/hardware/test_context.py).

The data is ``pluto_filenames.txt`` beside this module: one ``[device]`` section a
device, one line an attribute, ``#`` comments."""

from __future__ import annotations

from pathlib import Path


def _read(path: Path) -> dict[str, frozenset[str]]:
    """``{device name: frozenset of "channel/direction/attribute=filename"}``."""
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], set())
        elif current is None:
            raise ValueError(f"{path}: {line!r} comes before any [device] section")
        else:
            current.add(line)
    return {device: frozenset(names) for device, names in sections.items()}


REAL_PLUTO_FILENAMES: dict[str, frozenset[str]] = _read(
    Path(__file__).with_name("pluto_filenames.txt")
)
