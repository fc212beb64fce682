"""The versioned message schema of the orchestrator <-> node digital link (msgpack).

Every message is a msgpack map (the *envelope*)::

    {"v": PROTOCOL_VERSION, "type": str, "seq": int, "sender": str, "ts": float,
     "re": int | None, "body": {...}}

``seq`` is the sender's sequence number (strictly increasing per sender; it starts at
the sender's clock in microseconds, so a restarted process never reuses old numbers),
``ts`` the send time in seconds since the epoch, ``re`` the ``seq`` of the request a
reply answers (``None`` for requests and one-way messages). ``body`` holds the fields
of the message type; unknown fields are rejected.

Each message type is declared once, as a dataclass decorated with :func:`message` (its
annotations are the field kinds, ``T | None = None`` fields are optional); the schema
:data:`SCHEMAS` is derived from the declarations and one generic validator and codec
serves every type. Senders pass a declared record (or its field map) as the body;
receivers get the validated map in :attr:`Message.body` and the record from
:func:`parse`. A new message type is one new declaration.

Numeric arrays travel as ``{"dtype": str, "shape": [int, ...], "data": bytes}``
(little-endian, dtype in :data:`ARRAY_DTYPES`, at most :data:`MAX_ARRAY_ELEMENTS`
elements, finite values) and decode to read-only :class:`numpy.ndarray`.

PRIVACY INVARIANT: a node never sends its raw samples or features over the digital
link; payloads travel only as analog waveforms through the radio (or the simulated
channel). The schema enforces it: message types a node may send (``sender`` "node" or
"any" in :data:`SCHEMAS`) have no array field, every number they carry is a scalar or
a per-user scalar (keyed by user id, at most one value per user per field), the only
lists are user ids and per-user label counts (at most :data:`MAX_CLASSES` non-negative
integers), and strings are at most :data:`MAX_STR` characters. This is checked when the
module is imported (:func:`check_privacy_invariant`) and again on every encode and
decode. Label counts are a deliberate, bounded disclosure that label-aware grouping
needs; they are labels, never samples or features.

DECLARED EXCEPTION: a message type may name a link *capability*
(:attr:`MessageSpec.capability`); it is valid only on a link granted that capability, and
refused with reason "privacy" everywhere else (both ends: :func:`encode` and
:func:`decode` take the granted ``capabilities``). The one capability,
:data:`MODEL_UPDATES`, is granted only to runs whose method declares it
(:meth:`learning.methods.base.Method.link_capabilities`: federated averaging with
digital or secure aggregation). Under it, a node's ``uplink_reply`` may carry, besides
scalars, model updates (:data:`MODEL_UPDATE_ROWS`: one 1-D row per user, float32 or the
int64 masked fixed-point encoding of secure aggregation, finite, at most
:data:`MAX_ARRAY_ELEMENTS` elements) and key material (:data:`BLOBS`: at most
:data:`MAX_BLOB_BYTES` bytes each). Nothing else a node sends changes.

All failures raise :class:`ProtocolError` with a ``reason`` code from :data:`REASONS`,
which receivers count per reason.
"""

from __future__ import annotations

import math
import threading
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import msgpack
import numpy as np

from radio.base import RadioConfig
from radio.ota_transmitter import SlotOrder

PROTOCOL_VERSION = 1

#: default limit of one encoded message, bytes
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: limit of one array, elements
MAX_ARRAY_ELEMENTS = 1 << 20
MAX_ARRAY_NDIM = 4
#: limit of strings (ids, reasons, notes), characters
MAX_STR = 256
#: limit of lists and per-user maps (user ids per message), entries
MAX_LIST = 4096
#: limit of label classes in a label histogram
MAX_CLASSES = 100
#: replay window: a message's timestamp must be within this many seconds of the receiver's clock
DEFAULT_REPLAY_WINDOW_S = 30.0

ARRAY_DTYPES = frozenset({"float32", "float64", "complex64", "complex128", "int32", "int64"})

REASONS = (
    "oversize",  # encoded message larger than the limit
    "decode",  # not valid msgpack / not a map / too deeply nested
    "frames",  # wrong number of ZeroMQ frames
    "version",  # protocol version not supported
    "envelope",  # envelope fields missing or of the wrong type
    "unknown_type",  # message type not in SCHEMAS
    "direction",  # message type not allowed from this kind of sender
    "missing_field",
    "unknown_field",
    "bad_type",  # field of the wrong type
    "bad_value",  # out of range, non-finite, inconsistent lengths
    "bad_array",  # malformed array encoding, dtype not allowed, too large
    "privacy",  # a node-sent message would carry array data
    "replay",  # sequence number not above the last one seen from this sender
    "stale",  # timestamp outside the replay window
    "spoofed",  # envelope sender differs from the authenticated identity
    "not_joined",  # a node sent something other than hello before joining
    "unauthenticated",  # CurveZMQ handshake failed (unknown key, no encryption)
)


