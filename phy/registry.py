"""One registry helper for every name-keyed choice in airmix.

Grouping and power policies, mixing policies, attacks, methods, radio back-ends, data
sets, channel models: each is a :class:`Registry` mapping names to implementations
(classes or factories). Looking up an unknown name raises :class:`UnknownChoice` with
the same message everywhere, ``unknown <kind> 'x'; allowed: [...]``, and the experiment
schema (:mod:`orchestrator.config`) reads its allowed values from the registries, so
registering an implementation makes it selectable in experiment files.

It lives in :mod:`phy` because phy is the layer every other package may import.

>>> POLICIES = Registry("power policy")
>>> @POLICIES.register("unit")
... def unit(): ...
>>> sorted(POLICIES)
['unit']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "UnknownChoice"]

T = TypeVar("T")


class UnknownChoice(KeyError, ValueError):
    """A name that is not registered; ``kind``, ``name`` and ``allowed`` say which.

    A KeyError (a failed lookup) and a ValueError (a bad argument value) at once."""

    def __init__(self, kind: str, name: object, allowed: list[str]) -> None:
        super().__init__(f"unknown {kind} {name!r}; allowed: {allowed}")
        self.kind, self.name, self.allowed = kind, name, allowed

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Mapping[str, T], Generic[T]):
    """Names -> implementations of one kind of choice (a read-only mapping).

    Args:
        kind: what is registered, for error messages (e.g. ``"grouping policy"``).
        entries: initial name -> implementation pairs.
    """

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        for name, value in (entries or {}).items():
            self.add(name, value)

    def add(self, name: str, value: T) -> T:
        """Register ``value`` as ``name`` (a name is registered once); returns ``value``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and self._entries[name] is not value:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = value
        return value

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda value: self.add(name, value)

    def add_named(self, value: T) -> T:
        """Class decorator: register ``value`` under its ``name`` attribute."""
        return self.add(value.name, value)  # type: ignore[attr-defined]

    def get(self, name: str, default: Any = None) -> T:  # type: ignore[override]
        """The implementation named ``name``; :class:`UnknownChoice` if there is none
        (``default`` is not supported: every lookup is of a required choice)."""
        if default is not None:
            raise TypeError("Registry.get takes no default")
        return self[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the implementation named ``name`` (a class or factory) with the arguments."""
        return self[name](*args, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownChoice(self.kind, name, self.names()) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
