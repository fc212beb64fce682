"""The orchestrator's round engine: grouping, closed-loop OTA slots, training, evaluation.

One round (see the design guide's data flow):

1. the air is prepared (:meth:`RunRadios.start_round`) and every node re-seeds its batch
   order and configures its radios (``start_round``);
2. the alive users are grouped by the configured policy (label-aware max-clique,
   random or orthogonal) from the label counts the nodes reported when they joined;
3. per group, channel acquisition: each member plays its cyclic pilot in turn while the
   receiver captures (:class:`radio.ota_session.OtaReceiver`);
4. ``steps`` slots per group: mixing weights from the mixing policy, closed-form power
   control and corrections (:meth:`OtaReceiver.plan`), every member encodes its next batch
   and plays its pre-compensated frame (``transmit``), the receiver captures and estimates
   the mixup, the server trains on (mixed payload, mixed label); in feature mode the
   gradient goes back to the group once (``gradient``);
5. evaluation, metrics line, node and orchestrator checkpoints.

A node that dies (heartbeat silence or a failed request) is dropped; the slot in flight
is abandoned and the remaining users are regrouped; the run goes on. A slot whose frame
the receiver does not find is counted (``missed_slots``) and not trained on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from learning.mixup import make_policy
from learning.training import Server, evaluate
from orchestrator import experiment as ex
from orchestrator.config import ExperimentConfig
from orchestrator.grouping import get_grouping_policy
from orchestrator.link import LinkError, OrchestratorLink, RemoteError
from orchestrator.radios import RunRadios, radio_config
from orchestrator.rundir import RunDirectory
from phy.waveform import frame_length
from radio.ota_session import OtaReceiver, SlotPlan

log = logging.getLogger(__name__)


class NodeLost(RuntimeError):
    """A node died while the engine needed it; its users have been dropped."""


@dataclass
class Observation:
    """What the server saw in one slot (kept for the attacks)."""

    round_id: int
    slot_id: int
    user_ids: list[str]
    weights: np.ndarray
    payload: np.ndarray  # (B, D) estimated mixed payload
    label: np.ndarray  # (B, C) estimated mixed soft label


@dataclass
class EavesdropperCapture:
    """What the eavesdropper's radio recorded during one slot (for the attacks): the
    samples over the receiver's capture window of the slot, complex64 ``(n,)``."""

    round_id: int
    slot_id: int
    user_ids: list[str]
    weights: np.ndarray
    samples: np.ndarray


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


