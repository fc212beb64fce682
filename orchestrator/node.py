"""A node process: hosts one or more users, each with its private data and its radio.

The node derives its users' data from the experiment config (see
:mod:`orchestrator.experiment`), joins the orchestrator over the ZeroMQ link and serves
its requests:

* ``start_round``: start every user's round (its method user re-seeds its batch
  order), (re)configure radios;
* ``send_pilots`` / ``stop_transmit``: play or stop a user's cyclic acquisition pilot;
* ``transmit``: the user's method user makes its next payload
  (:meth:`learning.methods.base.MethodUser.payload`) and its
  :class:`radio.ota_transmitter.OtaTransmitter` plays it as the slot's
  :class:`~radio.ota_transmitter.SlotOrder` says. Payloads leave the node *only* as
  analog waveforms;
* ``feedback``: the method users apply the server's feedback (e.g. back-propagate
  ``weight_k * dL/dy`` through the encoder);
* ``uplink_request`` (only when the run's method declares the model-update uplink,
  :meth:`learning.methods.base.Method.link_capabilities`): each listed user answers one
  phase of the method's digital exchange (:meth:`MethodUser.upload`: its model update,
  or secure aggregation's keys, shares and masked update) in an ``uplink_reply``;
* ``eval_request``: the method users evaluate locally and the node reports scalars;
  ``checkpoint``: save the method users' plain state; ``shutdown``: exit.

Every reply is an ``ack`` or an ``error`` with a reason (or the ``uplink_reply``);
nothing a node sends carries an array, except the model updates of a method declaring
them (the schema in :mod:`orchestrator.messages` enforces both). For attack scoring
only, each node appends the dataset indices of every batch it sent to its *local*
audit file in the run directory (never over the link).

Run as ``python -m orchestrator.node --run-dir DIR --node-id ID --address ADDR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from learning.methods.base import Feedback, MethodUser, UplinkRequest
from orchestrator import experiment as ex
from orchestrator import messages as m
from orchestrator.config import ExperimentConfig, load_experiment
from orchestrator.lifeline import watch_parent
from orchestrator.link import LinkConfig, LinkError, NodeLink
from orchestrator.messages import Message
from orchestrator.mixup_error import MixupLog
from orchestrator.rundir import CONFIG_FILE, atomic_write, atomic_write_bytes
from phy.ota import ClippingError
from radio import Radio, open_radio
from radio.ota_transmitter import OtaTransmitter

log = logging.getLogger(__name__)


@dataclass
class HostedUser:
    """One user on this node: index, the method's user half (data, local model), radio
    and the closed loop's user half on it."""

    user_id: str
    index: int
    learner: MethodUser
    radio: Radio
    transmitter: OtaTransmitter
    last_batch: np.ndarray | None = None  # dataset indices of the batch on the air


