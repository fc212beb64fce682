"""Where a round's wall time goes, and how far a long round has come.

:class:`RoundTimer` splits one round's wall time into disjoint parts that add up to
the round (``time_split`` in ``metrics.jsonl``, seconds):

* ``grouping``: the grouping policy;
* ``phy``: the receiver's work in the engine (acquisition, planning, capture,
  detection and estimation, the eavesdropper's window) minus the medium's rendering;
* ``medium``: the simulated air (:func:`phy.medium.medium_seconds`): rendering what
  the receiver and the eavesdropper capture, and taking the users' transmissions (this
  runs while a node waits on its radio, so it is taken out of ``nodes``); 0 on lab
  radios;
* ``training``: the method's server steps and evaluation in the engine;
* ``nodes``: the nodes' serving of the engine's requests (making payloads, their
  users' training steps, driving their radios) as their replies report it, minus the
  medium's part; for requests sent to several nodes at once, the slowest node's;
* ``messaging``: the link itself (the round's ``messaging_seconds``: blocked in
  requests minus the nodes' serving, plus polling for events);
* ``other``: the rest (bookkeeping, starting the round, stops, logs).

Spans nest: time inside an inner span counts for the inner part only, so a request the
receiver makes during acquisition is not counted twice.

:class:`RoundProgress` prints, at most every ``every_s`` seconds of a round, how many of
its slots are done, their rate and the estimated time left.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["PARTS", "RoundProgress", "RoundTimer"]

#: the parts of ``time_split``, in the order they are reported
PARTS = ("medium", "phy", "training", "nodes", "messaging", "grouping", "other")


class RoundTimer:
    """Exclusive wall time per activity over one round (see the module docstring).

    Args:
        medium_seconds: cumulative seconds the simulated medium worked so far, as
            ``(render, transmit)`` (:func:`phy.medium.medium_seconds`).
    """

    def __init__(self, medium_seconds: Callable[[], tuple[float, float]]) -> None:
        self._medium = medium_seconds
        self._medium0 = medium_seconds()
        self.started = time.perf_counter()
        self.seconds: Counter[str] = Counter()
        self._stack: list[str] = []
        self._mark = self.started

    def _switch(self) -> None:
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1]] += now - self._mark
        self._mark = now

    @contextmanager
    def span(self, part: str) -> Iterator[None]:
        """Count the time inside the block for ``part`` ("phy", "training", "grouping"
        or "requests": blocked on nodes), minus the time of nested spans."""
        self._switch()
        self._stack.append(part)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def split(self, messaging_s: float, served_s: float) -> dict[str, float]:
        """The round's split so far, seconds per part of :data:`PARTS` (adds up to the
        elapsed time; a part that measurement noise would make negative is 0).

        Args:
            messaging_s: the round's ``messaging_seconds`` (:class:`metrics.LinkWindow`).
            served_s: the nodes' serving time of the round's requests.
        """
        elapsed = time.perf_counter() - self.started
        render, transmit = (a - b for a, b in zip(self._medium(), self._medium0, strict=True))
        out = {
            "medium": render + transmit,
            "phy": max(0.0, self.seconds["phy"] - render),
            "training": self.seconds["training"],
            "nodes": max(0.0, served_s - transmit),
            "messaging": max(0.0, messaging_s),
            "grouping": self.seconds["grouping"],
        }
        out["other"] = max(0.0, elapsed - sum(out.values()))
        return {part: round(out[part], 4) for part in PARTS}


class RoundProgress:
    """Progress lines for a long round: slots done of the round's total, rate, ETA.

    Args:
        round_id: the round (printed 1-based).
        total_slots: slots the round will take (as planned at its start).
        say: receives each line.
        every_s: seconds between lines (the first comes after ``every_s`` too, so short
            rounds print nothing).
    """

    def __init__(
        self, round_id: int, total_slots: int, say: Callable[[str], None], every_s: float = 10.0
    ) -> None:
        self.round_id = round_id
        self.total = max(0, int(total_slots))
        self.done = 0
        self._say = say
        self._every = every_s
        self.started = time.perf_counter()
        self._next = self.started + every_s

    def slot_done(self) -> None:
        """Count one slot; print a line when ``every_s`` passed since the last."""
        self.done += 1
        now = time.perf_counter()
        if now >= self._next:
            self._next = now + self._every
            self._say(self.line(now))

    def phase(self, text: str) -> None:
        """Say what the round starts doing now (a planned round's wave: its slots are
        done all at once at the end), with the seconds since the round began."""
        elapsed = time.perf_counter() - self.started
        self._say(f"round {self.round_id + 1}: {text} ({elapsed:.0f} s in)")
        self._next = time.perf_counter() + self._every

    def line(self, now: float | None = None) -> str:
        """``round R: D/T slots (P%), X slots/s, ETA E s``."""
        elapsed = (time.perf_counter() if now is None else now) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = max(0, self.total - self.done)
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        share = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"round {self.round_id + 1}: {self.done}/{self.total} slots ({share:.0f}%), "
            f"{rate:.1f} slots/s, ETA {eta}"
        )

    @property
    def slots_per_second(self) -> float:
        """Slots done per second of the round so far."""
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0
