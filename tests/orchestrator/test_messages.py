"""Message schema: round trips, every validation failure, replay, size, privacy invariant."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest

from orchestrator import messages as m
from radio.ota_transmitter import SlotOrder


def example_bodies() -> dict[str, dict]:
    """One valid body per message type."""
    users = ["u0", "u1"]
    return {
        "hello": {"node_id": "node0", "user_ids": users, "radio": "sim://lab/u0"},
        "welcome": {"node_id": "node0", "heartbeat_s": 0.5, "liveness_s": 3},
        "heartbeat": {},
        "ack": {"note": "done"},
        "error": {"reason": "radio", "detail": "clipping"},
        "start_round": {
            "round_id": 3,
            "center_hz": 915e6,
            "sample_rate_hz": 1e6,
            "tx_attenuation_db": 10.0,
            "rx_buffer_size": 4096,
        },
        "send_pilots": {"round_id": 3, "slot_id": 1, "user_ids": users, "pilot_ids": [0, 1]},
        "stop_transmit": {"user_ids": users},
        "transmit": {
            "round_id": 3,
            "slot_id": 1,
            "user_ids": users,
            "weights": np.array([0.6, 0.4]),
            "orders": [
                SlotOrder(101.5, 1e-5, 120.0, 130, 0.7 + 0.1j, 4096),
                SlotOrder(98.25, -2e-5, -80.0, 130, 0.3j, 4096),
            ],
            "batch_size": 32,
        },
        "feedback": {
            "round_id": 3,
            "slot_id": 1,
            "user_ids": users,
            "weights": np.array([0.6, 0.4], dtype=np.float32),
            "arrays": {"grad": np.arange(24, dtype=np.float32).reshape(2, 3, 4)},
        },
        "eval_request": {
            "round_id": 3,
            "user_ids": users,
            "arrays": {"head": np.ones(5, np.float32)},
        },
        "eval_report": {
            "round_id": 3,
            "loss": {"u0": 0.5, "u1": 0.25},
            "correct": {"u0": 40, "u1": 45},
            "count": {"u0": 50, "u1": 50},
        },
        "label_report": {"round_id": 0, "counts": {"u0": [5, 0, 3], "u1": [0, 7, 0]}},
        "checkpoint": {"round_id": 3},
        "shutdown": {"reason": "done"},
        "uplink_request": {
            "round_id": 3,
            "slot_id": 1,
            "phase": "secagg/masked_input",
            "user_ids": users,
            "blobs": [{"u1": b"\x01" * 166}, {"u0": b"\x02" * 166}],
            "arrays": {"threshold": np.array([2], np.int64)},
        },
        "uplink_reply": {
            "user_ids": users,
            "blobs": [{}, {"keys": b"k" * 64}],
            "updates": np.arange(10, dtype=np.float32).reshape(2, 5),
        },
    }


#: the capability the model-update types need (a run of a method declaring it)
GRANTED = frozenset({m.MODEL_UPDATES})


def make(msg_type: str, body: dict, seq: int = 1, sender: str = "node0", **kw) -> m.Message:
    return m.Message(msg_type, body, seq, sender, time.time(), **kw)


def raw(body=None, **envelope) -> bytes:
    """A hand-made wire message (bypasses encode's validation)."""
    obj = {
        "v": m.PROTOCOL_VERSION,
        "type": "heartbeat",
        "seq": 1,
        "sender": "node0",
        "ts": time.time(),
        "re": None,
        "body": {} if body is None else body,
    }
    obj.update(envelope)
    return msgpack.packb(obj, use_bin_type=True)


def reason_of(data: bytes, **kw) -> str:
    with pytest.raises(m.ProtocolError) as info:
        m.decode(data, **kw)
    return info.value.reason


def test_every_type_has_an_example_and_round_trips():
    bodies = example_bodies()
    assert set(bodies) == set(m.SCHEMAS)
    for seq, (msg_type, body) in enumerate(bodies.items(), start=1):
        msg = make(msg_type, body, seq=seq, re=seq - 1 if msg_type == "ack" else None)
        out = m.decode(m.encode(msg, capabilities=GRANTED), capabilities=GRANTED)
        assert (out.type, out.seq, out.sender, out.re) == (msg.type, seq, "node0", msg.re)
        assert out.ts == pytest.approx(msg.ts)
        assert set(out.body) == set(body)
        for key, value in body.items():
            if isinstance(value, np.ndarray):
                assert out.body[key].dtype == value.dtype
                np.testing.assert_array_equal(out.body[key], value)
            elif key == "arrays":
                assert set(out.body[key]) == set(value)
                for name, array in value.items():
                    assert out.body[key][name].dtype == array.dtype
                    np.testing.assert_array_equal(out.body[key][name], array)
            else:
                assert out.body[key] == value


def test_declared_records_travel_as_columns_and_are_checked():
    """A slot's orders are SlotOrder instances on both ends (declared once, no field
    copied by hand); malformed columns are refused."""
    body = example_bodies()["transmit"]
    data = m.encode(make("transmit", body, sender="orchestrator"))
    wire = msgpack.unpackb(data)["body"]["orders"]
    assert set(wire) == {f for f in SlotOrder.__dataclass_fields__}
    assert wire["tx_scaling"]["dtype"] == "complex128" and wire["buffer_len"]["dtype"] == "int64"
    orders = m.decode(data).body["orders"]
    assert orders == body["orders"] and all(isinstance(o, SlotOrder) for o in orders)
    short = {**body, "orders": body["orders"][:1]}
    with pytest.raises(m.ProtocolError, match="orders must have 2 entries"):
        m.encode(make("transmit", short, sender="orchestrator"))
    obj = msgpack.unpackb(data)
    del obj["body"]["orders"]["cfo_hz"]
    assert reason_of(msgpack.packb(obj, use_bin_type=True)) == "bad_value"
    obj = msgpack.unpackb(data)
    obj["body"]["orders"]["target_delay"] = m.encode_array(np.array([1.5, 2.0]))
    assert reason_of(msgpack.packb(obj, use_bin_type=True)) == "bad_array"
    with pytest.raises(m.ProtocolError):
        m.encode(make("transmit", {**body, "orders": [{"cfo_hz": 1.0}] * 2}))


def test_decoded_arrays_are_read_only():
    body = example_bodies()["transmit"]
    out = m.decode(m.encode(make("transmit", body, sender="orchestrator")))
    with pytest.raises(ValueError):
        out.body["weights"][0] = 1.0


def test_envelope_failures():
    assert reason_of(b"\xc1\xff garbage") == "decode"
    assert reason_of(b"") == "decode"
    assert reason_of(msgpack.packb([1, 2, 3])) == "decode"
    assert reason_of(raw()[:-3]) == "decode"
    assert reason_of(raw(v=2)) == "version"
    assert reason_of(raw(seq="1")) == "envelope"
    assert reason_of(raw(seq=True)) == "envelope"
    assert reason_of(raw(sender=5)) == "envelope"
    assert reason_of(raw(ts=float("nan"))) == "envelope"
    assert reason_of(raw(re=1.5)) == "envelope"
    assert reason_of(raw(type=7)) == "envelope"
    assert reason_of(raw(extra=1)) == "envelope"
    obj = msgpack.unpackb(raw())
    del obj["ts"]
    assert reason_of(msgpack.packb(obj)) == "envelope"
    assert reason_of(raw(type="teleport")) == "unknown_type"
    assert reason_of(raw(body=[1])) == "bad_type"
    ext = msgpack.packb({**msgpack.unpackb(raw()), "v": msgpack.ExtType(1, b"x")})
    assert reason_of(ext) == "decode"  # extension types are refused
    assert reason_of(b"\x91" * 5000 + b"\x01") == "decode"  # nesting beyond the stack limit


def test_direction_is_checked_by_sender_role():
    data = m.encode(make("transmit", example_bodies()["transmit"], sender="orchestrator"))
    assert m.decode(data, sender_role="orchestrator").type == "transmit"
    assert reason_of(data, sender_role="node") == "direction"
    hello = m.encode(make("hello", example_bodies()["hello"]))
    assert reason_of(hello, sender_role="orchestrator") == "direction"
    with pytest.raises(ValueError):
        m.decode(hello, sender_role="eavesdropper")


@pytest.mark.parametrize(
    ("msg_type", "body", "reason"),
    [
        ("hello", {"node_id": "n"}, "missing_field"),
        ("hello", {"node_id": "n", "user_ids": [], "payload": 1}, "unknown_field"),
        ("hello", {"node_id": 3, "user_ids": []}, "bad_type"),
        ("hello", {"node_id": "n", "user_ids": "u0"}, "bad_type"),
        ("hello", {"node_id": "n", "user_ids": [1]}, "bad_type"),
        ("hello", {"node_id": "n" * (m.MAX_STR + 1), "user_ids": []}, "bad_value"),
        ("hello", {"node_id": "n", "user_ids": ["a", "a"]}, "bad_value"),
        ("hello", {"node_id": "n", "user_ids": ["u"] * (m.MAX_LIST + 1)}, "decode"),
        ("welcome", {"node_id": "n", "heartbeat_s": "1", "liveness_s": 3.0}, "bad_type"),
        ("welcome", {"node_id": "n", "heartbeat_s": True, "liveness_s": 3.0}, "bad_type"),
        ("welcome", {"node_id": "n", "heartbeat_s": float("inf"), "liveness_s": 3}, "bad_value"),
        (
            "send_pilots",
            {"round_id": 1.0, "slot_id": 0, "user_ids": [], "pilot_ids": []},
            "bad_type",
        ),
        (
            "send_pilots",
            {"round_id": 2**63, "slot_id": 0, "user_ids": [], "pilot_ids": []},
            "bad_value",
        ),
        (
            "send_pilots",
            {"round_id": 1, "slot_id": 0, "user_ids": ["a"], "pilot_ids": []},
            "bad_value",
        ),
        ("eval_report", {"round_id": 1, "loss": [], "correct": {}, "count": {}}, "bad_type"),
        (
            "eval_report",
            {"round_id": 1, "loss": {}, "correct": {"a": 5}, "count": {"a": 4}},
            "bad_value",
        ),
        (
            "eval_report",
            {"round_id": 1, "loss": {"b": 1.0}, "correct": {}, "count": {"a": 4}},
            "bad_value",
        ),
        (
            "eval_report",
            {"round_id": 1, "loss": {"a": [1.0]}, "correct": {}, "count": {}},
            "bad_type",
        ),
        ("label_report", {"round_id": 1, "counts": {"a": [1, -1]}}, "bad_value"),
        ("label_report", {"round_id": 1, "counts": {"a": [1] * (m.MAX_CLASSES + 1)}}, "bad_value"),
        ("label_report", {"round_id": 1, "counts": {"a": [0.5]}}, "bad_type"),
    ],
)
def test_body_validation_failures(msg_type, body, reason):
    assert reason_of(raw(type=msg_type, body=body)) == reason


def test_a_probe_train_lists_a_user_once_per_probe_other_requests_refuse_repeats():
    train = {"round_id": 1, "slot_id": 0, "user_ids": ["a", "b", "a", "b"], "pilot_ids": [0, 1] * 2}
    assert m.decode(raw(type="send_pilots", body=train)).body["user_ids"] == train["user_ids"]
    stop = {"user_ids": ["a", "a"]}
    assert reason_of(raw(type="stop_transmit", body=stop)) == "bad_value"


def _array(**over):
    arr = {"dtype": "float64", "shape": [2], "data": np.zeros(2).tobytes()}
    arr.update(over)
    return arr


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (_array(dtype="object"), "bad_array"),
        (_array(dtype="uint16", data=b"\0" * 4), "bad_array"),
        (_array(dtype=5), "bad_array"),
        (_array(shape=[3]), "bad_array"),
        (_array(shape=[-2]), "bad_array"),
        (_array(shape=[2, 1, 1, 1, 1]), "bad_array"),
        (_array(shape=[2**20, 2]), "bad_array"),
        (_array(shape="2"), "bad_array"),
        (_array(data="zeros"), "bad_array"),
        ({"dtype": "float64", "shape": [2]}, "bad_array"),
        ([0.0, 0.0], "bad_array"),
        (_array(data=np.array([1.0, np.nan]).tobytes()), "bad_value"),
        (_array(shape=[1], data=np.zeros(1).tobytes()), "bad_value"),  # length != users
    ],
)
def test_array_validation_failures(array, reason):
    body = {
        "round_id": 1,
        "slot_id": 0,
        "user_ids": ["a", "b"],
        "arrays": {"grad": _array(dtype="complex128", data=np.zeros(2, complex).tobytes())},
        "weights": array,
    }
    assert reason_of(raw(type="feedback", body=body, sender="orchestrator")) == reason


