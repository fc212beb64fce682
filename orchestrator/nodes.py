"""Node management for the round engine: who hosts whom, who is alive, and requests.

:class:`Nodes` wraps the orchestrator's link for the engine:

* membership: ``node_of`` (user id -> node id), the ``alive`` users, ``joined`` nodes,
  the label counts nodes report when they join (``label_report``), their evaluation
  reports (``eval_report``);
* :meth:`Nodes.pump` handles link events (deaths, joins, reports); a node that dies
  (heartbeat silence or a failed request) has its users dropped and silenced on the
  air (:meth:`orchestrator.radios.RunRadios.silence`);
* :meth:`Nodes.request_many` sends requests to several nodes at once and raises
  :class:`NodeLost` after all replies when one was lost, :class:`RemoteError` when a
  node refused;
* stops: a user's cyclic frame keeps playing until the next command, which carries the
  stop (``stop_user_ids``), saving a round trip per slot.

Time spent polling the link without waiting counts as messaging (``pump_seconds``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from orchestrator.link import LinkError, OrchestratorLink, RemoteError
from orchestrator.messages import Message

log = logging.getLogger(__name__)

Request = tuple[str, str, dict[str, Any]]


class NodeLost(RuntimeError):
    """A node died while the engine needed it; its users have been dropped."""


class Nodes:
    """The run's nodes as the engine sees them.

    Args:
        link: the orchestrator's link.
        node_users: node id -> user ids it hosts.
        silence: called with the user ids of a dead node (its frames must stop playing).
        progress: one line per notable event (a node lost).
    """

    def __init__(
        self,
        link: OrchestratorLink,
        node_users: dict[str, list[str]],
        silence: Callable[[list[str]], None],
        progress: Callable[[str], None],
    ) -> None:
        self.link = link
        self.node_of = {u: n for n, users in node_users.items() for u in users}
        self.alive = set(self.node_of)
        self.joined: set[str] = set()
        self.label_counts: dict[str, list[int]] = {}
        self.eval_reports: dict[str, dict] = {}
        self.pump_seconds = 0.0
        self._silence = silence
        self._progress = progress
        self._pending_stop: list[str] = []  # users whose frame plays until the next command
        #: times the engine's blocking on requests (RoundTimer.span; default: untimed)
        self.span: Callable[[str], AbstractContextManager] = lambda _part: nullcontext()

    # ------------------------------------------------------------------ events
    def pump(self, timeout_s: float = 0.0) -> None:
        """Handle pending link events: deaths, label and eval reports (acked)."""
        started = time.perf_counter()
        blocking = timeout_s > 0
        while (event := self.link.recv(timeout_s=timeout_s)) is not None:
            timeout_s = 0.0
            if event.kind == "dead":
                self.drop(event.peer)
            elif event.kind == "joined":
                self.joined.add(event.peer)
            elif event.kind == "message":
                message = event.message
                if message.type == "eval_report":
                    self.eval_reports[message.sender] = message.body
                elif message.type == "label_report":
                    self.label_counts.update(message.body["counts"])
                self.link.reply(message, "ack")
        if not blocking:
            self.pump_seconds += time.perf_counter() - started

    def wait_for_nodes(self, timeout_s: float, is_running: Callable[[], bool]) -> None:
        """Block until every node joined and reported its users' label counts.

        Raises:
            TimeoutError: not all nodes arrived within ``timeout_s`` (names the missing).
            RuntimeError: ``is_running()`` turned False (a node process exited).
        """
        deadline = time.monotonic() + timeout_s
        while not set(self.node_of) <= set(self.label_counts):
            if time.monotonic() > deadline:
                missing = sorted(set(self.node_of) - set(self.label_counts))
                raise TimeoutError(f"users never reported (nodes not joined?): {missing}")
            if not is_running():
                raise RuntimeError("a node process exited before joining (see its log)")
            self.pump(timeout_s=0.2)

    def drop(self, node_id: str) -> None:
        """Drop the users of dead node ``node_id`` and silence them."""
        lost = [u for u, n in self.node_of.items() if n == node_id and u in self.alive]
        if lost:
            log.warning("node %s is dead: dropping users %s", node_id, lost)
            self._progress(f"node {node_id} lost: users {', '.join(lost)} dropped")
            self.alive -= set(lost)
            self._silence(lost)  # its cyclic frame must not play into later slots

    @property
    def alive_nodes(self) -> list[str]:
        """Nodes hosting at least one alive user, sorted."""
        return sorted({self.node_of[u] for u in self.alive})

    # ---------------------------------------------------------------- requests
    def request_many(self, requests: list[Request]) -> list[Message]:
        """Send requests to *different* nodes at once and wait for every reply (one round
        trip instead of one per node); returns the replies in request order. A lost node
        (PeerDead, LinkTimeout) is dropped and NodeLost raised after all requests
        finished, so the others are never left half done; an ``error`` reply (the node is
        alive but refused: a bug or bad input) raises RemoteError."""
        with self.span("requests"):
            results = self.link.request_many(requests)
        refused: RemoteError | None = None
        lost: NodeLost | None = None
        for (node_id, _, _), result in zip(requests, results, strict=True):
            if isinstance(result, RemoteError):
                refused = refused or result
            elif isinstance(result, LinkError):
                self.drop(node_id)
                lost = lost or NodeLost(f"{node_id}: {result}")
        if refused is not None:
            raise refused
        if lost is not None:
            raise lost
        return results

    def per_node(self, user_ids: list[str]) -> dict[str, list[int]]:
        """node id -> positions in ``user_ids`` of the users it hosts."""
        out: dict[str, list[int]] = {}
        for position, user_id in enumerate(user_ids):
            out.setdefault(self.node_of[user_id], []).append(position)
        return out

    def to_users(self, msg_type: str, user_ids: list[str], body: Callable[[list[int]], dict]):
        """One request per node hosting some of ``user_ids``: ``body(positions)`` gives
        its body from the positions of its users in ``user_ids``."""
        return [
            (node_id, msg_type, body(positions))
            for node_id, positions in self.per_node(user_ids).items()
        ]

    def split_to_users(
        self,
        msg_type: str,
        user_ids: list[str],
        common: dict[str, Any],
        per_user: dict[str, Any],
    ) -> list[Request]:
        """One request per node hosting some of ``user_ids``: the ``common`` fields, the
        node's ``user_ids`` and its entries of each ``per_user`` sequence (one entry per
        user of ``user_ids``; numpy arrays stay arrays)."""

        def body(positions: list[int]) -> dict[str, Any]:
            own = {
                name: values[positions]
                if isinstance(values, np.ndarray)
                else [values[p] for p in positions]
                for name, values in per_user.items()
            }
            return {**common, "user_ids": [user_ids[p] for p in positions], **own}

        return self.to_users(msg_type, user_ids, body)

    # ------------------------------------------------------------------- stops
    def stop_later(self, user_ids: list[str]) -> None:
        """These users' frames play until the next command to their node stops them."""
        self._pending_stop.extend(user_ids)

    def with_stops(self, requests: list[Request]) -> list[Request]:
        """Piggyback the pending stops on ``requests`` (one per node); nodes with pending
        stops but no request get a ``stop_transmit`` of their own. Stopping there instead
        of right after the capture is equivalent: the receiver reads nothing in between."""
        pending = [u for u in self._pending_stop if u in self.alive]
        self._pending_stop = []
        by_node = {node_id: i for i, (node_id, _, _) in enumerate(requests)}
        out = list(requests)
        for node_id, positions in self.per_node(pending).items():
            users = [pending[p] for p in positions]
            if node_id in by_node:
                i = by_node[node_id]
                out[i] = (node_id, out[i][1], {**out[i][2], "stop_user_ids": users})
            else:
                out.append((node_id, "stop_transmit", {"user_ids": users}))
        return out

    def flush_stops(self) -> None:
        """Stop every user still playing (end of a round, or after a failure); all of
        them even if one node is lost on the way (then NodeLost is raised at the end)."""
        requests = self.with_stops([])
        if requests:
            self.request_many(requests)
