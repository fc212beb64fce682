"""phy.registry: one registry helper for every name-keyed choice."""

from __future__ import annotations

import pytest

from phy.registry import Registry, UnknownChoice


def test_add_named_registers_a_class_under_its_name_once():
    shapes: Registry[type] = Registry("shape")

    @shapes.add_named
    class Square:
        name = "square"

    assert shapes["square"] is Square and shapes.names() == ["square"]
    assert shapes.add_named(Square) is Square  # the same class again: a no-op

    class Impostor:
        name = "square"

    with pytest.raises(ValueError, match="already registered"):
        shapes.add_named(Impostor)
    with pytest.raises(UnknownChoice, match="square"):
        shapes["circle"]