def test_encode_validates_like_decode():
    with pytest.raises(m.ProtocolError) as info:
        m.encode(make("transmit", {**example_bodies()["transmit"], "weights": [0.5, 0.5]}))
    assert info.value.reason == "bad_type"
    with pytest.raises(m.ProtocolError) as info:
        m.encode(
            make(
                "feedback", {**example_bodies()["feedback"], "arrays": {"g": np.zeros(3, np.int8)}}
            )
        )
    assert info.value.reason == "bad_array"
    with pytest.raises(m.ProtocolError) as info:
        m.encode(make("heartbeat", {}, seq=1.5))
    assert info.value.reason == "bad_type"


def test_size_limit_on_encode_and_decode():
    body = {**example_bodies()["feedback"], "arrays": {"grad": np.zeros(1000, np.float64)}}
    msg = make("feedback", body, sender="orchestrator")
    data = m.encode(msg)
    assert len(data) > 8000
    with pytest.raises(m.ProtocolError) as info:
        m.encode(msg, max_bytes=8000)
    assert info.value.reason == "oversize"
    assert reason_of(data, max_bytes=8000) == "oversize"
    assert m.decode(data, max_bytes=len(data)).type == "feedback"


def test_replay_guard_sequence_and_window():
    now = [1000.0]
    guard = m.ReplayGuard(window_s=5.0, clock=lambda: now[0])

    def msg(seq, sender="node0", ts=1000.0):
        return m.Message("heartbeat", {}, seq, sender, ts)

    guard.check(msg(100))
    guard.check(msg(101))
    guard.check(msg(3, sender="node1"))  # senders are independent
    guard.check(msg(99))  # first arrival overtaken by a newer frame: inside the window
    for seq in (101, 100, 99, 101 - guard.reorder_window):  # seen, or older than the window
        with pytest.raises(m.ProtocolError) as info:
            guard.check(msg(seq))
        assert info.value.reason == "replay"
    for ts in (1006.0, 994.0):
        with pytest.raises(m.ProtocolError) as info:
            guard.check(msg(150, ts=ts))
        assert info.value.reason == "stale"
    guard.check(msg(150, ts=1004.0))
    guard.forget("node0")
    guard.check(msg(1))  # a forgotten sender starts over
    with pytest.raises(ValueError):
        m.ReplayGuard(window_s=0)


