"""Simulated radios shared across processes: a radio service and its network client.

On the ``sim`` back-end every radio must sit on *one* shared medium (the air adds
the users' signals), but user nodes run in their own processes. The process that owns
the medium runs a :class:`RadioService`; node processes open
``simnet://HOST:PORT/RADIO`` URIs, which give a :class:`NetSimRadio` — a full
:class:`~radio.base.Radio` whose calls travel over a ZeroMQ REQ/REP link and are
executed by a real radio (normally a :class:`~radio.sim.SimRadio`) in the service.

Wire format (msgpack): request ``{"radio", "op", "args"}``; reply ``{"ok": True,
"value"}`` or ``{"ok": False, "error": <RadioError class name>, "message"}``.
Sample arrays travel as raw complex64 bytes. The radios of one process share one REQ
socket per service (a node hosting thousands of users holds one socket, not one each).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import zmq

from radio import base
from radio.base import Radio, RadioConfig, RadioDisconnected, RadioError, RadioTimeout

#: Exceptions a service may report, by name (anything else becomes RadioError).
_ERRORS: dict[str, type[Exception]] = {
    name: getattr(base, name)
    for name in (
        "RadioError",
        "RadioConfigError",
        "RadioTimeout",
        "RadioDisconnected",
        "TransmitClippingError",
        "TimeBaseUnsupported",
        "StreamTooLate",
    )
}
_ERRORS["ValueError"] = ValueError

_OPS = (
    "configure",
    "get_config",
    "transmit",
    "stop_transmit",
    "receive",
    "close",
    # time bases (radio.time_base): streams, status flags, the TDD engine
    "check_time_base",
    "start_stream",
    "earliest_index",
    "place",
    "status",
    "clear_status",
    "arm_transmit",
    # planned rounds of the ideal time base on a simulated medium
    "transmit_at",
)


def _pack_samples(samples: np.ndarray) -> bytes:
    return np.ascontiguousarray(samples, dtype=np.complex64).tobytes()


def _unpack_samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.complex64).copy()


class RadioService:
    """Serve radios created by ``open_local(name) -> Radio`` to other processes.

    Args:
        open_local: creates (or returns) the local radio for a name, e.g.
            ``lambda name: SimRadio(f"sim://lab/{name}")``.
        endpoint: ZeroMQ endpoint to bind; ``tcp://127.0.0.1:*`` picks a free port.

    Use as a context manager; :attr:`uri_prefix` is ``simnet://127.0.0.1:PORT``.
    """

    def __init__(
        self, open_local: Callable[[str], Radio], endpoint: str = "tcp://127.0.0.1:*"
    ) -> None:
        self._open_local = open_local
        self._radios: dict[str, Radio] = {}
        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(endpoint)
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._lock = threading.RLock()  # radios are touched by the serving thread and owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="radio-service", daemon=True)
        self.requests = 0
        self._thread.start()

    @property
    def uri_prefix(self) -> str:
        host_port = self.endpoint.removeprefix("tcp://")
        return f"simnet://{host_port}"

    def uri(self, radio_name: str) -> str:
        """The URI a node uses to open ``radio_name`` through this service."""
        return f"{self.uri_prefix}/{radio_name}"

    def open(self, name: str) -> Radio:
        """The local radio served as ``name`` (created on first use)."""
        with self._lock:
            if name not in self._radios:
                self._radios[name] = self._open_local(name)
            return self._radios[name]

    def reset(self) -> None:
        """Close every served radio; clients' next calls re-create them through
        ``open_local`` (e.g. on a fresh medium). Clients keep their URIs."""
        with self._lock:
            for radio in self._radios.values():
                radio.close()
            self._radios.clear()

    def _execute(self, request: dict[str, Any]) -> Any:
        op, args = request["op"], request.get("args", {})
        if op not in _OPS:
            raise RadioError(f"unknown operation {op!r}; allowed: {_OPS}")
        radio = self.open(str(request["radio"]))
        if op == "configure":
            radio.configure(RadioConfig(**args["config"]))
            return None
        if op == "get_config":
            return dict(vars(radio.config))
        if op == "transmit":
            radio.transmit(_unpack_samples(args["samples"]), cyclic=bool(args["cyclic"]))
            return None
        if op == "transmit_at":
            end_s = None if args["end_s"] is None else float(args["end_s"])
            radio.transmit_at(_unpack_samples(args["samples"]), float(args["push_s"]), end_s)
            return None
        if op == "stop_transmit":
            radio.stop_transmit()
            return None
        if op == "receive":
            return _pack_samples(radio.receive(int(args["n_samples"])))
        if op in ("place", "arm_transmit"):
            samples = _unpack_samples(args["samples"])
            extra = (int(args["index"]),) if op == "place" else ()
            return getattr(radio, op)(samples, *extra)
        if op == "check_time_base":
            return radio.check_time_base(str(args["time_base"]))
        if op in ("start_stream", "earliest_index", "status", "clear_status"):
            return getattr(radio, op)()
        radio.close()
        self._radios.pop(str(request["radio"]), None)
        return None

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            message = self._socket.recv()
            self.requests += 1
            try:
                request = msgpack.unpackb(message, raw=False)
                if not isinstance(request, dict) or "op" not in request or "radio" not in request:
                    raise RadioError("malformed request: expected a map with 'radio' and 'op'")
                with self._lock:
                    value = self._execute(request)
                reply = {"ok": True, "value": value}
            except Exception as error:  # reported to the client, never kills the service
                name = type(error).__name__
                reply = {"ok": False, "error": name if name in _ERRORS else "RadioError"}
                reply["message"] = str(error)
            self._socket.send(msgpack.packb(reply, use_bin_type=True))

    def close(self) -> None:
        """Stop serving and close every radio opened through the service."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close(linger=0)
        for radio in self._radios.values():
            radio.close()
        self._radios.clear()

    def __enter__(self) -> RadioService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Requester:
    """One REQ socket to a radio service, shared by every :class:`NetSimRadio` of this
    process on that endpoint (calls serialised by a lock; the service answers one at a
    time anyway). A node hosting thousands of users thus holds one socket, not one per
    radio (a ZeroMQ context opens at most 1,023 by default). Reference-counted: the
    socket closes with the last radio using it."""

    _lock = threading.Lock()
    _open: dict[tuple[int, str], _Requester] = {}

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.users = 0
        self.lock = threading.Lock()
        self._socket: zmq.Socket | None = None
        self._timeout_ms = -1
        self.connect()

    @classmethod
    def acquire(cls, endpoint: str) -> _Requester:
        """The process's requester for ``endpoint`` (created on first use)."""
        with cls._lock:
            key = (os.getpid(), endpoint)
            requester = cls._open.get(key)
            if requester is None:
                requester = cls._open[key] = cls(endpoint)
            requester.users += 1
            return requester

    def release(self) -> None:
        """One radio less; the last closes the socket."""
        with _Requester._lock:
            self.users -= 1
            if self.users > 0:
                return
            _Requester._open.pop((os.getpid(), self.endpoint), None)
        with self.lock:
            if self._socket is not None:
                self._socket.close(linger=0)
                self._socket = None

    def connect(self) -> None:
        """(Re)open the socket: a REQ socket cannot continue after a lost reply."""
        if self._socket is not None:
            self._socket.close(linger=0)
        self._socket = zmq.Context.instance().socket(zmq.REQ)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(self.endpoint)
        self._timeout_ms = -1

    def request(self, message: bytes, timeout_ms: int) -> bytes:
        """Send ``message`` and return the reply; raises ``zmq.Again`` after
        ``timeout_ms`` (the socket is then re-opened)."""
        with self.lock:
            if self._socket is None:
                self.connect()
            if timeout_ms != self._timeout_ms:
                self._socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
                self._socket.setsockopt(zmq.SNDTIMEO, timeout_ms)
                self._timeout_ms = timeout_ms
            try:
                self._socket.send(message)
                return self._socket.recv()
            except zmq.Again:
                self.connect()
                raise