class ProtocolError(ValueError):
    """A message failed encoding or validation; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown protocol error reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- field kinds

STR, INT, FLOAT, BOOL = "str", "int", "float", "bool"
STR_LIST, INT_LIST = "str_list", "int_list"
ARRAY = "array"  # orchestrator -> node only
ARRAYS = "arrays"  # {name: array}, orchestrator -> node only (method feedback, eval requests)
USER_FLOATS, USER_INTS = "user_floats", "user_ints"  # {user_id: scalar}
USER_COUNTS = "user_counts"  # {user_id: [count per class]}
MODEL_UPDATE_ROWS = "model_update_rows"  # (users, P) float32 | int64: capability MODEL_UPDATES
BLOBS = "blobs"  # {name: bytes <= MAX_BLOB_BYTES}: capability MODEL_UPDATES
BLOB_LISTS = "blob_lists"  # [{name: bytes}] one per listed user: capability MODEL_UPDATES

#: the link capability under which users may send model updates digitally
MODEL_UPDATES = "model_updates"
#: limit of one blob (a public key, an encrypted or plain key share), bytes
MAX_BLOB_BYTES = 256
#: dtypes of a model update row: the update itself, or its masked fixed-point encoding
UPDATE_DTYPES = frozenset({"float32", "int64"})

_INT64 = 2**63
#: limit of named arrays in one ARRAYS field
MAX_NAMED_ARRAYS = 16

#: scalar annotation of a declared record's field -> its wire dtype
_RECORD_DTYPES = {"float": "float64", "int": "int64", "complex": "complex128"}


@dataclass(frozen=True)
class Records:
    """Field kind: a list of ``record`` instances (a dataclass whose fields are all
    ``float``, ``int`` or ``complex``), one per listed user, sent as one array per field
    and decoded back into instances. Declaring the dataclass is the whole schema: a new
    field of the record travels without touching the message code. Orchestrator -> node
    only (arrays)."""

    record: type

    def columns(self) -> dict[str, str]:
        """Field name -> wire dtype."""
        out = {}
        for f in fields(self.record):
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind not in _RECORD_DTYPES:
                raise ValueError(f"{self.record.__name__}.{f.name}: {kind} is not a scalar kind")
            out[f.name] = _RECORD_DTYPES[kind]
        return out

    def encode(self, name: str, value: Any) -> dict[str, np.ndarray]:
        """Instances -> name -> column array (validated)."""
        items = _check_list(name, value)
        if not all(isinstance(v, self.record) for v in items):
            raise _fail(f"a list of {self.record.__name__}", name, value)
        return {
            col: np.array([getattr(v, col) for v in items], dtype=dtype)
            for col, dtype in self.columns().items()
        }

    def decode(self, name: str, wire: Any) -> list[Any]:
        """Wire columns -> instances; ProtocolError if malformed."""
        columns = self.columns()
        if not isinstance(wire, dict) or set(wire) != set(columns):
            raise ProtocolError("bad_value", f"{name} must hold the columns {sorted(columns)}")
        arrays = {}
        for col, dtype in columns.items():
            array = decode_array(wire[col])
            if array.ndim != 1 or array.dtype != np.dtype(dtype):
                raise ProtocolError("bad_array", f"{name}.{col} must be 1-D {dtype}")
            arrays[col] = array
        lengths = {a.shape[0] for a in arrays.values()}
        if len(lengths) > 1:
            raise ProtocolError("bad_value", f"{name} columns differ in length")
        n = lengths.pop() if lengths else 0
        cast = {"float64": float, "int64": int, "complex128": complex}
        return [
            self.record(**{c: cast[columns[c]](arrays[c][i]) for c in columns}) for i in range(n)
        ]


@dataclass(frozen=True)
class MessageSpec:
    """Schema of one message type.

    Attributes:
        sender: "orchestrator", "node" or "any".
        required: field name -> kind; optional: same, may be absent.
        check: cross-field validation of the decoded body (raises ProtocolError).
        doc: one line on the message's purpose.
        capability: the link capability the type needs (None: always valid).
    """

    sender: str
    required: Mapping[str, str]
    optional: Mapping[str, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] | None = None
    doc: str = ""
    capability: str | None = None


def _same_length(*arrays: str) -> Callable[[dict[str, Any]], None]:
    """A check that each named array is 1-D with one entry per ``user_ids``."""

    def check(body: dict[str, Any]) -> None:
        n = len(body["user_ids"])
        for name in arrays:
            if name in body and body[name].shape != (n,):
                raise ProtocolError(
                    "bad_value", f"{name} must have shape ({n},), got {body[name].shape}"
                )

    return check


def _ids_match(*names: str, unique: bool = True) -> Callable[[dict[str, Any]], None]:
    """A check that int lists have one entry per ``user_ids`` and (``unique``) ids are
    unique."""

    def check(body: dict[str, Any]) -> None:
        ids = body["user_ids"]
        if unique and len(set(ids)) != len(ids):
            raise ProtocolError("bad_value", "user_ids contains duplicates")
        for name in names:
            if name in body and len(body[name]) != len(ids):
                raise ProtocolError("bad_value", f"{name} must have {len(ids)} entries")

    return check


def _both(*checks: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def check(body: dict[str, Any]) -> None:
        for c in checks:
            c(body)

    return check


def _check_eval_report(body: dict[str, Any]) -> None:
    if not set(body["correct"]) <= set(body["count"]) or not set(body["loss"]) <= set(
        body["count"]
    ):
        raise ProtocolError("bad_value", "loss and correct must be keyed by users in count")
    for uid, n in body["count"].items():
        if n < 0 or not 0 <= body["correct"].get(uid, 0) <= n:
            raise ProtocolError("bad_value", f"need 0 <= correct <= count for user {uid!r}")


# --------------------------------------------------------------------------- declarations
#
# One frozen dataclass per message type is its whole schema: the field annotations give
# the kinds (:func:`_kind_of`), a ``T | None = None`` field is optional, the class
# docstring is the documentation. :data:`SCHEMAS` is derived from them, and one generic
# validator/codec (:func:`validate_body`, :func:`encode`, :func:`decode`) serves every
# type. Bodies go on the wire as maps of field name -> value (absent optional fields are
# left out); :func:`parse` turns a decoded :class:`Message` back into its record.

#: user id -> one scalar / label counts; name -> array (orchestrator -> node only)
UserFloats = dict[str, float]
UserInts = dict[str, int]
UserCounts = dict[str, list[int]]
NamedArrays = dict[str, np.ndarray]
#: model updates, one row per listed user (capability MODEL_UPDATES)
ModelUpdateRows = typing.NewType("ModelUpdateRows", np.ndarray)
#: name -> bytes of key material; one such map per listed user (capability MODEL_UPDATES)
Blobs = dict[str, bytes]
BlobLists = list[dict[str, bytes]]

_SIMPLE_KINDS: dict[Any, str] = {
    str: STR,
    int: INT,
    float: FLOAT,
    bool: BOOL,
    list[str]: STR_LIST,
    list[int]: INT_LIST,
    np.ndarray: ARRAY,
    NamedArrays: ARRAYS,
    UserFloats: USER_FLOATS,
    UserInts: USER_INTS,
    UserCounts: USER_COUNTS,
    ModelUpdateRows: MODEL_UPDATE_ROWS,
    Blobs: BLOBS,
    BlobLists: BLOB_LISTS,
}


def _kind_of(owner: str, name: str, hint: Any) -> tuple[Any, bool]:
    """The field kind of annotation ``hint`` and whether the field is optional
    (``T | None``); a ``list[R]`` of a dataclass ``R`` is :class:`Records` of ``R``."""
    args = typing.get_args(hint)
    optional = type(None) in args and len(args) == 2
    if optional:
        hint = next(a for a in args if a is not type(None))
    if hint in _SIMPLE_KINDS:
        return _SIMPLE_KINDS[hint], optional
    if typing.get_origin(hint) is list and is_dataclass(typing.get_args(hint)[0]):
        return Records(typing.get_args(hint)[0]), optional
    raise TypeError(f"{owner}.{name}: no field kind for {hint!r}")


#: message type -> its declared record class (filled by :func:`message`)
MESSAGES: dict[str, type] = {}


def message(
    msg_type: str,
    sender: str,
    check: Callable[[dict[str, Any]], None] | None = None,
    capability: str | None = None,
) -> Callable[[type], type]:
    """Class decorator: declare ``cls`` (a dataclass) as the body of ``msg_type`` sent by
    ``sender`` ("orchestrator", "node" or "any"), with the cross-field ``check`` of the
    validated body, valid only on links granted ``capability`` (if any). Sets
    ``cls.TYPE`` and registers it in :data:`MESSAGES`."""

    def declare(cls: type) -> type:
        cls = dataclass(frozen=True)(cls)
        hints = typing.get_type_hints(cls)
        required, optional = {}, {}
        for f in fields(cls):
            kind, is_optional = _kind_of(cls.__name__, f.name, hints[f.name])
            if is_optional != (f.default is None):
                raise TypeError(f"{cls.__name__}.{f.name}: optional fields default to None")
            (optional if is_optional else required)[f.name] = kind
        doc = " ".join((cls.__doc__ or "").split())
        cls.TYPE = msg_type
        cls.SPEC = MessageSpec(sender, required, optional, check, doc, capability)
        MESSAGES[msg_type] = cls
        return cls

    return declare


def body_of(record: Any) -> dict[str, Any]:
    """A declared record as its body map (optional fields that are None left out)."""
    return {
        f.name: getattr(record, f.name)
        for f in fields(record)
        if not (getattr(record, f.name) is None and f.name in record.SPEC.optional)
    }


@message("hello", "node", _ids_match())
class Hello:
    """join request: the node's id (its key name) and the users it hosts"""

    node_id: str
    user_ids: list[str]
    radio: str | None = None