class Node:
    """Serve the orchestrator's requests for the users ``user_ids``.

    Args:
        config: the resolved experiment.
        node_id: this node's id (its key name with CurveZMQ).
        user_ids: users hosted here.
        radio_uris: user id -> radio URI (``simnet://...`` or ``ip:...``).
        run_dir: the run directory (checkpoints, audit file).
        restore_round: resume from this node's checkpoint of that round.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        node_id: str,
        user_ids: list[str],
        radio_uris: dict[str, str],
        run_dir: Path,
        restore_round: int | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.run_dir = Path(run_dir)
        self.data = ex.load_experiment_data(config)
        self.method = ex.build_method(config, self.data)
        self.ofdm = ex.ofdm_config(config)
        all_ids = ex.user_ids(config)
        self.users: dict[str, HostedUser] = {}
        for user_id in user_ids:
            index = all_ids.index(user_id)
            learner = self.method.make_user(index)
            radio = open_radio(radio_uris[user_id])
            transmitter = OtaTransmitter(radio, self.ofdm, index)
            self.users[user_id] = HostedUser(user_id, index, learner, radio, transmitter)
        #: message type -> seconds spent serving it / requests served (see write_timing)
        self.link_counters: dict = {}  # the link's counters when it closed (write_timing)
        self.audit_path = self.run_dir / "audit" / f"{node_id}.jsonl"
        self.audit_path.parent.mkdir(parents=True, exist_ok=True)
        self.payload_log = MixupLog.node(self.run_dir, node_id)  # ground truth, never sent
        if restore_round is not None:
            self._restore(restore_round)

    # ------------------------------------------------------------------ state
    def checkpoint_path(self, round_id: int) -> Path:
        """Per-round file: a checkpoint the orchestrator has not confirmed yet never
        replaces the one it resumes from."""
        return self.run_dir / "nodes" / f"{self.node_id}-r{round_id}.pt"

    def _restore(self, round_id: int) -> None:
        """Load the method users' state saved at the end of ``round_id``."""
        path = self.checkpoint_path(round_id)
        if not path.exists():
            raise FileNotFoundError(f"{self.node_id}: no checkpoint for round {round_id} ({path})")
        state = torch.load(path, weights_only=True)
        for user_id, user in self.users.items():
            user.learner.load_state_dict(state["users"][user_id])

    def _checkpoint(self, request: m.Checkpoint) -> None:
        """Save the users' state as of the end of the requested round."""
        round_id = request.round_id
        state = {
            "round": round_id,
            "users": {u: user.learner.state_dict() for u, user in self.users.items()},
        }
        # straight to the file: thousands of users' state is not copied in memory twice
        atomic_write(self.checkpoint_path(round_id), lambda handle: torch.save(state, handle))
        self.checkpoint_path(round_id - 2).unlink(missing_ok=True)  # keep the last two

    # --------------------------------------------------------------- handlers
    def _start_round(self, start: m.StartRound) -> None:
        radio_config = start.radio_config()
        for user in self.users.values():
            user.learner.start_round(
                ex.named_seed(self.config, "batches", start.round_id, user.index)
            )
            user.radio.configure(radio_config)

    def _stop_transmit(self, stop: m.StopTransmit) -> None:
        for user_id in stop.user_ids:
            self._user(user_id).transmitter.stop()

    def _send_pilots(self, pilots: m.SendPilots) -> None:
        group_size = pilots.group_size or max(pilots.pilot_ids) + 1
        orders = pilots.orders or [None] * len(pilots.user_ids)
        for user_id, pilot_id, order in zip(pilots.user_ids, pilots.pilot_ids, orders, strict=True):
            self._user(user_id).transmitter.play_pilot(pilot_id, group_size, order)

    def _transmit(self, order: m.Transmit) -> dict | None:
        """Each listed user puts its method's next payload on the air as ordered. A frame
        that would clip the DAC is not sent: the reply names its user and slot
        (``clipped``) and the orchestrator counts the slot missed."""
        slot_ids = order.slot_ids or [order.slot_id] * len(order.user_ids)
        clipped: dict[str, int] = {}
        for k, (user_id, slot_id) in enumerate(zip(order.user_ids, slot_ids, strict=True)):
            user = self._user(user_id)
            payload = user.learner.payload(order.batch_size)
            try:
                user.transmitter.play_payload(payload.vector, order.orders[k])
            except ClippingError as error:
                if user_id in clipped:  # one slot per user can be reported per request
                    raise
                log.warning("%s: slot %d: %s not sent: %s", self.node_id, slot_id, user_id, error)
                clipped[user_id] = slot_id
            user.last_batch = payload.indices
            self._audit(order.round_id, slot_id, user, payload.indices, float(order.weights[k]))
            self.payload_log.slot(order.round_id, slot_id, [user.user_id], payload.vector)
        return {"clipped": clipped} if clipped else None

    def _audit(
        self, round_id: int, slot_id: int, user: HostedUser, indices: np.ndarray, weight: float
    ) -> None:
        record = {
            "round": round_id,
            "slot": slot_id,
            "user": user.user_id,
            "weight": weight,
            "indices": [int(i) for i in indices],
        }
        with self.audit_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _uplink(self, request: m.UplinkRequestMessage) -> dict:
        """One phase of the method's digital uplink for each listed user (only on a link
        granted model_updates): the ``uplink_reply`` body of those that answered. The
        samples behind an update go to the local audit file, never over the link."""
        answered, rows, blobs = [], [], []
        for user_id, own in zip(request.user_ids, request.blobs, strict=True):
            user = self._user(user_id)
            upload = user.learner.upload(UplinkRequest(request.phase, request.arrays or {}, own))
            if upload is None:  # dropped out of the exchange
                continue
            answered.append(user_id)
            blobs.append(dict(upload.blobs))
            if upload.update is not None:
                rows.append(np.asarray(upload.update))
                self._audit(request.round_id, request.slot_id, user, upload.indices, 1.0)
        body: dict = {"user_ids": answered, "blobs": blobs}
        if rows:
            if len(rows) != len(answered):
                raise ValueError(f"phase {request.phase}: some users answered without an update")
            body["updates"] = np.stack(rows)
        return body

    def _feedback(self, sent: m.FeedbackMessage) -> None:
        feedback = Feedback(
            tuple(self._user(u).index for u in sent.user_ids), sent.weights, sent.arrays
        )
        for user_id, weight in zip(sent.user_ids, sent.weights, strict=True):
            self._user(user_id).learner.apply(feedback, float(weight))

    def _evaluate(self, request: m.EvalRequest) -> m.EvalReport:
        """Each listed user's evaluation by its method (scalars only)."""
        loss, correct, count = {}, {}, {}
        for user_id in request.user_ids:
            counts = self._user(user_id).learner.evaluate(request.arrays or {})
            loss[user_id], correct[user_id], count[user_id] = (
                counts.loss,
                counts.correct,
                counts.count,
            )
        return m.EvalReport(request.round_id, loss, correct, count)

    def _user(self, user_id: str) -> HostedUser:
        if user_id not in self.users:
            raise KeyError(f"user {user_id!r} is not hosted on {self.node_id}")
        return self.users[user_id]

    def handle(self, message: Message, link: NodeLink) -> bool:
        """Serve one request; returns False when the node should stop."""
        record = m.parse(message)
        try:
            for user_id in getattr(record, "stop_user_ids", None) or ():  # a past slot's stop
                self._user(user_id).transmitter.stop()
            acked = {  # requests served by one handler, then acknowledged
                "start_round": self._start_round,
                "send_pilots": self._send_pilots,
                "stop_transmit": self._stop_transmit,
                "transmit": self._transmit,
                "feedback": self._feedback,
                "checkpoint": self._checkpoint,
            }
            if message.type in acked:
                body = acked[message.type](record)
            elif message.type == "eval_request":
                link.reply(message, "ack")
                link.request("orchestrator", "eval_report", self._evaluate(record))
                return True
            elif message.type == "uplink_request":
                link.reply(message, "uplink_reply", self._uplink(record))
                return True
            elif message.type == "shutdown":
                link.reply(message, "ack")
                return False
            elif message.type == "heartbeat":
                return True
            else:
                link.reply(message, "error", {"reason": "unsupported", "detail": message.type})
                return True
        except Exception as error:  # reported to the orchestrator, the node keeps serving
            log.exception("%s failed on %s", self.node_id, message.type)
            detail = f"{type(error).__name__}: {error}"[:250]
            link.reply(message, "error", {"reason": "node_failure", "detail": detail})
            return True
        link.reply(message, "ack", body)
        return True

    def write_timing(self) -> None:
        """``logs/<node>.timing.json``: requests served and seconds spent serving them,
        per message type, frames the node's link rejected, by reason, and the process's
        peak resident memory (``max_rss_mb``, MiB: what its users cost, e.g. at scale)."""
        counters = self.link_counters
        timing = {
            "handler_seconds": counters.get("answer_seconds_by_type", {}),
            "handled": counters.get("answered_by_type", {}),
            "link_rejects": counters.get("rejects", {}),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "users": len(self.users),
        }
        path = self.run_dir / "logs" / f"{self.node_id}.timing.json"
        atomic_write_bytes(path, json.dumps(timing, sort_keys=True).encode())

    def close(self, timeout_s: float | None = None) -> None:
        """Close every user's radio. With ``timeout_s``, stop waiting after that long: when
        the orchestrator died, its radio service went with it and each ``simnet://``
        close would wait for its own request timeout (10 s per radio)."""
        if timeout_s is None:
            for user in self.users.values():
                user.radio.close()
            return
        closers = [
            threading.Thread(target=user.radio.close, name=f"close-{user.user_id}", daemon=True)
            for user in self.users.values()
        ]
        for closer in closers:
            closer.start()
        deadline = time.monotonic() + timeout_s
        for closer in closers:
            closer.join(max(0.0, deadline - time.monotonic()))


