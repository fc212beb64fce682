"""The orchestrator <-> node transport: ZeroMQ ROUTER (orchestrator) / DEALER (nodes).

* Messages are :mod:`orchestrator.messages` frames, validated on receipt; rejected
  frames are dropped silently (no reply, so garbage cannot amplify) and counted by
  reason in :class:`LinkCounters`.
* :meth:`request` re-sends the *same bytes* (same sequence number) until a reply
  arrives or the retries are used up; the receiver answers a repeated request from its
  reply cache instead of handling it twice (idempotent by sequence number).
* Both ends send heartbeats every ``heartbeat_s``; a peer silent for ``liveness_s`` is
  declared dead (a ``"dead"`` :class:`LinkEvent`); its pending requests fail with
  :class:`PeerDead`. A node that comes back joins again with ``hello``.
* CurveZMQ: with a key directory (see :mod:`orchestrator.keys`) the orchestrator runs a
  ``zmq.auth`` ThreadAuthenticator that admits only the node public keys in that
  directory and maps each key to its node id (the key file's name). A node's envelope
  sender and ZeroMQ identity must equal that id (else "spoofed"). Failed handshakes
  (unknown key, no encryption) are counted as "unauthenticated". Without a key
  directory the link runs in plain text (local tests only).

Threads: the caller's thread puts its own frames on the wire (a lock serialises every
use of the socket), and while it waits in :meth:`request_many` or :meth:`recv` it reads
the socket itself, so neither a request nor its reply waits for another thread to be
scheduled (on 2 shared cores each such hand-off cost about as much as the network). One
I/O thread per endpoint runs the timers (retries, heartbeats, liveness) and, at each
tick, reads what arrived while no caller was waiting (heartbeats, or messages the
application takes with its next :meth:`recv`). :meth:`request_many` sends requests to
several peers at once from one thread. The public methods are thread-safe and block
only the caller.

Timing: a reply carries ``served_s``, the seconds the peer's application spent between
taking the request (:meth:`recv`) and answering it (:meth:`reply`); the requester adds
up its blocked time and the peers' serving time (:class:`LinkCounters`), so the time
spent on the link itself is their difference.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import math
import queue
import re
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import monitor as zmq_monitor
from zmq.utils import z85

from orchestrator import messages as m

log = logging.getLogger(__name__)

ORCHESTRATOR_ID = "orchestrator"
#: message types that answer a request (carry ``re``)
REPLY_TYPES = frozenset({"ack", "welcome", "error", "uplink_reply"})
NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
READ_BURST = 1000  # frames read in a row before the timers are served
IO_TICK_S = 0.1  # longest sleep of a thread polling the socket, seconds


class LinkError(RuntimeError):
    """Base class of link failures."""


class LinkTimeout(LinkError, TimeoutError):
    """A request got no reply after all retries."""


class PeerDead(LinkError, ConnectionError):
    """The peer was declared dead (or is unknown) while a request was pending."""


class RemoteError(LinkError):
    """The peer answered a request with an ``error`` message."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LinkConfig:
    """Timing and limits of a link endpoint (seconds, bytes).

    Attributes:
        heartbeat_s: interval between heartbeats sent to each peer.
        liveness_s: a peer silent this long is declared dead (> heartbeat_s).
        request_timeout_s: wait per request attempt; retries: extra attempts.
        max_bytes: largest accepted message.
        replay_window_s: accepted clock difference of message timestamps.
        reply_cache: replies kept per peer for answering repeated requests.
        capabilities: message capabilities granted on this link (both ends alike;
            :data:`orchestrator.messages.MODEL_UPDATES` only for a method declaring it).
    """

    heartbeat_s: float = 0.5
    liveness_s: float = 3.0
    request_timeout_s: float = 2.0
    retries: int = 2
    max_bytes: int = m.MAX_MESSAGE_BYTES
    replay_window_s: float = m.DEFAULT_REPLAY_WINDOW_S
    reply_cache: int = 256
    capabilities: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("heartbeat_s", "liveness_s", "request_timeout_s", "replay_window_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.liveness_s <= self.heartbeat_s:
            raise ValueError("liveness_s must exceed heartbeat_s")
        if self.retries < 0 or self.reply_cache < 1 or self.max_bytes < 1024:
            raise ValueError("need retries >= 0, reply_cache >= 1, max_bytes >= 1024")


@dataclass(frozen=True)
class LinkEvent:
    """Something the application should know about.

    Attributes:
        kind: "message" (a request or one-way message from ``peer``), "joined" (a node
            joined; ``message`` is its hello) or "dead" (``peer`` went silent).
        peer: node id, or "orchestrator" on the node side.
    """

    kind: str
    peer: str
    message: m.Message | None = None


#: snapshot fields that depend on timing, not on what the run did: heartbeats go out on a
#: timer, the seconds are wall time. Everything else a run of the same experiment (or a
#: resumed one, see :meth:`LinkCounters.restore`) counts identically.
TIMING_DEPENDENT = (
    "heartbeat_messages",
    "heartbeat_bytes",
    "request_seconds",
    "served_seconds",
    "answer_seconds_by_type",
)
#: at most one warning per rejection cause per this many seconds
REJECT_LOG_INTERVAL_S = 10.0


class LinkCounters:
    """Thread-safe message and byte counters of one endpoint.

    Use :meth:`snapshot` before and after a round and subtract to get the round's
    digital-link traffic (messages, bytes each way, per message type). Heartbeats are
    counted apart (``heartbeat_messages``/``heartbeat_bytes``, both directions; the
    per-type counts include them), so the message and byte totals do not depend on
    timing (:data:`TIMING_DEPENDENT`). Each
    rejected frame is counted by cause and logged at warning level, at most once per
    cause per :data:`REJECT_LOG_INTERVAL_S`.

    Args:
        owner: the endpoint's identity, named in the warnings.
    """

    def __init__(self, owner: str = "link") -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._reject_logged: dict[str, float] = {}
        self.heartbeat_messages = 0
        self.heartbeat_bytes = 0
        self.sent_messages = 0
        self.sent_bytes = 0
        self.received_messages = 0
        self.received_bytes = 0
        self.duplicates = 0
        self.sent_by_type: collections.Counter[str] = collections.Counter()
        self.received_by_type: collections.Counter[str] = collections.Counter()
        self.rejects: collections.Counter[str] = collections.Counter()
        self.requests = 0
        self.request_seconds = 0.0
        self.served_seconds = 0.0
        # requests this end answered, by type: how many, seconds the application took
        self.answered_by_type: collections.Counter[str] = collections.Counter()
        self.answer_seconds_by_type: collections.Counter[str] = collections.Counter()

    def on_answered(self, msg_type: str, seconds: float) -> None:
        """Count a request of ``msg_type`` this end answered after ``seconds``."""
        with self._lock:
            self.answered_by_type[msg_type] += 1
            self.answer_seconds_by_type[msg_type] += seconds

    def on_requests(self, n: int, blocked_s: float, served_s: float) -> None:
        """Count a call of ``n`` concurrent requests: the caller was blocked ``blocked_s``
        seconds, of which the slowest peer served ``served_s``."""
        with self._lock:
            self.requests += n
            self.request_seconds += blocked_s
            self.served_seconds += served_s

    def _heartbeat(self, msg_type: str | None, n_bytes: int) -> bool:
        """Count a heartbeat frame apart (caller holds the lock); False for any other."""
        if msg_type != "heartbeat":
            return False
        self.heartbeat_messages += 1
        self.heartbeat_bytes += n_bytes
        return True

    def on_sent(self, msg_type: str, n_bytes: int) -> None:
        with self._lock:
            if not self._heartbeat(msg_type, n_bytes):
                self.sent_messages += 1
                self.sent_bytes += n_bytes
            self.sent_by_type[msg_type] += 1

    def on_received(self, n_bytes: int, msg_type: str | None) -> None:
        """Count a received frame (``msg_type`` None: not (yet) valid)."""
        with self._lock:
            if not self._heartbeat(msg_type, n_bytes):
                self.received_messages += 1
                self.received_bytes += n_bytes
            if msg_type is not None:
                self.received_by_type[msg_type] += 1

    def on_reject(self, reason: str) -> None:
        """Count a frame rejected for ``reason``; warn (rate-limited per reason)."""
        now = time.monotonic()
        with self._lock:
            self.rejects[reason] += 1
            count = self.rejects[reason]
            last = self._reject_logged.get(reason)
            if last is not None and now - last < REJECT_LOG_INTERVAL_S:
                return
            self._reject_logged[reason] = now
        log.warning(
            "%s: rejected a frame (%s); %d rejected for this cause so far",
            self.owner,
            reason,
            count,
        )

    def on_duplicate(self) -> None:
        with self._lock:
            self.duplicates += 1

    @property
    def total_rejects(self) -> int:
        with self._lock:
            return sum(self.rejects.values())

    def snapshot(self) -> dict[str, Any]:
        """All counters as plain data (JSON-serialisable)."""
        with self._lock:
            return {
                "heartbeat_messages": self.heartbeat_messages,
                "heartbeat_bytes": self.heartbeat_bytes,
                "sent_messages": self.sent_messages,
                "sent_bytes": self.sent_bytes,
                "received_messages": self.received_messages,
                "received_bytes": self.received_bytes,
                "duplicates": self.duplicates,
                "sent_by_type": dict(self.sent_by_type),
                "received_by_type": dict(self.received_by_type),
                "rejects": dict(self.rejects),
                "requests": self.requests,
                "request_seconds": self.request_seconds,
                "served_seconds": self.served_seconds,
                "answered_by_type": dict(self.answered_by_type),
                "answer_seconds_by_type": dict(self.answer_seconds_by_type),
            }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from ``snapshot`` (a :meth:`snapshot` saved with a checkpoint): every
        counter takes its saved value, replacing what this endpoint counted so far (a
        resumed orchestrator's own start-up traffic repeats what the snapshot holds)."""
        with self._lock:
            for name, value in snapshot.items():
                current = getattr(self, name, None)
                if isinstance(current, collections.Counter):
                    setattr(self, name, collections.Counter(value))
                elif isinstance(current, int | float):
                    setattr(self, name, type(current)(value))


class _Pending:
    """A request waiting for its reply (sent once; ``resends`` more after timeouts)."""

    def __init__(self, peer: str, data: bytes, msg_type: str, timeout_s: float, resends: int):
        self.peer, self.data, self.msg_type = peer, data, msg_type
        self.timeout_s = timeout_s
        self.resends_left = resends
        self.deadline = time.monotonic() + timeout_s
        self.done = threading.Event()
        self.reply: m.Message | None = None
        self.error: LinkError | None = None
        self.waiter: _Waiter | None = None  # the thread waiting for it

    def finish(self, reply: m.Message | None = None, error: LinkError | None = None) -> None:
        self.reply, self.error = reply, error
        self.done.set()
        if self.waiter is not None:
            self.waiter.notify()


class _Waiter:
    """A thread's doorbell: other threads ring it when what it waits for has happened
    (its reply arrived, an event was queued) while it sleeps in ``poll``."""

    def __init__(self) -> None:
        self.bell, self._ringer = socket.socketpair()
        self.bell.setblocking(False)
        self._ringer.setblocking(False)

    def notify(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._ringer.send(b"\0")

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self.bell.recv(4096):
                pass

    def close(self) -> None:
        self.bell.close()
        self._ringer.close()


class _Endpoint(ABC):
    """Shared machinery of both ends: I/O thread, requests, replies, heartbeats."""

    role = ""  # "orchestrator" or "node": the role of *this* end
    peer_role = ""

    def __init__(self, identity: str, config: LinkConfig | None) -> None:
        self.identity = identity
        self.config = config or LinkConfig()
        self.counters = LinkCounters(identity)
        self._seq = m.SequenceCounter()
        self._guard = m.ReplayGuard(self.config.replay_window_s)
        self._ctx = zmq.Context()
        self._inbox: queue.Queue[LinkEvent] = queue.Queue()
        self._local = threading.local()  # per calling thread: its _Waiter
        self._waiters: list[_Waiter] = []  # every thread's, closed with the link
        self._inbox_waiters: set[_Waiter] = set()  # threads blocked in recv()
        self._sock_lock = threading.RLock()  # every use of self._sock holds it
        self._rx_lock = threading.RLock()  # frames are handled in the order they are read
        self._taken: dict[tuple[str, int], float] = {}  # request -> when recv() handed it out
        self._pending: dict[int, _Pending] = {}
        self._pending_lock = threading.Lock()
        # per peer: request seq -> [digest of the request bytes, reply bytes or None]
        self._replies: dict[str, collections.OrderedDict[int, list]] = {}
        self._replies_lock = threading.Lock()
        self._last_seen: dict[str, float] = {}
        self._alive: set[str] = set()
        self._state_lock = threading.Lock()
        self._next_heartbeat = 0.0
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._sock: zmq.Socket | None = None
        self._sock_fd = -1  # the socket's readiness file descriptor (zmq.FD)
        self._monitor: zmq.Socket | None = None

    # ------------------------------------------------------------------ public API

    def send(self, peer: str, msg_type: str, body: dict[str, Any] | None = None) -> int:
        """Send a one-way message to ``peer``; returns its sequence number."""
        with self._sock_lock:  # numbered and sent as one (see request_many)
            seq, data = self._encode(msg_type, body or {}, None)
            self._send_now(peer, data, msg_type)
        return seq

    def request(
        self,
        peer: str,
        msg_type: str,
        body: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> m.Message:
        """Send a request and block until its reply (``ack`` or ``welcome``) arrives.

        Each attempt waits ``timeout_s`` (default ``config.request_timeout_s``); the
        same bytes are re-sent up to ``retries`` times. Raises :class:`LinkTimeout`,
        :class:`PeerDead` or :class:`RemoteError` (the peer replied ``error``).
        """
        (result,) = self.request_many(
            [(peer, msg_type, body)], timeout_s=timeout_s, retries=retries
        )
        if isinstance(result, LinkError):
            raise result
        return result

    def request_many(
        self,
        calls: Sequence[tuple[str, str, dict[str, Any] | None]],
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> list[m.Message | LinkError]:
        """Send every ``(peer, msg_type, body)`` request at once and wait for all replies.

        Returns, in call order, the reply or the :class:`LinkError` of each request
        (:class:`RemoteError` for an ``error`` reply, :class:`PeerDead`,
        :class:`LinkTimeout`): one failure never leaves the others half done. Timeouts
        and retries as :meth:`request`. Invalid bodies raise ProtocolError before
        anything is sent.
        """
        timeout_s = self.config.request_timeout_s if timeout_s is None else timeout_s
        retries = self.config.retries if retries is None else retries
        if not timeout_s > 0 or retries < 0:
            raise ValueError("need timeout_s > 0 and retries >= 0")
        started = time.monotonic()
        pendings: dict[int, _Pending] = {}
        results: list[m.Message | LinkError | None] = [None] * len(calls)
        waiter = self._waiter()
        waiter.clear()
        # numbered and sent as one: no frame of another thread (a heartbeat numbered above
        # a long batch) reaches a peer in between, which would put the rest of the batch
        # more than the peer's reorder window below it (rejected as replays)
        with self._sock_lock:
            encoded = [
                (peer, msg_type, *self._encode(msg_type, body or {}, None))
                for peer, msg_type, body in calls
            ]
            for i, (peer, msg_type, seq, data) in enumerate(encoded):
                if not self._peer_reachable(peer):
                    results[i] = PeerDead(f"peer {peer!r} is not alive")
                    continue
                pending = _Pending(peer, data, msg_type, timeout_s, retries)
                pending.waiter = waiter
                with self._pending_lock:  # registered before sending: the reply may be fast
                    self._pending[seq] = pending
                pendings[i] = pending
                try:
                    self._send_now(peer, data, msg_type)
                except LinkError as error:
                    pending.finish(error=error)
        served_by: dict[str, float] = {}  # a peer serves its requests one after another
        try:
            deadline = started + timeout_s * (retries + 1) + 5.0  # the I/O thread times out first
            self._wait_reading(
                waiter, lambda: all(p.done.is_set() for p in pendings.values()), deadline
            )
            for i, pending in pendings.items():
                if not pending.done.is_set():
                    results[i] = LinkTimeout(f"{pending.msg_type} to {pending.peer!r}: no answer")
                elif pending.error is not None:
                    results[i] = pending.error
                else:
                    reply = pending.reply
                    assert reply is not None
                    took = float(reply.body.get("served_s", 0.0))
                    served_by[pending.peer] = served_by.get(pending.peer, 0.0) + took
                    results[i] = (
                        RemoteError(reply.body["reason"], reply.body["detail"])
                        if reply.type == "error"
                        else reply
                    )
        finally:
            with self._pending_lock:
                for _, _, seq, _ in encoded:
                    self._pending.pop(seq, None)
        served = max(served_by.values(), default=0.0)  # the busiest peer's
        self.counters.on_requests(len(calls), time.monotonic() - started, served)
        return results  # type: ignore[return-value]

    def reply(self, request: m.Message, msg_type: str = "ack", body: dict | None = None) -> int:
        """Answer ``request`` (``ack`` / ``error`` / ``welcome`` / ``uplink_reply``); returns
        the reply's seq."""
        if msg_type not in REPLY_TYPES:
            raise ValueError(f"reply type must be one of {sorted(REPLY_TYPES)}")
        taken = self._taken.pop((request.sender, request.seq), None)
        body = dict(body or {})
        if taken is not None and msg_type != "welcome":
            body["served_s"] = time.monotonic() - taken
            self.counters.on_answered(request.type, body["served_s"])
        with self._sock_lock:  # numbered and sent as one (see request_many)
            seq, data = self._encode(msg_type, body, request.seq)
            with self._replies_lock:
                entry = self._replies.get(request.sender, {}).get(request.seq)
                if entry is not None:  # answered from the cache when the request is repeated
                    entry[1] = data
            self._send_now(request.sender, data, msg_type)
        return seq

    def recv(self, timeout_s: float | None = None) -> LinkEvent | None:
        """The next :class:`LinkEvent`, or None after ``timeout_s`` (None: wait forever)."""
        try:
            event = self._inbox.get_nowait()
        except queue.Empty:
            waiter = self._waiter()
            waiter.clear()
            with self._state_lock:
                self._inbox_waiters.add(waiter)
            try:
                deadline = None if timeout_s is None else time.monotonic() + timeout_s
                self._wait_reading(waiter, lambda: not self._inbox.empty(), deadline)
            finally:
                with self._state_lock:
                    self._inbox_waiters.discard(waiter)
            try:
                event = self._inbox.get_nowait()
            except queue.Empty:
                return None
        if event.kind == "message" and event.message is not None:
            self._taken[(event.peer, event.message.seq)] = time.monotonic()
            while len(self._taken) > 4 * self.config.reply_cache:  # never answered: forget
                self._taken.pop(next(iter(self._taken)))
        return event

    def close(self) -> None:
        """Stop the I/O thread and close the sockets (safe to call twice)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._pending_lock:
            for pending in self._pending.values():
                pending.finish(error=LinkError("link closed"))
        with self._state_lock:
            for waiter in self._inbox_waiters:
                waiter.notify()
        self._close_sockets()
        self._ctx.term()
        self._wake_r.close()
        self._wake_w.close()
        with self._state_lock:
            for waiter in self._waiters:
                waiter.close()

    def __enter__(self) -> _Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _encode(self, msg_type: str, body: dict[str, Any], re_seq: int | None) -> tuple[int, bytes]:
        seq = self._seq.next()
        spec = m.SCHEMAS.get(msg_type)
        if spec is None:
            raise m.ProtocolError("unknown_type", f"unknown message type {msg_type!r}")
        if spec.sender not in (self.role, "any"):
            raise m.ProtocolError("direction", f"a {self.role} may not send {msg_type!r}")
        msg = m.Message(msg_type, body, seq, self.identity, time.time(), re_seq)
        return seq, m.encode(
            msg, max_bytes=self.config.max_bytes, capabilities=self.config.capabilities
        )

    def _waiter(self) -> _Waiter:
        """The calling thread's doorbell (created on first use)."""
        waiter = getattr(self._local, "waiter", None)
        if waiter is None:
            waiter = self._local.waiter = _Waiter()
            with self._state_lock:
                self._waiters.append(waiter)
        return waiter

    def _wait_reading(
        self, waiter: _Waiter, done: Callable[[], bool], deadline: float | None
    ) -> None:
        """Block the calling thread until ``done()`` or the monotonic ``deadline`` (None:
        none), reading and handling the socket's frames itself meanwhile. A frame another
        thread read rings ``waiter`` if it concerns this one."""
        poller = zmq.Poller()
        poller.register(self._sock_fd, zmq.POLLIN)
        poller.register(waiter.bell, zmq.POLLIN)
        while not done() and not self._stop.is_set():
            self._read_and_handle()
            if done():
                return
            left = IO_TICK_S if deadline is None else min(deadline - time.monotonic(), IO_TICK_S)
            if left <= 0:
                return
            try:
                poller.poll(max(1, int(1000 * left)))
            except zmq.ZMQError:
                if self._stop.is_set():
                    return
                raise
            waiter.clear()

    def _post(self, event: LinkEvent) -> None:
        """Queue an event for :meth:`recv` and ring the threads waiting there."""
        self._inbox.put(event)
        with self._state_lock:
            waiters = list(self._inbox_waiters)
        for waiter in waiters:
            waiter.notify()

    def _send_now(self, peer: str, data: bytes, msg_type: str) -> None:
        """Put ``data`` on the wire from the calling thread. Any socket operation may
        consume the socket's edge-triggered readiness signal (``zmq.FD``), so if frames
        are waiting afterwards the I/O thread is woken to read them."""
        with self._sock_lock:
            if self._stop.is_set():
                if threading.current_thread() is self._thread:
                    return  # shutting down: the I/O thread's last timers send nothing
                raise LinkError("link closed")
            self._transmit(peer, data, msg_type)
            readable = self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN
        if readable and threading.current_thread() is not self._thread:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _start(self) -> None:
        self._sock_fd = self._sock.getsockopt(zmq.FD)
        self._thread = threading.Thread(target=self._run, name=f"link-{self.identity}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """The I/O thread: timers, and what arrived while no caller was reading (read at
        every tick, at least every ``IO_TICK_S``)."""
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        while not self._stop.is_set():
            burst = self._read_and_handle()
            if self._monitor is not None:
                self._on_monitor()
            self._service_timers()
            if len(burst) == READ_BURST:  # more may be waiting: serve timers, read on
                continue
            left = min(self._next_deadline() - time.monotonic(), IO_TICK_S)
            try:
                ready = dict(poller.poll(max(1, int(1000 * left))))
            except zmq.ZMQError:
                if self._stop.is_set():
                    break
                raise
            if self._wake_r.fileno() in ready:
                with contextlib.suppress(BlockingIOError):
                    while self._wake_r.recv(4096):
                        pass

    def _read_and_handle(self) -> list[list[zmq.Frame]]:
        """Read a burst and handle its frames, as one: two threads reading bursts (the I/O
        thread, a caller waiting for its reply) must not handle them out of order, or the
        replay guard sees the later burst first and drops the earlier one (a batch of 200
        requests lost 50 that way). Returns the burst."""
        with self._rx_lock:
            burst = self._read_burst()
            for frames in burst:
                self._on_frames(frames)
        return burst

    def _read_burst(self) -> list[list[zmq.Frame]]:
        """Every frame waiting on the socket (at most READ_BURST messages)."""
        burst: list[list[zmq.Frame]] = []
        with self._sock_lock:
            if self._stop.is_set():
                return burst  # the socket may be closed already
            while len(burst) < READ_BURST and self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                burst.append(self._sock.recv_multipart(zmq.NOBLOCK, copy=False))
        return burst

    def _next_deadline(self) -> float:
        deadline = self._next_heartbeat
        with self._pending_lock:
            for p in self._pending.values():
                if p.deadline and p.deadline < deadline:
                    deadline = p.deadline
        return deadline

    def _service_timers(self) -> None:
        now = time.monotonic()
        with self._pending_lock:
            pendings = list(self._pending.values())
        for p in pendings:
            if p.done.is_set() or now < p.deadline:
                continue
            if not self._peer_reachable(p.peer):
                p.finish(error=PeerDead(f"peer {p.peer!r} is dead"))
            elif p.resends_left == 0:
                p.finish(error=LinkTimeout(f"no reply to {p.msg_type} from {p.peer!r}"))
            else:
                p.resends_left -= 1
                p.deadline = now + p.timeout_s
                self._send_now(p.peer, p.data, p.msg_type)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_s
            for peer in self._heartbeat_peers():
                with self._sock_lock:  # numbered and sent as one (see request_many)
                    _, data = self._encode("heartbeat", {}, None)
                    self._send_now(peer, data, "heartbeat")
            self._check_liveness(now)

    def _check_liveness(self, now: float) -> None:
        with self._state_lock:
            dead = [
                p for p in self._alive if now - self._last_seen.get(p, now) > self.config.liveness_s
            ]
            for peer in dead:
                self._alive.discard(peer)
        for peer in dead:
            log.info("%s: peer %s declared dead", self.identity, peer)
            self._on_dead(peer)
            self._post(LinkEvent("dead", peer))

    def _accept(self, data: bytes, authenticated: str) -> tuple[m.Message, bytes] | None:
        """Decode, authenticate and replay-check one frame.

        Returns (message, digest of its bytes), or None if rejected or a repeated request.
        """
        digest = hashlib.blake2b(data, digest_size=16).digest()
        try:
            msg = m.decode(
                data,
                sender_role=self.peer_role,
                max_bytes=self.config.max_bytes,
                capabilities=self.config.capabilities,
            )
            if msg.sender != authenticated:
                raise m.ProtocolError(
                    "spoofed", f"sender {msg.sender!r} on connection of {authenticated!r}"
                )
            with self._replies_lock:
                entry = self._replies.get(msg.sender, {}).get(msg.seq)
                hit = entry is not None and entry[0] == digest
                cached = entry[1] if hit else None
            if hit:  # a retried request (same bytes): answer from the cache, never twice
                self.counters.on_received(len(data), msg.type)
                self.counters.on_duplicate()
                if cached is not None:
                    self._send_now(msg.sender, cached, "reply-cached")
                return None
            self._guard.check(msg)
        except m.ProtocolError as exc:
            self.counters.on_received(len(data), None)
            self.counters.on_reject(exc.reason)
            log.debug("%s rejected a frame from %r: %s", self.identity, authenticated, exc)
            return None
        self.counters.on_received(len(data), msg.type)
        return msg, digest

    def _remember_request(self, msg: m.Message, digest: bytes) -> None:
        """Open a reply-cache entry for a request (its reply is filled in by :meth:`reply`)."""
        with self._replies_lock:
            cache = self._replies.setdefault(msg.sender, collections.OrderedDict())
            cache[msg.seq] = [digest, None]
            while len(cache) > self.config.reply_cache:
                cache.popitem(last=False)

    def _dispatch(self, msg: m.Message, digest: bytes) -> None:
        """Route an accepted message: reply to a pending request, heartbeat or event."""
        with self._state_lock:
            self._last_seen[msg.sender] = time.monotonic()
        if msg.type == "heartbeat":
            return
        if msg.type in REPLY_TYPES:
            with self._pending_lock:
                pending = self._pending.get(msg.re) if msg.re is not None else None
            if pending is not None and pending.peer == msg.sender and not pending.done.is_set():
                pending.finish(reply=msg)
            return  # late or unsolicited replies are dropped
        self._remember_request(msg, digest)  # in progress until the application replies
        self._post(LinkEvent("message", msg.sender, msg))

    # hooks implemented by the two ends (OrchestratorLink, NodeLink)
    @abstractmethod
    def _transmit(self, peer: str, data: bytes, msg_type: str) -> None:
        """Put ``data`` on the wire towards ``peer``."""

    @abstractmethod
    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        """Handle frames received from the socket."""

    def _on_monitor(self) -> None:  # noqa: B027 (optional hook: only the orchestrator monitors)
        """Handle socket-monitor events (none by default)."""

    def _on_dead(self, peer: str) -> None:
        with self._pending_lock:
            for p in self._pending.values():
                if p.peer == peer:
                    p.finish(error=PeerDead(f"peer {peer!r} is dead"))

    @abstractmethod
    def _peer_reachable(self, peer: str) -> bool:
        """Whether requests to ``peer`` may be sent."""

    @abstractmethod
    def _heartbeat_peers(self) -> list[str]:
        """The peers to send heartbeats to."""

    def _close_sockets(self) -> None:
        with self._sock_lock:
            for s in (self._monitor, self._sock):
                if s is not None:
                    s.close(linger=0)


# ---------------------------------------------------------------------- orchestrator


class _KeyDirAuthenticator(ThreadAuthenticator):
    """ZAP handler admitting the node public keys of a key directory; user id = node id."""

    def __init__(self, context: zmq.Context, allowed: dict[bytes, str]) -> None:
        super().__init__(context)
        self.allowed = dict(allowed)

    def callback(self, domain: str, key: bytes) -> bool:
        """Credentials provider: is the z85 public ``key`` one of the node keys?"""
        return key in self.allowed

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.allowed[z85.encode(client_public_key)]


@dataclass(frozen=True)
class NodeInfo:
    """A joined node: its users, whether it is alive, when it was last heard (monotonic s)."""

    node_id: str
    user_ids: tuple[str, ...]
    alive: bool
    last_seen: float


class OrchestratorLink(_Endpoint):
    """The orchestrator's ROUTER endpoint.

    Args:
        endpoint: ZeroMQ address to bind, e.g. "tcp://127.0.0.1:*" (random port).
        keys_dir: key directory from :func:`orchestrator.keys.create_keys` (CurveZMQ on),
            or None for plain text.
        config: timing and limits.

    Attributes:
        address: the bound address nodes connect to (tcp://host:port).
        server_public_key: z85 public key nodes need (None in plain text).
    """

    role, peer_role = "orchestrator", "node"

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:*",
        *,
        keys_dir: str | Path | None = None,
        config: LinkConfig | None = None,
    ) -> None:
        super().__init__(ORCHESTRATOR_ID, config)
        self._nodes: dict[str, tuple[str, ...]] = {}
        self._auth: _KeyDirAuthenticator | None = None
        self.server_public_key: bytes | None = None
        sock = self._ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.router_mandatory = 1  # unroutable sends raise instead of vanishing
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted node takes its identity over
        sock.maxmsgsize = 2 * self.config.max_bytes  # hard cap (disconnects); soft cap counted
        try:
            if keys_dir is not None:
                from orchestrator.keys import load_node_public_keys, load_server_keys

                public, secret = load_server_keys(keys_dir)
                self._auth = _KeyDirAuthenticator(self._ctx, load_node_public_keys(keys_dir))
                self._auth.start()
                self._auth.configure_curve_callback("*", credentials_provider=self._auth)
                sock.curve_secretkey, sock.curve_publickey = secret, public
                sock.curve_server = True
                self.server_public_key = public
            self._monitor = sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            )
            sock.bind(endpoint)
        except Exception:
            sock.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
            self._ctx.term()
            raise
        self.address: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        self._start()

    def nodes(self) -> dict[str, NodeInfo]:
        """Every node that ever joined, by node id."""
        with self._state_lock:
            return {
                n: NodeInfo(n, users, n in self._alive, self._last_seen.get(n, 0.0))
                for n, users in self._nodes.items()
            }

    def alive_nodes(self) -> list[str]:
        """Ids of the nodes currently alive, sorted."""
        with self._state_lock:
            return sorted(self._alive)

    def broadcast(self, msg_type: str, body: dict[str, Any] | None = None) -> list[int]:
        """Send a one-way message to every alive node; returns the sequence numbers."""
        return [self.send(n, msg_type, body) for n in self.alive_nodes()]

    def _close_sockets(self) -> None:
        super()._close_sockets()
        if self._auth is not None:  # before the context terminates: it owns sockets there
            self._auth.stop()
            self._auth = None

    # ------------------------------------------------------------------ hooks

    def _peer_reachable(self, peer: str) -> bool:
        with self._state_lock:
            return peer in self._alive

    def _heartbeat_peers(self) -> list[str]:
        return self.alive_nodes()

    def _transmit(self, peer: str, data: bytes, msg_type: str) -> None:
        try:
            self._sock.send_multipart([peer.encode(), data], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH (gone) or EAGAIN (peer's queue full)
            log.debug("send of %s to %s failed: %s", msg_type, peer, exc)
            return
        self.counters.on_sent(msg_type, len(data))

    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        if len(frames) != 2:
            self.counters.on_received(sum(len(f.bytes) for f in frames[1:]), None)
            self.counters.on_reject("frames")
            return
        routing, frame = frames[0].bytes, frames[1]
        data = frame.bytes
        try:
            routing_id = routing.decode()
        except UnicodeDecodeError:
            routing_id = ""
        authenticated = routing_id
        if self._auth is not None:
            try:
                authenticated = frame.get("User-Id")
            except zmq.ZMQError:
                authenticated = ""
            if authenticated != routing_id:  # key of node A with identity of node B
                self.counters.on_received(len(data), None)
                self.counters.on_reject("spoofed")
                return
        accepted = self._accept(data, authenticated)
        if accepted is None:
            return
        msg, digest = accepted
        if msg.type == "hello":
            self._on_hello(msg, digest)
            return
        with self._state_lock:
            joined = msg.sender in self._alive
        if not joined:
            self.counters.on_reject("not_joined")
            return
        self._dispatch(msg, digest)

    def _on_hello(self, msg: m.Message, digest: bytes) -> None:
        node_id = msg.body["node_id"]
        if node_id != msg.sender or not NODE_ID_PATTERN.match(node_id):
            self.counters.on_reject("spoofed")
            return
        with self._state_lock:
            self._nodes[node_id] = tuple(msg.body["user_ids"])
            self._alive.add(node_id)
            self._last_seen[node_id] = time.monotonic()
        with self._replies_lock:
            self._replies.pop(node_id, None)  # a new session
        self._remember_request(msg, digest)
        self.reply(
            msg,
            "welcome",
            {
                "node_id": node_id,
                "heartbeat_s": self.config.heartbeat_s,
                "liveness_s": self.config.liveness_s,
            },
        )
        self._post(LinkEvent("joined", node_id, msg))

    def _on_monitor(self) -> None:
        for _ in range(1000):
            try:
                event = zmq_monitor.recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] & (
                zmq.EVENT_HANDSHAKE_FAILED_AUTH
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            ):
                self.counters.on_reject("unauthenticated")


# ---------------------------------------------------------------------- node


class NodeLink(_Endpoint):
    """A node's DEALER endpoint.

    Args:
        node_id: the node's id; with CurveZMQ, the name of its key pair.
        address: the orchestrator's :attr:`OrchestratorLink.address`.
        keys_dir: key directory holding ``server.key`` and this node's key pair, or None
            for plain text; explicit keys may be given instead (``node_keys`` =
            (public, secret), ``server_public_key``), all z85 bytes.
        config: timing and limits.
    """

    role, peer_role = "node", "orchestrator"

    def __init__(
        self,
        node_id: str,
        address: str,
        *,
        keys_dir: str | Path | None = None,
        node_keys: tuple[bytes, bytes] | None = None,
        server_public_key: bytes | None = None,
        config: LinkConfig | None = None,
    ) -> None:
        if not isinstance(node_id, str) or not NODE_ID_PATTERN.match(node_id):
            raise ValueError(f"node_id must match {NODE_ID_PATTERN.pattern}, got {node_id!r}")
        super().__init__(node_id, config)
        self._joined = False
        if keys_dir is not None:
            from orchestrator.keys import load_node_keys, load_server_keys

            node_keys = node_keys or load_node_keys(keys_dir, node_id)
            server_public_key = server_public_key or load_server_keys(keys_dir, secret=False)[0]
        if (node_keys is None) != (server_public_key is None):
            raise ValueError("CurveZMQ needs both node_keys and server_public_key")
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.identity = node_id.encode()
        sock.maxmsgsize = 2 * self.config.max_bytes
        if node_keys is not None:
            sock.curve_publickey, sock.curve_secretkey = node_keys
            sock.curve_serverkey = server_public_key
        sock.connect(address)
        self._sock = sock
        self._start()

    @property
    def joined(self) -> bool:
        """True after :meth:`join` succeeded and while the orchestrator is alive."""
        with self._state_lock:
            return self._joined and ORCHESTRATOR_ID in self._alive

    def join(
        self,
        user_ids: list[str],
        *,
        radio: str | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> m.Message:
        """Send hello and wait for welcome; returns the welcome message.

        Raises :class:`LinkTimeout` when the orchestrator does not answer (e.g. it does
        not know this node's key).
        """
        body: dict[str, Any] = {"node_id": self.identity, "user_ids": list(user_ids)}
        if radio is not None:
            body["radio"] = radio
        with self._state_lock:
            self._alive.add(ORCHESTRATOR_ID)  # reachable for the hello request
            self._last_seen[ORCHESTRATOR_ID] = time.monotonic()
        try:
            welcome = self.request(
                ORCHESTRATOR_ID, "hello", body, timeout_s=timeout_s, retries=retries
            )
        except LinkError:
            with self._state_lock:
                self._alive.discard(ORCHESTRATOR_ID)
            raise
        with self._state_lock:
            self._joined = True
        return welcome

    def _peer_reachable(self, peer: str) -> bool:
        with self._state_lock:
            return peer == ORCHESTRATOR_ID and peer in self._alive

    def _heartbeat_peers(self) -> list[str]:
        with self._state_lock:
            return [ORCHESTRATOR_ID] if self._joined and ORCHESTRATOR_ID in self._alive else []

    def _check_liveness(self, now: float) -> None:
        with self._state_lock:
            if not self._joined:  # before joining, request retries handle silence
                return
        super()._check_liveness(now)

    def _transmit(self, peer: str, data: bytes, msg_type: str) -> None:
        try:
            self._sock.send(data, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # EAGAIN: not connected yet / queue full
            log.debug("send of %s failed: %s", msg_type, exc)
            return
        self.counters.on_sent(msg_type, len(data))

    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        if len(frames) != 1:
            self.counters.on_received(sum(len(f.bytes) for f in frames), None)
            self.counters.on_reject("frames")
            return
        accepted = self._accept(frames[0].bytes, ORCHESTRATOR_ID)
        if accepted is not None:
            self._dispatch(*accepted)
