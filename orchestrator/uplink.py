"""The digital uplink of a method that declares it: its :data:`~learning.methods.base.Exchange`
over the orchestrator's link.

Only a run whose method grants :data:`learning.methods.base.MODEL_UPDATES`
(:meth:`~learning.methods.base.Method.link_capabilities`, e.g. FedAvg with digital or
secure aggregation) gets here; both ends of its link grant the capability, every other
run's link refuses these message types (:mod:`orchestrator.messages`).

One call of the exchange is one phase of the method's protocol: one ``uplink_request``
per node hosting some of the asked users (the phase, its common arrays, each user's
blobs), all at once; each node answers with an ``uplink_reply`` holding the users that
answered, their update rows and blobs. A user missing from the replies dropped out: it
declined, or its node was lost (then the node is dropped from the run, as for any lost
request). Every answer is checked against the method's declared update length before the
method sees it. The bytes each phase moved (both ways, heartbeats apart) are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from learning.methods.base import UplinkRequest, Upload
from orchestrator.link import LinkError, RemoteError
from orchestrator.nodes import Nodes

__all__ = ["LinkExchange"]

log = logging.getLogger(__name__)


class LinkExchange:
    """The exchange of one step: ``exchange(requests) -> uploads`` over the link.

    Args:
        nodes: the run's nodes (membership, link, dropping lost nodes).
        ids: user index -> user id.
        update_length: the length every update row must have (``Method.update_length``).
        round_id, slot_id: where the step is (audit keys at the nodes).

    Attributes:
        bytes: bytes the exchange moved on the link so far (sent + received).
        phases: phases run so far.
    """

    def __init__(
        self, nodes: Nodes, ids: list[str], update_length: int, round_id: int, slot_id: int
    ) -> None:
        self.nodes = nodes
        self.ids = ids
        self.index_of = {u: i for i, u in enumerate(ids)}
        self.update_length = int(update_length)
        self.round_id, self.slot_id = int(round_id), int(slot_id)
        self.bytes = 0
        self.phases = 0

    def _calls(self, requests: Mapping[int, UplinkRequest]) -> list[tuple[str, str, dict]]:
        users = [self.ids[i] for i in sorted(requests) if self.ids[i] in self.nodes.alive]
        first = next(iter(requests.values()))
        for request in requests.values():
            same = request.phase == first.phase and set(request.arrays) == set(first.arrays)
            if not same or not all(
                np.array_equal(request.arrays[k], first.arrays[k]) for k in first.arrays
            ):
                raise ValueError("one phase's requests must share their phase and arrays")
        calls = []
        for node_id, positions in self.nodes.per_node(users).items():
            own = [users[p] for p in positions]
            body = {
                "round_id": self.round_id,
                "slot_id": self.slot_id,
                "phase": first.phase,
                "user_ids": own,
                "blobs": [dict(requests[self.index_of[u]].blobs) for u in own],
            }
            if first.arrays:
                body["arrays"] = dict(first.arrays)
            calls.append((node_id, "uplink_request", body))
        return calls

    def _upload(self, user_id: str, row: np.ndarray | None, blobs: dict) -> Upload | None:
        if row is not None and row.shape != (self.update_length,):
            log.warning("%s sent an update of %s reals, not %d: left out", user_id, row.shape,
                        self.update_length)  # fmt: skip
            return None
        return Upload(row, blobs)

    def __call__(self, requests: Mapping[int, UplinkRequest]) -> dict[int, Upload]:
        """Send one phase's ``requests`` (user index -> request); returns the uploads of
        the users that answered. Raises RemoteError when a node refused the request."""
        if not requests:
            return {}
        calls = self._calls(requests)
        if not calls:  # every asked user is gone
            return {}
        counters = self.nodes.link.counters
        before = counters.snapshot()
        results = self.nodes.link.request_many(calls)
        after = counters.snapshot()
        self.bytes += sum(after[k] - before[k] for k in ("sent_bytes", "received_bytes"))
        self.phases += 1
        answers: dict[int, Upload] = {}
        refused: RemoteError | None = None
        for (node_id, _, body), result in zip(calls, results, strict=True):
            if isinstance(result, RemoteError):
                refused = refused or result
                continue
            if isinstance(result, LinkError):
                self.nodes.drop(node_id)  # its users dropped out of this exchange, and the run
                continue
            asked = set(body["user_ids"])
            rows = result.body.get("updates")
            for k, user_id in enumerate(result.body["user_ids"]):
                if user_id not in asked:
                    log.warning("%s answered for %s, not asked: ignored", node_id, user_id)
                    continue
                upload = self._upload(
                    user_id, None if rows is None else rows[k], result.body["blobs"][k]
                )
                if upload is not None:
                    answers[self.index_of[user_id]] = upload
        if refused is not None:
            raise refused
        return answers