class NetSimRadio(Radio):
    """A :class:`Radio` served by a :class:`RadioService` in another process.

    Args:
        uri: ``simnet://HOST:PORT/RADIO``.
        timeout_s: per-call timeout; a timed-out call raises :class:`RadioTimeout`
            and the link is re-opened (REQ sockets cannot continue after a lost reply).
    """

    def __init__(self, uri: str, timeout_s: float = 10.0) -> None:
        rest = uri.removeprefix("simnet://")
        if rest == uri or "/" not in rest or not rest.split("/", 1)[1]:
            raise base.RadioConfigError(f"expected simnet://HOST:PORT/RADIO, got {uri!r}")
        host_port, self._name = rest.split("/", 1)
        self.uri = uri
        self._endpoint = f"tcp://{host_port}"
        self._timeout_ms = int(timeout_s * 1000)
        self._requester: _Requester | None = _Requester.acquire(self._endpoint)
        self._closed = False

    def _call(self, op: str, **args: Any) -> Any:
        if self._closed or self._requester is None:
            raise RadioDisconnected(f"{self.uri} is closed")
        request = {"radio": self._name, "op": op, "args": args}
        try:
            message = msgpack.packb(request, use_bin_type=True)
            reply = msgpack.unpackb(self._requester.request(message, self._timeout_ms), raw=False)
        except zmq.Again as error:
            raise RadioTimeout(f"{self.uri}: no reply to {op!r} within the timeout") from error
        if not reply["ok"]:
            raise _ERRORS.get(reply["error"], RadioError)(f"{self.uri}: {reply['message']}")
        return reply["value"]

    @property
    def config(self) -> RadioConfig:
        values = self._call("get_config")
        return RadioConfig(**values)

    def configure(self, config: RadioConfig) -> None:
        self._call("configure", config=dict(vars(config)))

    def transmit(self, samples: np.ndarray, *, cyclic: bool = False) -> None:
        samples = self.check_transmit_samples(samples)
        self._call("transmit", samples=_pack_samples(samples), cyclic=cyclic)

    def transmit_at(self, samples: np.ndarray, push_s: float, end_s: float | None = None) -> None:
        samples = self.check_transmit_samples(samples)
        self._call("transmit_at", samples=_pack_samples(samples), push_s=float(push_s),
                   end_s=None if end_s is None else float(end_s))  # fmt: skip

    def stop_transmit(self) -> None:
        self._call("stop_transmit")

    def receive(self, n_samples: int) -> np.ndarray:
        if n_samples <= 0:
            raise ValueError(f"n_samples must be positive, got {n_samples}")
        return _unpack_samples(self._call("receive", n_samples=int(n_samples)))

    def check_time_base(self, time_base: str) -> None:
        self._call("check_time_base", time_base=time_base)

    def start_stream(self) -> None:
        self._call("start_stream")

    def earliest_index(self) -> int:
        return int(self._call("earliest_index"))

    def place(self, samples: np.ndarray, index: int) -> None:
        samples = self.check_transmit_samples(samples)
        self._call("place", samples=_pack_samples(samples), index=int(index))

    def status(self) -> dict[str, bool]:
        return dict(self._call("status"))

    def clear_status(self) -> None:
        self._call("clear_status")

    def arm_transmit(self, samples: np.ndarray) -> None:
        samples = self.check_transmit_samples(samples)
        self._call("arm_transmit", samples=_pack_samples(samples))

    def reconnect(self) -> None:
        if self._requester is None:
            self._requester = _Requester.acquire(self._endpoint)
        else:
            with self._requester.lock:
                self._requester.connect()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._call("close")
        except RadioError:
            pass  # the service may already be gone; closing must not fail
        finally:
            self._closed = True
            if self._requester is not None:
                self._requester.release()
                self._requester = None