#: a node gives up joining after this long (hello resent every JOIN_HELLO_S)
JOIN_WINDOW_S = 30.0
JOIN_HELLO_S = 5.0


def radios_file(node_id: str) -> str:
    """Where, relative to the run directory, node ``node_id`` finds its users and their
    radio URIs (user lists never travel on a command line)."""
    return f"nodes/{node_id}.radios.json"


def read_radios(run_dir: str | Path, relative: str) -> dict[str, str]:
    """The JSON map user id -> radio URI at ``run_dir / relative``."""
    return json.loads((Path(run_dir) / relative).read_text())


def serve(node: Node, link: NodeLink, max_idle_s: float = 600.0) -> int:
    """Join (giving up after :data:`JOIN_WINDOW_S`), report label counts, then serve
    until shutdown or the orchestrator dies."""
    tries = int(JOIN_WINDOW_S // JOIN_HELLO_S)
    link.join(list(node.users), timeout_s=JOIN_HELLO_S, retries=tries - 1)
    counts = {
        user_id: np.bincount(
            user.learner.data.y.numpy(), minlength=node.method.context.n_classes
        ).tolist()
        for user_id, user in node.users.items()
    }
    link.request("orchestrator", "label_report", m.LabelReport(0, counts))
    idle = 0.0
    while idle < max_idle_s:
        event = link.recv(timeout_s=1.0)
        if event is None:
            idle += 1.0
            continue
        idle = 0.0
        if event.kind == "dead":
            log.warning("%s: orchestrator is gone, stopping", node.node_id)
            return 1
        if event.kind == "message":
            if not node.handle(event.message, link):
                return 0
    return 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run-dir", required=True, type=Path, help="holds config.toml (copy it to remote nodes)"
    )
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--address", required=True, help="the orchestrator's tcp:// address")
    parser.add_argument("--keys-dir", default=None, help="CurveZMQ keys (server + this node)")
    parser.add_argument(
        "--radios-file",
        required=True,
        help="JSON map user id -> radio URI, relative to --run-dir (see radios_file)",
    )
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process (the spawner) dies"
    )
    parser.add_argument("--restore-round", type=int, default=None)