@message("welcome", "orchestrator")
class Welcome:
    """join accepted (reply to hello) with the heartbeat timing to use"""

    node_id: str
    heartbeat_s: float
    liveness_s: float


@message("heartbeat", "any")
class Heartbeat:
    """liveness signal, both ways"""


@message("ack", "any")
class Ack:
    """request done (reply); served_s: seconds the peer spent handling it; clipped (a
    transmit's reply): user id -> the slot whose frame the user did not send because it
    would have clipped the DAC (that slot is then counted missed)"""

    note: str | None = None
    served_s: float | None = None
    clipped: UserInts | None = None


@message("error", "any")
class Error:
    """request failed (reply) with a reason code"""

    reason: str
    detail: str
    served_s: float | None = None


@message("start_round", "orchestrator")
class StartRound:
    """a round begins: re-seed batch order for round_id, (re)configure every radio (Hz, dB)"""

    round_id: int
    center_hz: float
    sample_rate_hz: float
    tx_attenuation_db: float
    rx_gain_db: float | None = None
    rx_buffer_size: int | None = None

    @classmethod
    def of(cls, round_id: int, rf: RadioConfig) -> StartRound:
        """The start of ``round_id`` with the radio settings of ``rf``."""
        settings = [f.name for f in fields(cls) if f.name != "round_id"]
        return cls(round_id=round_id, **{name: getattr(rf, name) for name in settings})

    def radio_config(self) -> RadioConfig:
        """The radio settings it carries (absent ones at :class:`RadioConfig`'s defaults)."""
        given = {k: v for k, v in body_of(self).items() if k != "round_id"}
        return RadioConfig(**given)


