"""The run's metrics: per-round counters and the ``metrics.jsonl`` record.

:class:`RoundStats` counts one round (slots, payload and pilot channel uses, losses,
predicted MSE, regroupings, missed slots, evaluations on the channel-use grid);
:class:`LinkWindow` measures the digital link over the round; :func:`round_record`
builds the line ``airmix run`` appends to ``metrics.jsonl`` (described in README).

Channel uses are receiver samples: payload channel uses count the OFDM frame of each
slot (preamble, cyclic prefixes and data), pilot channel uses the captures of channel
acquisition; both are also kept as running totals. Each evaluation records both totals
when it was made, so "channel uses to reach the target accuracy" can be read at the
resolution of the evaluation grid (``experiment.eval_channel_uses``), payload and
acquisition apart (:func:`channel_uses_to_target`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LinkWindow", "RoundStats", "Totals", "channel_uses_to_target", "round_record"]


@dataclass
class Totals:
    """Running totals over the run (checkpointed)."""

    channel_uses: int = 0
    pilot_channel_uses: int = 0
    slots: int = 0


@dataclass
class RoundStats:
    """Counters of one round."""

    slots: int = 0
    payload_channel_uses: int = 0
    pilot_channel_uses: int = 0
    losses: list[float] = field(default_factory=list)
    predicted_mse: list[float] = field(default_factory=list)
    regroupings: int = 0
    missed_slots: int = 0
    #: bytes of the method's digital uplink (model updates, secure aggregation), both ways
    uplink_bytes: int = 0
    #: evaluations within the round: {"channel_uses", "pilot_channel_uses", "slots", "accuracy"}
    evaluations: list[dict[str, Any]] = field(default_factory=list)


class LinkWindow:
    """The digital link's counters over one round (bytes, messages, requests and the
    time the engine waited on the link itself).

    Args:
        counters: a callable returning the link's counter snapshot.
        pump_seconds: a callable returning the engine's non-blocking polling time so far.
    """

    def __init__(self, counters, pump_seconds) -> None:
        self._counters, self._pump = counters, pump_seconds
        self.started = time.perf_counter()
        self.before = counters()
        self.pumped = pump_seconds()

    def figures(self) -> dict[str, Any]:
        """The link figures of the round so far (see :func:`round_record`)."""
        after, before = self._counters(), self.before
        return {
            "digital_bytes": after["sent_bytes"] + after["received_bytes"],
            "round_digital_bytes": (after["sent_bytes"] - before["sent_bytes"])
            + (after["received_bytes"] - before["received_bytes"]),
            "digital_messages": after["sent_messages"] + after["received_messages"],
            "link_requests": after["requests"] - before["requests"],
            # frames the orchestrator's link refused so far, by cause (someone knocking)
            "link_rejects": dict(after["rejects"]),
            # time the engine waited on the digital link itself: blocked in requests minus
            # the nodes' handling of them, plus polling for events
            "messaging_seconds": (after["request_seconds"] - before["request_seconds"])
            - (after["served_seconds"] - before["served_seconds"])
            + (self._pump() - self.pumped),
        }


def round_record(
    round_id: int,
    accuracy: float,
    stats: RoundStats,
    totals: Totals,
    groups: list[list[str]],
    alive_users: int,
    link: LinkWindow,
) -> dict[str, Any]:
    """The ``metrics.jsonl`` line of one round."""
    mse = float(np.mean(stats.predicted_mse)) if stats.predicted_mse else float("nan")
    return {
        "round": round_id,
        "accuracy": accuracy,
        "loss": float(np.mean(stats.losses)) if stats.losses else float("nan"),
        "slots": stats.slots,
        "channel_uses": totals.channel_uses,
        "pilot_channel_uses": totals.pilot_channel_uses,
        "round_channel_uses": stats.payload_channel_uses,
        "predicted_mixup_mse_db": 10 * math.log10(mse) if mse > 0 else None,
        "groups": groups,
        "alive_users": alive_users,
        "regroupings": stats.regroupings,
        "missed_slots": stats.missed_slots,
        "round_pilot_channel_uses": stats.pilot_channel_uses,
        "round_uplink_bytes": stats.uplink_bytes,
        "evaluations": stats.evaluations,
        **link.figures(),
        "seconds": time.perf_counter() - link.started,
    }


def channel_uses_to_target(metrics: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Payload and pilot channel uses at the first evaluation reaching ``target``, from
    the finest evaluations the metrics hold (within-round ones, else round ends).

    Returns ``{"channel_uses": int | None, "pilot_channel_uses": int | None}``."""
    for record in metrics:
        points = record.get("evaluations") or [record]
        for point in points:
            if point["accuracy"] is not None and point["accuracy"] >= target:
                return {
                    "channel_uses": point["channel_uses"],
                    "pilot_channel_uses": point["pilot_channel_uses"],
                }
    return {"channel_uses": None, "pilot_channel_uses": None}