def test_sequence_counter_is_increasing_and_starts_at_clock():
    before = time.time_ns() // 1000
    counter = m.SequenceCounter()
    values = [counter.next() for _ in range(100)]
    assert values[0] >= before and values == sorted(set(values))
    assert m.SequenceCounter(start=7).next() == 7


def test_privacy_invariant_no_node_type_carries_arrays():
    m.check_privacy_invariant()
    node_types = m.node_sendable_types()
    assert {"hello", "heartbeat", "ack", "error", "eval_report", "label_report"} <= set(node_types)
    for t in node_types:
        kinds = {**m.SCHEMAS[t].required, **m.SCHEMAS[t].optional}.values()
        assert m.ARRAY not in kinds and m.INT_LIST not in kinds
    leaky = {**m.SCHEMAS, "upload": m.MessageSpec("node", {"features": m.ARRAY})}
    with pytest.raises(m.ProtocolError) as info:
        m.check_privacy_invariant(leaky)
    assert info.value.reason == "privacy"
    # a node cannot smuggle an array into a node message: bytes/arrays are not scalars
    body = {"round_id": 1, "loss": {"u0": np.zeros(64)}, "correct": {}, "count": {}}
    with pytest.raises(m.ProtocolError):
        m.encode(make("eval_report", body))
    wire = {"round_id": 1, "loss": {"u0": _array()}, "correct": {}, "count": {}}
    assert reason_of(raw(type="eval_report", body=wire), sender_role="node") == "bad_type"