@message("send_pilots", "orchestrator", _ids_match("pilot_ids", "orders", unique=False))
class SendPilots:
    """each listed user transmits its cyclic pilot pilot_ids[k] (of a group of
    group_size), or with orders (stream/tdd time bases) its acquisition pair or probe once
    as orders[k] says (a user listed several times plays each: a probe train); stop_user_ids
    stop first (saves a round trip)"""

    round_id: int
    slot_id: int
    user_ids: list[str]
    pilot_ids: list[int]
    group_size: int | None = None
    stop_user_ids: list[str] | None = None
    orders: list[SlotOrder] | None = None


@message("stop_transmit", "orchestrator", _ids_match())
class StopTransmit:
    """the listed users stop transmitting"""

    user_ids: list[str]


def _check_transmit(body: dict[str, Any]) -> None:
    """Transmit: one order and weight per entry; a user listed once, or (with slot_ids, a
    planned round's several slots) once per slot."""
    if "slot_ids" in body:
        _ids_match("orders", "slot_ids", unique=False)(body)
        pairs = list(zip(body["user_ids"], body["slot_ids"], strict=True))
        if len(set(pairs)) != len(pairs):
            raise ProtocolError("bad_value", "a user is listed twice for one slot")
    else:
        _ids_match("orders")(body)
    _same_length("weights")(body)


@message("transmit", "orchestrator", _check_transmit)
class Transmit:
    """each listed user puts its next payload on the air as a cyclic frame, as its
    SlotOrder says (radio.ota_transmitter: closed-loop corrections, tx scaling b_k, buffer
    length); weights: the mixing weights lambda_k (audit); stop_user_ids stop first;
    slot_ids: each entry's slot when one request carries several slots (a planned round:
    entries in slot order, a user once per slot), else every entry is slot_id's"""

    round_id: int
    slot_id: int
    user_ids: list[str]
    weights: np.ndarray
    orders: list[SlotOrder]
    batch_size: int
    stop_user_ids: list[str] | None = None
    slot_ids: list[int] | None = None


@message("feedback", "orchestrator", _both(_ids_match(), _same_length("weights")))
class FeedbackMessage:
    """a method's feedback after a server step (e.g. dL/dy): user k applies the arrays
    scaled by weights[k] (learning.methods.base.Feedback)"""

    round_id: int
    slot_id: int
    user_ids: list[str]
    weights: np.ndarray
    arrays: NamedArrays


@message("eval_request", "orchestrator", _ids_match())
class EvalRequest:
    """evaluate the listed users' parts of the model with the server's arrays (e.g. its
    head)"""

    round_id: int
    user_ids: list[str]
    arrays: NamedArrays | None = None


@message("eval_report", "node", _check_eval_report)
class EvalReport:
    """per-user mean loss, correct predictions and sample count (scalars only)"""

    round_id: int
    loss: UserFloats
    correct: UserInts
    count: UserInts


@message("label_report", "node")
class LabelReport:
    """per-user label histogram (counts per class) for label-aware grouping"""

    round_id: int
    counts: UserCounts