class Engine:
    """Run the rounds of one experiment.

    Args:
        config: the resolved experiment.
        run: the run directory.
        link: the orchestrator's link, with every node already joined.
        radios: the run's radios.
        node_users: node id -> user ids it hosts.
        progress: callable receiving one line per round (None: silent).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        run: RunDirectory,
        link: OrchestratorLink,
        radios: RunRadios,
        node_users: dict[str, list[str]],
        progress: Callable[[str], None] | None = print,
    ) -> None:
        self.config = config
        self.run = run
        self.link = link
        self.radios = radios
        self.node_of = {u: n for n, users in node_users.items() for u in users}
        self.label_counts: dict[str, list[int]] = {}  # from the nodes' label reports
        self.progress = progress or (lambda _line: None)
        self.data = ex.load_experiment_data(config)
        self.ofdm = ex.ofdm_config(config)
        self.n_classes = self.data.train.n_classes
        self.dim = ex.payload_dim(config, self.data)
        self.model = ex.build_server_model(config, self.data)
        self.server = Server(self.model, lr=config.model.learning_rate)
        self.grouping = get_grouping_policy(
            config.users.grouping, group_size=config.users.group_size
        )
        self.mixing = make_policy(config.channel.mixing)
        sizes = [len(u) for u in self.data.split.users]
        self.batch = min(config.model.batch_size, min(sizes))
        self.steps = max(1, math.ceil(float(np.mean(sizes)) / self.batch))
        self.n_reals = self.batch * (self.dim + ex.label_dim(self.n_classes))
        self.frame_len = frame_length(self.n_reals, self.ofdm)
        self.alive = set(self.node_of)
        self.totals = {"channel_uses": 0, "pilot_channel_uses": 0, "slots": 0}
        self.observations: list[Observation] = []
        self.eavesdropped: list[EavesdropperCapture] = []  # empty without an eavesdropper
        self.eval_reports: dict[str, dict] = {}
        self.joined: set[str] = set()
        self._pending_stop: list[str] = []  # users whose frame plays until the next command
        self.pump_seconds = 0.0  # spent polling the link without waiting (see pump)

    # ------------------------------------------------------------- link helpers
    def pump(self, timeout_s: float = 0.0) -> None:
        """Handle pending link events: deaths, label and eval reports (acked). The time
        spent in non-blocking pumps counts as messaging (``pump_seconds``)."""
        started = time.perf_counter()
        blocking = timeout_s > 0
        self._pump(timeout_s)
        if not blocking:
            self.pump_seconds += time.perf_counter() - started

    def _pump(self, timeout_s: float) -> None:
        while (event := self.link.recv(timeout_s=timeout_s)) is not None:
            timeout_s = 0.0
            if event.kind == "dead":
                self._drop_node(event.peer)
            elif event.kind == "joined":
                self.joined.add(event.peer)
            elif event.kind == "message":
                message = event.message
                if message.type == "eval_report":
                    self.eval_reports[message.sender] = message.body
                elif message.type == "label_report":
                    self.label_counts.update(message.body["counts"])
                self.link.reply(message, "ack")

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

    def _drop_node(self, node_id: str) -> None:
        lost = [u for u, n in self.node_of.items() if n == node_id and u in self.alive]
        if lost:
            log.warning("node %s is dead: dropping users %s", node_id, lost)
            self.progress(f"node {node_id} lost: users {', '.join(lost)} dropped")
            self.alive -= set(lost)
            self.radios.silence(lost)  # its cyclic frame must not play into later slots

    def _request(self, node_id: str, msg_type: str, body: dict[str, Any]) -> None:
        self._request_many([(node_id, msg_type, body)])

    def _request_many(self, requests: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Send requests to *different* nodes at once and wait for every reply (one round
        trip instead of one per node). A lost node (PeerDead, LinkTimeout) is dropped and
        NodeLost raised after all requests finished, so the others are never left half
        done; an ``error`` reply (the node is alive but refused: a bug or bad input)
        raises RemoteError."""
        results = self.link.request_many(requests)
        refused: RemoteError | None = None
        lost: NodeLost | None = None
        for (node_id, _, _), result in zip(requests, results, strict=True):
            if isinstance(result, RemoteError):
                refused = refused or result
            elif isinstance(result, LinkError):
                self._drop_node(node_id)
                lost = lost or NodeLost(f"{node_id}: {result}")
        if refused is not None:
            raise refused
        if lost is not None:
            raise lost

    def _per_node(self, user_ids: list[str]) -> dict[str, list[int]]:
        """node id -> positions in ``user_ids`` of the users it hosts."""
        out: dict[str, list[int]] = {}
        for position, user_id in enumerate(user_ids):
            out.setdefault(self.node_of[user_id], []).append(position)
        return out

    def _stop(self, user_ids: list[str]) -> None:
        """Stop the listed users of every alive node (all of them even if one node is
        lost on the way; then NodeLost is raised at the end)."""
        alive_nodes = {self.node_of[u] for u in self.alive}
        self._request_many(
            [
                (node_id, "stop_transmit", {"user_ids": [user_ids[p] for p in positions]})
                for node_id, positions in self._per_node(user_ids).items()
                if node_id in alive_nodes
            ]
        )

    def _with_stops(self, requests: list[tuple[str, str, dict]]) -> list[tuple[str, str, dict]]:
        """Piggyback the pending stops on ``requests`` (one per node); nodes with pending
        stops but no request get a ``stop_transmit`` of their own. Stopping there instead
        of right after the capture is equivalent: the receiver reads nothing in between."""
        pending = [u for u in self._pending_stop if u in self.alive]
        self._pending_stop = []
        by_node = {node_id: i for i, (node_id, _, _) in enumerate(requests)}
        out = list(requests)
        for node_id, positions in self._per_node(pending).items():
            users = [pending[p] for p in positions]
            if node_id in by_node:
                i = by_node[node_id]
                out[i] = (node_id, out[i][1], {**out[i][2], "stop_user_ids": users})
            else:
                out.append((node_id, "stop_transmit", {"user_ids": users}))
        return out

    def flush_stops(self) -> None:
        """Stop every user still playing (end of a round, or after a failure)."""
        pending = [u for u in self._pending_stop if u in self.alive]
        self._pending_stop = []
        if pending:
            self._stop(pending)

    # ------------------------------------------------------------------ rounds
    def _groups(self, round_id: int) -> list[list[str]]:
        return self.grouping.group(
            sorted(self.alive),
            label_histograms=self.label_counts,
            rng=ex.rng_for(self.config, "grouping", round_id),
        )

    def _acquire(self, receiver: OtaReceiver, round_id: int, slot_id: int, group: list[str]):
        def start(k: int) -> None:
            body = {
                "round_id": round_id,
                "slot_id": slot_id,
                "user_ids": [group[k]],
                "pilot_ids": [k],
                "group_size": len(group),
            }
            self._request_many(self._with_stops([(self.node_of[group[k]], "send_pilots", body)]))

        def stop(k: int) -> None:
            self._pending_stop.append(group[k])

        estimates = receiver.acquire(len(group), start, stop)
        return estimates

    def _transmit(
        self, plan: SlotPlan, weights: np.ndarray, round_id: int, slot_id: int, group: list[str]
    ) -> None:
        """Every member of ``group`` plays its pre-compensated frame for ``plan``."""
        requests = []
        for node_id, positions in self._per_node(group).items():
            orders = [plan.order(p) for p in positions]
            body = {
                "round_id": round_id,
                "slot_id": slot_id,
                "user_ids": [group[p] for p in positions],
                "tx_scale": np.array([o.tx_scaling for o in orders], dtype=np.complex128),
                "weights": weights[positions],
                "delay_samples": np.array([o.delay_samples for o in orders]),
                "sro": np.array([o.sro for o in orders]),
                "cfo_hz": np.array([o.cfo_hz for o in orders]),
                "target_delay": int(plan.target_delay),
                "buffer_len": int(plan.buffer_len),
                "batch_size": self.batch,
            }
            requests.append((node_id, "transmit", body))
        self._request_many(self._with_stops(requests))

    def _slot(
        self,
        receiver: OtaReceiver,
        estimates: list,
        round_id: int,
        slot_id: int,
        group: list[str],
        stats: RoundStats,
        record: bool,
    ) -> None:
        rng = ex.rng_for(self.config, "mixing", round_id, slot_id)
        weights = np.asarray(self.mixing.draw(len(group), rng), dtype=float)
        power_rng = ex.rng_for(self.config, "power", round_id, slot_id)
        plan = receiver.plan(estimates, weights, self.n_reals, rng=power_rng)
        try:
            self._transmit(plan, weights, round_id, slot_id, group)
            try:
                estimate = receiver.receive(plan, self.n_reals)
            except ValueError as error:  # the frame was on the air but not found
                estimate = None
                log.warning("slot %d of round %d missed: %s", slot_id, round_id, error)
            if record:  # the same window of air, as the eavesdropper heard it
                self._eavesdrop(plan, weights, round_id, slot_id, group)
        finally:  # stopped with the next command (or flush_stops): no frame keeps playing
            self._pending_stop.extend(group)
        stats.slots += 1
        stats.payload_channel_uses += self.frame_len
        if estimate is None:  # nothing to train on; the run goes on
            stats.missed_slots += 1
            return
        payload, label = ex.split_payload(estimate, self.batch, self.dim, self.n_classes)
        loss, grad = self.server.server_step(payload, label)
        if self.config.model.mode == "features":
            effective = np.asarray(plan.effective_weights, dtype=float)
            grad32 = grad.numpy().astype(np.float32)
            requests = [
                (
                    node_id,
                    "gradient",
                    {
                        "round_id": round_id,
                        "slot_id": slot_id,
                        "user_ids": [group[p] for p in positions],
                        "weights": effective[positions],
                        "grad": grad32,
                    },
                )
                for node_id, positions in self._per_node(group).items()
            ]
            self._request_many(requests)
        stats.losses.append(loss)
        stats.predicted_mse.append(float(plan.predicted_mse))
        if record:
            self.observations.append(
                Observation(round_id, slot_id, list(group), weights, payload.numpy(), label.numpy())
            )

    def _eavesdrop(
        self, plan: SlotPlan, weights: np.ndarray, round_id: int, slot_id: int, group: list[str]
    ) -> None:
        """Keep what the eavesdropper (if the radios have one) heard during the slot."""
        samples = self.radios.eavesdrop(plan.buffer_len)
        if samples is not None:
            self.eavesdropped.append(
                EavesdropperCapture(round_id, slot_id, list(group), weights, samples)
            )

    def run_round(self, round_id: int) -> dict[str, Any]:
        """Run one round; returns its metrics record."""
        started = time.perf_counter()
        before = self.link.counters.snapshot()
        pumped = self.pump_seconds
        self.radios.start_round(round_id)
        rf = radio_config(self.config)
        body = {
            "round_id": round_id,
            "center_hz": rf.center_hz,
            "sample_rate_hz": rf.sample_rate_hz,
            "tx_attenuation_db": rf.tx_attenuation_db,
            "rx_gain_db": rf.rx_gain_db,
        }
        alive_nodes = sorted({self.node_of[u] for u in self.alive})
        with contextlib.suppress(NodeLost):
            self._request_many([(node_id, "start_round", body) for node_id in alive_nodes])
        receiver = OtaReceiver(
            self.radios.receiver,
            self.ofdm,
            policy=self.config.channel.power_control,
            carrier_hz=self.config.channel.carrier_hz,
        )
        stats = RoundStats()
        record = round_id == self.config.experiment.rounds - 1
        groups = self._groups(round_id)
        slot_id = 0
        estimates: dict[int, list] = {}
        step = 0
        while step < self.steps and self.alive:
            try:
                for index, group in enumerate(groups):
                    if index not in estimates:
                        clock = receiver.clock
                        estimates[index] = self._acquire(receiver, round_id, slot_id, group)
                        stats.pilot_channel_uses += receiver.clock - clock
                    self._slot(receiver, estimates[index], round_id, slot_id, group, stats, record)
                    slot_id += 1
                self.pump()
                step += 1
            except NodeLost:
                self.pump()
                with contextlib.suppress(NodeLost):
                    self.flush_stops()
                stats.regroupings += 1
                groups = self._groups(round_id)  # the remaining users, regrouped
                estimates.clear()
        with contextlib.suppress(NodeLost):
            self.flush_stops()
        accuracy = self.evaluate(round_id)
        after = self.link.counters.snapshot()
        self.totals["channel_uses"] += stats.payload_channel_uses
        self.totals["pilot_channel_uses"] += stats.pilot_channel_uses
        self.totals["slots"] += stats.slots
        mse = float(np.mean(stats.predicted_mse)) if stats.predicted_mse else float("nan")
        return {
            "round": round_id,
            "accuracy": accuracy,
            "loss": float(np.mean(stats.losses)) if stats.losses else float("nan"),
            "slots": stats.slots,
            "channel_uses": self.totals["channel_uses"],
            "pilot_channel_uses": self.totals["pilot_channel_uses"],
            "round_channel_uses": stats.payload_channel_uses,
            "predicted_mixup_mse_db": 10 * math.log10(mse) if mse > 0 else None,
            "groups": groups,
            "alive_users": len(self.alive),
            "regroupings": stats.regroupings,
            "missed_slots": stats.missed_slots,
            "round_pilot_channel_uses": stats.pilot_channel_uses,
            "digital_bytes": after["sent_bytes"] + after["received_bytes"],
            "round_digital_bytes": (after["sent_bytes"] - before["sent_bytes"])
            + (after["received_bytes"] - before["received_bytes"]),
            "digital_messages": after["sent_messages"] + after["received_messages"],
            "link_requests": after["requests"] - before["requests"],
            # time the engine waited on the digital link itself: blocked in requests minus
            # the nodes' handling of them, plus polling for events
            "messaging_seconds": (after["request_seconds"] - before["request_seconds"])
            - (after["served_seconds"] - before["served_seconds"])
            + (self.pump_seconds - pumped),
            "seconds": time.perf_counter() - started,
        }

    # -------------------------------------------------------------- evaluation
    def evaluate(self, round_id: int) -> float:
        """Test accuracy: the server's classifier (raw), or the mean over users of
        head(encoder_k) evaluated at the nodes (feature mode)."""
        if self.config.model.mode == "raw":
            return float(evaluate(self.model.classifier, self.data.test))
        head = torch.nn.utils.parameters_to_vector(self.model.parameters()).detach()
        self.eval_reports.clear()
        nodes = sorted({self.node_of[u] for u in self.alive})
        for node_id in nodes:
            users = sorted(u for u in self.alive if self.node_of[u] == node_id)
            body = {"round_id": round_id, "user_ids": users, "head": head.numpy()}
            with contextlib.suppress(NodeLost):
                self._request(node_id, "eval_request", body)
        deadline = time.monotonic() + self.config.link.request_timeout_s
        alive_nodes = {self.node_of[u] for u in self.alive}
        while not alive_nodes <= set(self.eval_reports) and time.monotonic() < deadline:
            self.pump(timeout_s=0.1)
            alive_nodes = {self.node_of[u] for u in self.alive}
        correct = sum(sum(r["correct"].values()) for r in self.eval_reports.values())
        count = sum(sum(r["count"].values()) for r in self.eval_reports.values())
        return correct / count if count else float("nan")

    # ------------------------------------------------------------- checkpoint
    def checkpoint(self, round_id: int) -> None:
        """Nodes save first (per round), then the orchestrator: a checkpoint names a
        round every party has saved."""
        nodes = sorted({self.node_of[u] for u in self.alive})
        with contextlib.suppress(NodeLost):
            self._request_many([(n, "checkpoint", {"round_id": round_id}) for n in nodes])
        self.run.save_checkpoint(
            {
                "round": round_id,
                "model": self.model.state_dict(),
                "optimizer": self.server.optimizer.state_dict(),
                "totals": dict(self.totals),
                "alive": sorted(self.alive),
                "observations": self.observations,
                "eavesdropped": self.eavesdropped,
            }
        )

    def restore(self, state: dict[str, Any]) -> int:
        """Load a checkpoint; returns the next round to run."""
        self.model.load_state_dict(state["model"])
        self.server.optimizer.load_state_dict(state["optimizer"])
        self.totals = dict(state["totals"])
        self.alive = set(state["alive"]) & set(self.node_of)
        self.observations = list(state["observations"])
        self.eavesdropped = list(state.get("eavesdropped", []))
        return int(state["round"]) + 1