def test_model_updates_only_on_a_link_granted_the_capability():
    """The declared exception to the invariant: uplink_request / uplink_reply are refused
    (reason "privacy") on encode and decode unless the link grants model_updates (only a
    method declaring it: learning.methods.base.Method.link_capabilities), and under it a
    reply carries only 2-D float32/int64 finite update rows and short blobs."""
    bodies = example_bodies()
    for msg_type in ("uplink_request", "uplink_reply"):
        with pytest.raises(m.ProtocolError) as info:
            m.encode(make(msg_type, bodies[msg_type]))
        assert info.value.reason == "privacy"
        data = m.encode(make(msg_type, bodies[msg_type]), capabilities=GRANTED)
        assert reason_of(data) == "privacy"
        assert m.decode(data, capabilities=GRANTED).type == msg_type
    reply = bodies["uplink_reply"]
    bad = {
        "float64 rows": {**reply, "updates": np.zeros((2, 5))},
        "1-D rows": {**reply, "updates": np.zeros(10, np.float32)},
        "non-finite": {**reply, "updates": np.full((2, 5), np.inf, np.float32)},
        "rows per user": {**reply, "updates": np.zeros((3, 5), np.float32)},
        "long blob": {**reply, "blobs": [{}, {"keys": b"k" * (m.MAX_BLOB_BYTES + 1)}]},
        "blob not bytes": {**reply, "blobs": [{}, {"keys": "k" * 64}]},
        "blobs per user": {**reply, "blobs": [{}]},
        "stray field": {**reply, "features": np.zeros((2, 5), np.float32)},
    }
    for case, body in bad.items():
        with pytest.raises(m.ProtocolError):
            m.encode(make("uplink_reply", body), capabilities=GRANTED)
            pytest.fail(case)
    # every node-sendable type without a capability carries scalars only
    for t in m.node_sendable_types():
        spec = m.SCHEMAS[t]
        kinds = set({**spec.required, **spec.optional}.values())
        if spec.capability is None:
            assert kinds <= m._SCALAR_KINDS, t
    unknown = {**m.SCHEMAS, "x": m.MessageSpec("node", {"u": m.MODEL_UPDATE_ROWS}, capability="y")}
    with pytest.raises(ValueError, match="capability"):
        m.check_privacy_invariant(unknown)
    smuggle = {**m.SCHEMAS, "x": m.MessageSpec("node", {"u": m.MODEL_UPDATE_ROWS})}
    with pytest.raises(m.ProtocolError):
        m.check_privacy_invariant(smuggle)