def _check_uplink_request(body: dict[str, Any]) -> None:
    _ids_match("blobs")(body)


def _check_uplink_reply(body: dict[str, Any]) -> None:
    _ids_match("blobs")(body)
    rows = body.get("updates")
    if rows is not None and rows.shape[0] != len(body["user_ids"]):
        raise ProtocolError("bad_value", "updates must have one row per user id")


@message("uplink_request", "orchestrator", _check_uplink_request, MODEL_UPDATES)
class UplinkRequestMessage:
    """one phase of the method's digital uplink (learning.methods.base.UplinkRequest) for
    the listed users: the common arrays, blobs[k] for user k; answered by uplink_reply.
    Only on links granted model_updates"""

    round_id: int
    slot_id: int
    phase: str
    user_ids: list[str]
    blobs: BlobLists
    arrays: NamedArrays | None = None


@message("uplink_reply", "node", _check_uplink_reply, MODEL_UPDATES)
class UplinkReply:
    """reply to uplink_request: the users that answered (the others dropped out), their
    model updates (one row each: float32, or int64 masked fixed point) and key material
    (blobs[k] for user k). Only on links granted model_updates"""

    user_ids: list[str]
    blobs: BlobLists
    updates: ModelUpdateRows | None = None
    served_s: float | None = None


@message("checkpoint", "orchestrator")
class Checkpoint:
    """save the node's state (its method users' state) as of the end of round_id"""

    round_id: int


@message("shutdown", "orchestrator")
class Shutdown:
    """stop the node"""

    reason: str | None = None


#: message type -> schema (derived from the declarations above). Requests are answered
#: by "ack", "welcome" or "error".
SCHEMAS: dict[str, MessageSpec] = {t: cls.SPEC for t, cls in MESSAGES.items()}


SENDER_ROLES = ("orchestrator", "node")


def node_sendable_types() -> tuple[str, ...]:
    """The message types a node may send."""
    return tuple(t for t, s in SCHEMAS.items() if s.sender in ("node", "any"))


#: the field kinds a node-sendable message may use (no arrays of any sort)
_SCALAR_KINDS = frozenset({STR, INT, FLOAT, BOOL, STR_LIST, USER_FLOATS, USER_INTS, USER_COUNTS})
#: capability -> the further kinds a node-sendable message of that capability may use
CAPABILITY_KINDS: dict[str, frozenset[str]] = {
    MODEL_UPDATES: frozenset({MODEL_UPDATE_ROWS, BLOBS, BLOB_LISTS})
}


def _node_kinds(spec: MessageSpec) -> frozenset[str]:
    """The field kinds a node-sendable ``spec`` may use."""
    return _SCALAR_KINDS | CAPABILITY_KINDS.get(spec.capability or "", frozenset())


def check_privacy_invariant(schemas: Mapping[str, MessageSpec] = SCHEMAS) -> None:
    """Raise ProtocolError("privacy") if a node-sendable type declares an array field
    (beyond the model updates and key material of a type needing a known capability)."""
    for name, spec in schemas.items():
        if spec.sender not in ("orchestrator", "node", "any"):
            raise ValueError(f"{name}: bad sender {spec.sender!r}")
        if spec.capability is not None and spec.capability not in CAPABILITY_KINDS:
            raise ValueError(f"{name}: unknown capability {spec.capability!r}")
        if spec.sender == "orchestrator":
            continue
        allowed = _node_kinds(spec)
        for fname, kind in {**spec.required, **spec.optional}.items():
            if kind not in allowed:
                raise ProtocolError(
                    "privacy", f"node-sendable {name}.{fname} has kind {kind!r} (payload risk)"
                )


check_privacy_invariant()


# --------------------------------------------------------------------------- arrays


