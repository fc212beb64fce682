"""Lab inventory parsing/validation and discovery merged with it (virtual Plutos)."""

from __future__ import annotations

import pytest

from hardware.inventory import (
    InventoryError,
    discover,
    load_inventory,
    merge,
    parse_inventory,
)

GOOD = """
[[radio]]
name = "rx0"
uri = "ip:192.168.2.1"
role = "receiver"
position = [0.0, 0.0, 1.2]
[radio.calibration]
xo_correction_hz = 40000012

[[radio]]
name = "u1"
serial = "104473dc599100040a00"
"""


def test_parse_good_inventory(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text(GOOD)
    inv = load_inventory(path)
    assert [r.name for r in inv.radios] == ["rx0", "u1"]
    rx = inv.get("rx0")
    assert rx.position_m == (0.0, 0.0, 1.2) and rx.calibration == {"xo_correction_hz": 40000012}
    assert inv.get("u1").role == "user" and inv.get("u1").open_uri == "serial:104473dc599100040a00"
    assert [r.name for r in inv.by_role("receiver")] == ["rx0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[radio]]\nname='a'\n", "give 'uri' or 'serial'"),
        ("[[radio]]\nname='a'\nuri='tcp:x'\n", "uri must look like"),
        ("[[radio]]\nname='a'\nserial='xyz'\n", "serial must be"),
        ("[[radio]]\nname='a'\nuri='ip:1'\nrole='boss'\n", "role must be one of"),
        ("[[radio]]\nname='a'\nuri='ip:1'\nposition=[1,2]\n", "position must be"),
        ("[[radio]]\nname='a'\nuri='ip:1'\ncolour='red'\n", "unknown keys"),
        ("[[radio]]\nname='a'\nuri='ip:1'\n[[radio]]\nname='a'\nuri='ip:2'\n", "duplicate name"),
        ("[[radio]]\nname='a'\nuri='ip:1'\n[radio.calibration]\nx='hi'\n", "finite numbers"),
        ("radio = 3", "at least one"),
        ("[[radio]\n", "not valid TOML"),
    ],
)
def test_bad_inventories_raise_clear_errors(text, message):
    with pytest.raises(InventoryError, match=message):
        parse_inventory(text)


def test_missing_file(tmp_path):
    with pytest.raises(InventoryError, match="cannot read"):
        load_inventory(tmp_path / "nope.toml")


def test_discovery_merges_virtual_plutos_by_serial(lab):
    serial0 = lab.radios[0].model.serial
    inv = parse_inventory(
        f"[[radio]]\nname='rx'\nserial='{serial0}'\nrole='receiver'\n"
        "[[radio]]\nname='gone'\nuri='ip:127.0.0.1:1'\n"
    )
    found = discover(lab.uris)
    assert {d.serial for d in found} >= {r.model.serial for r in lab.radios}
    status = merge(inv, found)
    assert status[0].entry.name == "rx" and status[0].uri == lab.uris[0]
    assert status[1].entry.name == "gone" and status[1].uri is None
    assert [s.uri for s in status[2:] if s.entry is None] == [lab.uris[1]]