def main(args: argparse.Namespace) -> int:
    """Serve as node ``args.node_id`` until shutdown (0) or the orchestrator is gone (1)."""
    logging.basicConfig(level=logging.WARNING, format=f"[{args.node_id}] %(message)s")
    if args.parent_pid is not None:
        watch_parent(args.parent_pid, args.node_id)
    torch.set_num_threads(1)
    config = load_experiment(args.run_dir / CONFIG_FILE)
    radio_uris = read_radios(args.run_dir, args.radios_file)
    node = Node(
        config, args.node_id, list(radio_uris), radio_uris, args.run_dir, args.restore_round
    )
    link_config = LinkConfig(
        heartbeat_s=config.link.heartbeat_s,
        liveness_s=config.link.liveness_s,
        request_timeout_s=config.link.request_timeout_s,
        retries=config.link.retries,
        capabilities=ex.link_capabilities(config),
    )
    code = 1
    try:
        with NodeLink(
            args.node_id, args.address, keys_dir=args.keys_dir, config=link_config
        ) as link:
            try:
                code = serve(node, link)
            except LinkError as error:  # one line, not a traceback: the orchestrator is gone
                log.warning("%s: %s; exiting", args.node_id, error)
                code = 1
            finally:
                node.link_counters = link.counters.snapshot()
            return code
    finally:
        try:
            node.write_timing()
        finally:
            node.close(timeout_s=None if code == 0 else 2.0)  # 1: the orchestrator is gone


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description="airmix node process")
    add_arguments(_parser)
    _code = main(_parser.parse_args())
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # everything is closed and written: skip the interpreter's teardown, whose garbage
    # collection of zmq and torch objects stalls a node for seconds after its shutdown
    os._exit(_code)