#: dtype name -> its little-endian dtype on the wire; native dtype -> name (fast lookups)
_WIRE_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in ARRAY_DTYPES}
_WIRE_NAMES = {np.dtype(name): name for name in ARRAY_DTYPES}


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A numpy array as ``{"dtype", "shape", "data"}`` (little-endian, C order)."""
    a = np.asarray(array)
    name = _WIRE_NAMES.get(a.dtype) or _WIRE_NAMES.get(a.dtype.newbyteorder("="))
    if name is None:
        raise ProtocolError("bad_array", f"dtype {a.dtype} not in {sorted(ARRAY_DTYPES)}")
    if a.ndim > MAX_ARRAY_NDIM or a.size > MAX_ARRAY_ELEMENTS:
        raise ProtocolError("bad_array", f"array of shape {a.shape} is too large")
    a = np.ascontiguousarray(a, dtype=_WIRE_DTYPES[name])
    return {"dtype": name, "shape": list(a.shape), "data": a.tobytes()}


def decode_array(obj: Any) -> np.ndarray:
    """The (read-only) array encoded by :func:`encode_array`; ProtocolError if malformed."""
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        raise ProtocolError("bad_array", "array must be a map with dtype, shape and data")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if not isinstance(dtype, str) or dtype not in ARRAY_DTYPES:
        raise ProtocolError("bad_array", f"dtype {dtype!r} not in {sorted(ARRAY_DTYPES)}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_ARRAY_NDIM
        or not all(type(d) is int and 0 <= d <= MAX_ARRAY_ELEMENTS for d in shape)
    ):
        raise ProtocolError("bad_array", f"bad shape {shape!r}")
    n = math.prod(shape)
    if n > MAX_ARRAY_ELEMENTS:
        raise ProtocolError("bad_array", f"{n} elements exceed {MAX_ARRAY_ELEMENTS}")
    dt = _WIRE_DTYPES[dtype]
    if not isinstance(data, bytes) or len(data) != n * dt.itemsize:
        raise ProtocolError("bad_array", f"data must be {n * dt.itemsize} bytes for {shape}")
    array = np.frombuffer(data, dtype=dt).reshape(shape)
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        raise ProtocolError("bad_value", "array contains NaN or inf")
    return array


# --------------------------------------------------------------------------- fields


def _fail(kind: str, name: str, value: Any) -> ProtocolError:
    return ProtocolError("bad_type", f"{name} must be {kind}, got {type(value).__name__}")


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("a string", name, value)
    if len(value) > MAX_STR:
        raise ProtocolError("bad_value", f"{name} longer than {MAX_STR} characters")
    return value


def _check_int(name: str, value: Any) -> int:
    if type(value) is not int:
        raise _fail("an int", name, value)
    if not -_INT64 <= value < _INT64:
        raise ProtocolError("bad_value", f"{name} out of int64 range")
    return value


def _check_float(name: str, value: Any) -> float:
    if type(value) not in (int, float):
        raise _fail("a number", name, value)
    value = float(value)
    if not math.isfinite(value):
        raise ProtocolError("bad_value", f"{name} must be finite")
    return value


def _check_list(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _fail("a list", name, value)
    if len(value) > MAX_LIST:
        raise ProtocolError("bad_value", f"{name} has more than {MAX_LIST} entries")
    return list(value)


def _check_user_map(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail("a map of user id -> value", name, value)
    if len(value) > MAX_LIST:
        raise ProtocolError("bad_value", f"{name} has more than {MAX_LIST} entries")
    for key in value:
        _check_str(f"{name} key", key)
    return value


def _check_field(name: str, kind: str, value: Any, *, decoding: bool) -> Any:
    """Validate (and normalise) one field value of ``kind``; returns the value to use."""
    if kind == STR:
        return _check_str(name, value)
    if kind == INT:
        return _check_int(name, value)
    if kind == FLOAT:
        return _check_float(name, value)
    if kind == BOOL:
        if type(value) is not bool:
            raise _fail("a bool", name, value)
        return value
    if kind == STR_LIST:
        return [_check_str(f"{name}[]", v) for v in _check_list(name, value)]
    if kind == INT_LIST:
        return [_check_int(f"{name}[]", v) for v in _check_list(name, value)]
    if kind == USER_FLOATS:
        return {k: _check_float(f"{name}[{k}]", v) for k, v in _check_user_map(name, value).items()}
    if kind == USER_INTS:
        return {k: _check_int(f"{name}[{k}]", v) for k, v in _check_user_map(name, value).items()}
    if kind == USER_COUNTS:
        out = {}
        for k, v in _check_user_map(name, value).items():
            counts = [_check_int(f"{name}[{k}][]", c) for c in _check_list(name, v)]
            if len(counts) > MAX_CLASSES or any(c < 0 for c in counts):
                raise ProtocolError(
                    "bad_value", f"{name}[{k}] must be <= {MAX_CLASSES} non-negative counts"
                )
            out[k] = counts
        return out
    if kind == ARRAY:
        if decoding:
            return decode_array(value)
        if not isinstance(value, np.ndarray):
            raise _fail("a numpy array", name, value)
        return decode_array(encode_array(value))  # same checks as the receiver
    if kind == ARRAYS:
        if not isinstance(value, dict) or len(value) > MAX_NAMED_ARRAYS:
            raise _fail(f"a map of at most {MAX_NAMED_ARRAYS} name -> array", name, value)
        return {
            _check_str(f"{name} key", k): _check_field(f"{name}[{k}]", ARRAY, v, decoding=decoding)
            for k, v in value.items()
        }
    if kind == MODEL_UPDATE_ROWS:
        array = _check_field(name, ARRAY, value, decoding=decoding)
        if array.ndim != 2 or array.dtype.name not in UPDATE_DTYPES:
            raise ProtocolError(
                "bad_array", f"{name} must be 2-D {sorted(UPDATE_DTYPES)}, got {array.dtype}"
            )
        return array
    if kind == BLOBS:
        blobs = _check_user_map(name, value)
        for key, blob in blobs.items():
            if not isinstance(blob, bytes):
                raise _fail("bytes", f"{name}[{key}]", blob)
            if len(blob) > MAX_BLOB_BYTES:
                raise ProtocolError("bad_value", f"{name}[{key}] exceeds {MAX_BLOB_BYTES} bytes")
        return blobs
    if kind == BLOB_LISTS:
        return [
            _check_field(f"{name}[]", BLOBS, v, decoding=decoding) for v in _check_list(name, value)
        ]
    if isinstance(kind, Records):
        if decoding:
            return kind.decode(name, value)
        records = list(value) if isinstance(value, list | tuple) else value
        kind.decode(name, {c: encode_array(a) for c, a in kind.encode(name, records).items()})
        return records
    raise ValueError(f"unknown field kind {kind!r}")  # pragma: no cover - schema bug


def validate_body(
    msg_type: str,
    body: Any,
    *,
    sender_role: str | None = None,
    decoding: bool = True,
    capabilities: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Check ``body`` against the schema of ``msg_type``; returns the normalised body.

    Args:
        msg_type: key of :data:`SCHEMAS`.
        capabilities: the link capabilities granted (a type needing another is refused,
            reason "privacy").
        body: the field map (decoded: arrays as encoded maps; encoding: numpy arrays),
            or, when encoding, the declared record of ``msg_type`` (see :func:`message`).
        sender_role: "orchestrator" or "node" to also check the direction; None skips it.
        decoding: True when ``body`` came off the wire.
    """
    spec = SCHEMAS.get(msg_type) if isinstance(msg_type, str) else None
    if spec is None:
        raise ProtocolError("unknown_type", f"unknown message type {msg_type!r}")
    if spec.capability is not None and spec.capability not in capabilities:
        raise ProtocolError(
            "privacy", f"{msg_type} needs the link capability {spec.capability!r}, not granted"
        )
    if sender_role is not None:
        if sender_role not in SENDER_ROLES:
            raise ValueError(f"sender_role must be one of {SENDER_ROLES}, got {sender_role!r}")
        if spec.sender not in (sender_role, "any"):
            raise ProtocolError("direction", f"a {sender_role} may not send {msg_type!r}")
    if not decoding and isinstance(body, MESSAGES[msg_type]):
        body = body_of(body)
    if not isinstance(body, dict):
        raise ProtocolError("bad_type", f"body must be a map, got {type(body).__name__}")
    missing = [f for f in spec.required if f not in body]
    if missing:
        raise ProtocolError("missing_field", f"{msg_type} lacks {missing}")
    unknown = [f for f in body if f not in spec.required and f not in spec.optional]
    if unknown:
        raise ProtocolError("unknown_field", f"{msg_type} has unknown fields {unknown!r}")
    out = {}
    for fname, value in body.items():
        kind = spec.required.get(fname) or spec.optional[fname]
        if kind not in _node_kinds(spec) and spec.sender != "orchestrator":  # pragma: no cover
            raise ProtocolError("privacy", f"{msg_type}.{fname} would carry array data")
        out[fname] = _check_field(f"{msg_type}.{fname}", kind, value, decoding=decoding)
    if spec.check is not None:
        spec.check(out)
    return out


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True)
class Message:
    """One decoded, validated message.

    Attributes:
        type: key of :data:`SCHEMAS`; body: validated fields (arrays as numpy arrays).
        seq: sender's sequence number; sender: sender id; ts: send time, s since epoch.
        re: seq of the request this replies to, or None.
        version: protocol version.
    """

    type: str
    body: dict[str, Any]
    seq: int
    sender: str
    ts: float
    re: int | None = None
    version: int = PROTOCOL_VERSION


