"""The orchestrator's checkpoint: plain state that ``torch.load(weights_only=True)`` reads.

A checkpoint names a round every party has saved (nodes save their method users'
state first, see ``orchestrator/node.py``). The orchestrator's part holds:

* ``round``: the last completed round;
* ``method``: the method's server state (:meth:`learning.methods.base.Method.state_dict`);
* ``totals``: running channel-use and slot totals (:class:`orchestrator.metrics.Totals`);
* ``alive``: users still alive;
* ``observations`` / ``eavesdropped``: what the server saw and what the eavesdropper
  recorded in the recorded slots (:class:`Observation`, :class:`EavesdropperCapture`),
  as lists of dicts of numbers, strings and tensors;
* ``time_base`` (stream and tdd time bases, added by the engine): the receiver's link
  knowledge and counters (:meth:`radio.time_base.TimeBaseReceiver.state_dict`); a
  resumed run continues them, its users' new streams re-acquired once each.

No pickled classes: :func:`to_state` / :func:`from_state` convert the records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from orchestrator.metrics import Totals

__all__ = ["EavesdropperCapture", "Observation", "from_state", "to_state"]


@dataclass
class Observation:
    """What the server saw in one of its steps (kept for the attacks).

    Attributes:
        round_id: the round; user_ids: the users mixed (K).
        slot_ids: the slot each user transmitted in (one slot for over-the-air mixup,
            one per user when the server mixes orthogonal slots).
        weights: the mixing weights ``(K,)``.
        payload: the mixed payload ``(B, D)``; label: the mixed soft label ``(B, C)``.
    """

    round_id: int
    slot_ids: list[int]
    user_ids: list[str]
    weights: np.ndarray
    payload: np.ndarray
    label: np.ndarray


@dataclass
class EavesdropperCapture:
    """What the eavesdropper's radio recorded during one slot (for the attacks): the
    samples over the receiver's capture window of the slot, complex64 ``(n,)``."""

    round_id: int
    slot_id: int
    user_ids: list[str]
    weights: np.ndarray
    samples: np.ndarray


def _plain(record: Any) -> dict[str, Any]:
    return {
        k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        for k, v in asdict(record).items()
    }


def _record(cls: type, state: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(
        **{
            k: v.numpy() if isinstance(v, torch.Tensor) else v
            for k, v in state.items()
            if k in names
        }
    )


def to_state(
    round_id: int,
    method_state: dict[str, Any],
    totals: Totals,
    alive: set[str],
    observations: list[Observation],
    eavesdropped: list[EavesdropperCapture],
) -> dict[str, Any]:
    """The orchestrator's checkpoint as plain state."""
    return {
        "round": int(round_id),
        "method": method_state,
        "totals": asdict(totals),
        "alive": sorted(alive),
        "observations": [_plain(o) for o in observations],
        "eavesdropped": [_plain(c) for c in eavesdropped],
    }


@dataclass
class Restored:
    """A checkpoint read back by :func:`from_state`."""

    round_id: int
    method_state: dict[str, Any]
    totals: Totals
    alive: set[str]
    observations: list[Observation]
    eavesdropped: list[EavesdropperCapture]


def from_state(state: dict[str, Any]) -> Restored:
    """Inverse of :func:`to_state`."""
    return Restored(
        int(state["round"]),
        state["method"],
        Totals(**state["totals"]),
        set(state["alive"]),
        [_record(Observation, o) for o in state["observations"]],
        [_record(EavesdropperCapture, c) for c in state["eavesdropped"]],
    )