def test_protocol_error_reason_must_be_known():
    with pytest.raises(ValueError):
        m.ProtocolError("whatever", "x")
    err = m.ProtocolError("replay", "seq 3")
    assert err.reason == "replay" and "seq 3" in str(err)


def test_declared_records_are_the_schema_and_round_trip():
    """Each message type is one dataclass: its schema is derived from the annotations,
    a record encodes like its body map, and a decoded message parses back to the record."""
    for msg_type, body in example_bodies().items():
        cls = m.MESSAGES[msg_type]
        spec = m.SCHEMAS[msg_type]
        assert cls.TYPE == msg_type and cls.SPEC is spec
        assert set(spec.required) | set(spec.optional) == set(cls.__dataclass_fields__)
        decoded = m.decode(
            m.encode(make(msg_type, body), capabilities=GRANTED), capabilities=GRANTED
        )
        record = m.parse(decoded)
        assert isinstance(record, cls)
        again = m.decode(
            m.encode(make(msg_type, record), capabilities=GRANTED), capabilities=GRANTED
        )
        assert again.body.keys() == decoded.body.keys()
        assert set(m.body_of(record)) == set(body)
    assert m.SCHEMAS["transmit"].required["orders"] == m.Records(SlotOrder)
    assert m.SCHEMAS["eval_report"].required["loss"] == m.USER_FLOATS
    assert m.SCHEMAS["hello"].optional == {"radio": m.STR}