_ENVELOPE_KEYS = {"v", "type", "seq", "sender", "ts", "re", "body"}


def _to_wire(name: str, kind: Any, value: Any) -> Any:
    """A validated field value as msgpack-ready data."""
    if kind == ARRAY:
        return encode_array(value)
    if kind == ARRAYS:
        return {k: encode_array(v) for k, v in value.items()}
    if kind == MODEL_UPDATE_ROWS:
        return encode_array(value)
    if isinstance(kind, Records):
        return {c: encode_array(a) for c, a in kind.encode(name, value).items()}
    return value


def encode(
    message: Message,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    capabilities: frozenset[str] = frozenset(),
) -> bytes:
    """Validate ``message`` and serialise it; ProtocolError if invalid or too large, or of
    a type needing a capability not in ``capabilities``."""
    body = validate_body(message.type, message.body, decoding=False, capabilities=capabilities)
    _check_str("sender", message.sender)
    _check_int("seq", message.seq)
    _check_float("ts", message.ts)
    if message.re is not None:
        _check_int("re", message.re)
    spec = SCHEMAS[message.type]
    wire_body = {
        k: _to_wire(k, spec.required.get(k) or spec.optional[k], v) for k, v in body.items()
    }
    data = msgpack.packb(
        {
            "v": message.version,
            "type": message.type,
            "seq": message.seq,
            "sender": message.sender,
            "ts": message.ts,
            "re": message.re,
            "body": wire_body,
        },
        use_bin_type=True,
    )
    if len(data) > max_bytes:
        raise ProtocolError("oversize", f"{message.type} is {len(data)} bytes > {max_bytes}")
    return data


def decode(
    data: bytes,
    *,
    sender_role: str | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
    capabilities: frozenset[str] = frozenset(),
) -> Message:
    """Parse and validate one message (not yet checked for replay: see :class:`ReplayGuard`).

    Args:
        data: the raw frame.
        sender_role: the role of the peer it came from ("orchestrator" or "node"), to
            reject message types that role may not send; None skips the check.
        max_bytes: size limit.
        capabilities: the link capabilities granted (see :func:`validate_body`).
    """
    if len(data) > max_bytes:
        raise ProtocolError("oversize", f"{len(data)} bytes > {max_bytes}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=MAX_LIST,
            max_map_len=MAX_LIST,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types on garbage input
        raise ProtocolError("decode", f"not a msgpack message ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("decode", f"message must be a map, got {type(obj).__name__}")
    if obj.get("v") != PROTOCOL_VERSION:
        raise ProtocolError("version", f"protocol version {obj.get('v')!r} != {PROTOCOL_VERSION}")
    if set(obj) != _ENVELOPE_KEYS:
        raise ProtocolError("envelope", f"envelope keys must be {sorted(_ENVELOPE_KEYS)}")
    try:
        seq = _check_int("seq", obj["seq"])
        sender = _check_str("sender", obj["sender"])
        ts = _check_float("ts", obj["ts"])
        re = None if obj["re"] is None else _check_int("re", obj["re"])
    except ProtocolError as exc:
        raise ProtocolError("envelope", exc.detail) from None
    if not isinstance(obj["type"], str):
        raise ProtocolError("envelope", "type must be a string")
    body = validate_body(
        obj["type"],
        obj["body"],
        sender_role=sender_role,
        decoding=True,
        capabilities=capabilities,
    )
    return Message(type=obj["type"], body=body, seq=seq, sender=sender, ts=ts, re=re)


def parse(message: Message) -> Any:
    """The declared record (:data:`MESSAGES`) of a decoded, validated ``message``."""
    return MESSAGES[message.type](**message.body)


class SequenceCounter:
    """Thread-safe, strictly increasing sequence numbers starting at the clock in µs."""

    def __init__(self, start: int | None = None) -> None:
        self._next = time.time_ns() // 1000 if start is None else int(start)
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            value = self._next
            self._next += 1
            return value


class ReplayGuard:
    """Per-sender replay protection: a sliding window of sequence numbers and a time window.

    Sequence numbers are drawn when a message is encoded, but frames from different
    threads of one sender (an application reply, an I/O-thread heartbeat) may reach the
    wire in another order. So, as in IPsec's anti-replay window (RFC 4303), a sequence
    number is accepted once if it is above the highest seen, or within
    ``reorder_window`` below it and not seen before; anything seen before, or older than
    the window, is a replay.

    Args:
        window_s: accepted |receiver clock - message ts|, seconds.
        clock: time source (seconds since the epoch).
        reorder_window: how far below the highest sequence number a first arrival may be.
    """

    def __init__(
        self,
        window_s: float = DEFAULT_REPLAY_WINDOW_S,
        clock: Callable[[], float] = time.time,
        reorder_window: int = 64,
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if reorder_window < 1:
            raise ValueError(f"reorder_window must be >= 1, got {reorder_window}")
        self.window_s = float(window_s)
        self.reorder_window = int(reorder_window)
        self._clock = clock
        self._highest: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {}

    def check(self, message: Message) -> None:
        """Accept ``message`` (and remember its seq) or raise ProtocolError replay/stale."""
        now = self._clock()
        if abs(now - message.ts) > self.window_s:
            raise ProtocolError(
                "stale", f"timestamp {message.ts:.3f} is {now - message.ts:+.1f} s off"
            )
        sender, seq = message.sender, message.seq
        highest = self._highest.get(sender)
        seen = self._seen.setdefault(sender, set())
        if highest is not None and (seq <= highest - self.reorder_window or seq in seen):
            raise ProtocolError(
                "replay",
                f"seq {seq} from {sender!r} seen before or older than the window below {highest}",
            )
        seen.add(seq)
        if highest is None or seq > highest:
            self._highest[sender] = seq
            floor = seq - self.reorder_window
            if len(seen) > 2 * self.reorder_window:
                self._seen[sender] = {s for s in seen if s > floor}

    def forget(self, sender: str) -> None:
        """Drop the state of ``sender``."""
        self._highest.pop(sender, None)
        self._seen.pop(sender, None)