def test_start_round_carries_radio_settings_both_ways():
    from radio.base import RadioConfig

    rf = RadioConfig(center_hz=2.4e9, sample_rate_hz=2e6, tx_attenuation_db=3.0, rx_gain_db=7.0)
    start = m.StartRound.of(4, rf)
    out = m.parse(m.decode(m.encode(make("start_round", start, sender="orchestrator"))))
    assert out == start and out.radio_config() == rf
    bare = m.StartRound(1, 915e6, 1e6, 10.0)  # absent settings: RadioConfig's defaults
    assert bare.radio_config() == RadioConfig(915e6, 1e6, tx_attenuation_db=10.0)
    assert "rx_gain_db" not in m.body_of(bare)


def test_declaration_refuses_undeclarable_fields():
    with pytest.raises(TypeError, match="no field kind"):

        @m.message("probe_a", "orchestrator")
        class _ProbeA:
            value: set[int]

    with pytest.raises(TypeError, match="default to None"):

        @m.message("probe_b", "orchestrator")
        class _ProbeB:
            value: int | None

    assert "probe_a" not in m.MESSAGES and "probe_b" not in m.MESSAGES


def test_a_declared_node_message_with_features_breaks_the_invariant():
    spec = m.MessageSpec("node", {"features": m._kind_of("upload", "features", np.ndarray)[0]})
    with pytest.raises(m.ProtocolError) as info:
        m.check_privacy_invariant({**m.SCHEMAS, "upload": spec})
    assert info.value.reason == "privacy"


def test_a_planned_transmit_lists_a_user_once_per_slot_with_slot_ids():
    one = example_bodies()["transmit"]
    order = one["orders"][0]
    planned = {**one, "user_ids": ["a", "b", "a"], "slot_ids": [4, 4, 5],
               "weights": np.array([0.5, 0.5, 1.0]), "orders": [order] * 3}  # fmt: skip
    body = m.decode(m.encode(make("transmit", planned))).body
    assert body["user_ids"] == ["a", "b", "a"] and body["slot_ids"] == [4, 4, 5]
    for bad in (
        {**planned, "slot_ids": [4, 4, 4]},  # a user twice in one slot
        {**planned, "slot_ids": [4, 5]},  # not one slot per entry
        {key: value for key, value in planned.items() if key != "slot_ids"},  # repeats
    ):
        with pytest.raises(m.ProtocolError) as info:
            m.encode(make("transmit", bad))
        assert info.value.reason == "bad_value"
