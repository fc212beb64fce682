"""The orchestrator's round loop: a :class:`learning.methods.base.Method` over radios.

The engine runs the round of :mod:`learning.methods.base` with the server half of the
experiment's method here, its user halves in the node processes, and the air made of
the run's radios (:class:`radio.ota_session.OtaReceiver` here,
:class:`radio.ota_transmitter.OtaTransmitter` at the nodes). One round:

1. the air is prepared (:meth:`RunRadios.start_round`) and every node starts the round
   for its users and configures their radios (``start_round``);
2. the alive users are grouped by the configured policy (label-aware max-clique,
   random, ...) from the label counts the nodes reported when they joined;
3. ``steps`` times, per group, for each slot the method asks for
   (:meth:`Method.slots`): channel acquisition for the slot's users the first time in
   the round (each plays its cyclic pilot in turn while the receiver captures); mixing
   weights from the method; closed-form power control and corrections
   (:meth:`OtaReceiver.plan`); every user puts its payload on the air as its
   :class:`~radio.ota_transmitter.SlotOrder` says (``transmit``); the receiver captures
   and estimates the mixture. A method that declares the digital uplink
   (:meth:`Method.link_capabilities`) then gathers the group's model updates over the
   link (:class:`orchestrator.uplink.LinkExchange`; its bytes are the round's
   ``round_uplink_bytes``). Then the method's server step on what was received, and
   its feedback to the users (``feedback``);
4. evaluation (also on the channel-use grid ``experiment.eval_channel_uses``), metrics
   line (:mod:`orchestrator.metrics`), node and orchestrator checkpoints
   (:mod:`orchestrator.checkpoints`).

Node management (membership, requests, lost nodes, deferred stops) is
:class:`orchestrator.nodes.Nodes`. A node that dies is dropped; the slot in flight is
abandoned and the remaining users are regrouped; the run goes on. A slot whose frame
the receiver does not find is counted (``missed_slots``) and reaches the method as a
reception without an estimate.

Named seeds (shared with the in-process loop :func:`learning.methods.loop.run_method`):
``("grouping", round)``, ``("mixing", round, slot)``, ``("power", round, slot)``,
``("method", round, slot)``; the nodes draw ``("batches", round, user)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from learning.methods.base import EvalCounts, Feedback, Reception
from learning.methods.loop import pooled_accuracy
from orchestrator import experiment as ex
from orchestrator.checkpoints import EavesdropperCapture, Observation, from_state, to_state
from orchestrator.config import ExperimentConfig
from orchestrator.grouping import get_grouping_policy
from orchestrator.link import OrchestratorLink
from orchestrator.live.recorder import LiveRecorder, link_state, link_state_of
from orchestrator.messages import StartRound
from orchestrator.metrics import LinkWindow, RoundStats, Totals, round_record
from orchestrator.mixup_error import MixupLog
from orchestrator.nodes import NodeLost, Nodes
from orchestrator.radios import RunRadios, radio_config
from orchestrator.round_timing import RoundProgress, RoundTimer
from orchestrator.rundir import RunDirectory
from orchestrator.uplink import LinkExchange
from phy.medium import medium_seconds
from phy.ota import estimate_links, pilot_buffer
from phy.waveform import frame_length
from radio.base import stream_lead_of
from radio.ota_session import OtaReceiver, SlotPlan
from radio.ota_transmitter import MODE_SCHEDULED, SlotOrder
from radio.planned_air import (
    InProcesses,
    Mapper,
    PlannedAir,
    Window,
    WindowTask,
    mixup_estimate,
)
from radio.time_base import TimeBaseReceiver

__all__ = ["UPDATE_VIEWS_FILE", "Engine", "NodeLost"]

#: a planned step of at least this many slots prints a line before its waves
WAVE_LINES_FROM = 200

#: the model updates the server saw in the recorded round (the gradient-inversion audit's
#: input; a list of plain dicts, ``torch.load(weights_only=True)`` reads it)
UPDATE_VIEWS_FILE = "server_updates.pt"
#: update views kept from the recorded round (the first ones; the audit inverts a few)
UPDATE_VIEWS_KEPT = 8

log = logging.getLogger(__name__)


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
        self.progress = progress or (lambda _line: None)
        self.nodes = Nodes(link, node_users, radios.silence, self.progress)
        self.data = ex.load_experiment_data(config)
        self.method = ex.build_method(config, self.data)
        self.ofdm = ex.ofdm_config(config)
        self.ids = ex.user_ids(config)
        self.index_of = {u: i for i, u in enumerate(self.ids)}
        self.grouping = get_grouping_policy(
            config.users.grouping, group_size=config.users.group_size
        )
        self.batch = self.method.context.slot_batch
        self.steps = self.method.context.steps_per_round
        self.n_reals = self.method.payload_reals
        self.frame_len = frame_length(self.n_reals, self.ofdm) if self.n_reals else 0
        self._time_base: TimeBaseReceiver | None = None  # stream/tdd: lives over rounds
        self._time_base_state: dict | None = None  # its checkpoint, on resume
        self._round_id = 0
        self.estimate_log = MixupLog.receiver(run.path)  # scored after the run (mixup_error)
        self.totals = Totals()
        self.observations: list[Observation] = []
        self.eavesdropped: list[EavesdropperCapture] = []  # empty without an eavesdropper
        #: model updates the server saw in the recorded round (plain state, see update_views)
        self.update_views: list[dict[str, Any]] = []
        self.live = LiveRecorder(run.path)  # link state and last slot for the live view
        self.timer = RoundTimer(medium_seconds)  # the round's time split (round_timing)
        self.meter = RoundProgress(0, 0, self.progress)  # slots done, ETA
        self._last_slot: tuple | None = None
        #: channel.schedule = "planned": every group's pilots, then slots, in waves
        self.planned = config.channel.schedule == "planned"
        if self.planned and self.method.update_length:
            raise ValueError(
                "channel.schedule = 'planned' cannot play a method with a digital uplink "
                f"({config.method.name}: its groups exchange model updates in turn); use "
                "'sequential'"
            )
        self._held_feedback: list | None = None  # a planned step's feedback, sent at once
        self._air_workers: Any = None  # a planned round's air workers (processes or Ray)
        if self.planned:
            self._air_tasks()
        #: a planned slot's window: any plan's buffer (a start within one pilot period)
        pilot_period = pilot_buffer(0, 1, self.ofdm).size
        self._slot_window = pilot_period + 17 + self.frame_len + self.ofdm.n_fft

    def wait_for_nodes(self, timeout_s: float, is_running: Callable[[], bool]) -> None:
        """Block until every node joined and reported (see :meth:`Nodes.wait_for_nodes`)."""
        self.nodes.wait_for_nodes(timeout_s, is_running)

    # ------------------------------------------------------------------ rounds
    def _receiver(self) -> OtaReceiver | TimeBaseReceiver:
        """The round's receiver: the cyclic loop's (ideal time base, a new one per round)
        or the stream/tdd receiver (one for the run: acquisition once, tracking on)."""
        channel = self.config.channel
        if channel.time_base == "ideal":
            return OtaReceiver(
                self.radios.receiver,
                self.ofdm,
                policy=channel.power_control,
                carrier_hz=channel.carrier_hz,
            )
        if self._time_base is None or self._time_base.radio is not self.radios.receiver:
            self._time_base = TimeBaseReceiver(
                self.radios.receiver,
                self.ofdm,
                time_base=channel.time_base,
                send=self._send_pilot_orders,
                policy=channel.power_control,
                carrier_hz=channel.carrier_hz,
                sync_period_s=channel.sync_period_s if channel.time_base == "tdd" else None,
                # the users' radios live in the nodes: their back-ends' feeder lead
                user_lead=max(
                    stream_lead_of(self.radios.user_uri(u)) for u in ex.user_ids(self.config)
                ),
                state=self._time_base_state,  # resumed: counters go on, users re-acquired
            )
            self._time_base_state = None
        self._time_base.new_round()  # block fading redrawn: gains are tracked anew
        return self._time_base

    def _send_pilot_orders(self, items: list) -> None:
        """The time-base receiver's pilot orders ``(user id, pilot id, group size,
        order)`` to the users' nodes (``send_pilots`` with ``orders``)."""
        users = [uid for uid, _, _, _ in items]
        self.nodes.request_many(
            self.nodes.with_stops(
                self.nodes.to_users(
                    "send_pilots",
                    users,
                    lambda positions: {
                        "round_id": self._round_id,
                        "slot_id": 0,
                        "user_ids": [users[p] for p in positions],
                        "pilot_ids": [int(items[p][1]) for p in positions],
                        "group_size": int(items[positions[0]][2]),
                        "orders": [items[p][3] for p in positions],
                    },
                )
            )
        )

    def _groups(self, round_id: int) -> list[list[str]]:
        with self.timer.span("grouping"):
            return self.grouping.group(
                sorted(self.nodes.alive),
                label_histograms=self.nodes.label_counts,
                rng=ex.rng_for(self.config, "grouping", round_id),
            )

    def _planned_slots(self, groups: list[list[str]]) -> int:
        """Slots the round takes with ``groups`` (for its progress lines)."""
        if not self.n_reals:
            return 0
        per_step = sum(len(self.method.slots([self.index_of[u] for u in g])) for g in groups)
        return self.steps * per_step

    def _acquire(self, receiver: OtaReceiver, round_id: int, slot_id: int, users: list[str]):
        """Channel acquisition of ``users`` (pilot k for the k-th), one capture each."""
        nodes = self.nodes

        def start(k: int) -> None:
            body = {
                "round_id": round_id,
                "slot_id": slot_id,
                "user_ids": [users[k]],
                "pilot_ids": [k],
                "group_size": len(users),
            }
            nodes.request_many(nodes.with_stops([(nodes.node_of[users[k]], "send_pilots", body)]))

        return receiver.acquire(len(users), start, lambda k: nodes.stop_later([users[k]]))

    def _transmit(
        self, plan: SlotPlan, weights: np.ndarray, round_id: int, slot_id: int, users: list[str]
    ) -> dict[str, int]:
        """Every user of the slot plays its payload as ``plan`` orders; returns the users
        whose frame would have clipped and was not sent (user id -> slot id)."""
        requests = self.nodes.split_to_users(
            "transmit",
            users,
            {"round_id": round_id, "slot_id": slot_id, "batch_size": self.batch},
            {"weights": weights, "orders": [plan.order(k) for k in range(len(users))]},
        )
        return _clipped(self.nodes.request_many(self.nodes.with_stops(requests)))

    def _slot(
        self,
        receiver: OtaReceiver,
        estimates: list,
        round_id: int,
        slot_id: int,
        users: list[str],
        stats: RoundStats,
        record: bool,
    ) -> Reception:
        """One slot on the air; returns what the receiver got."""
        rng = ex.rng_for(self.config, "mixing", round_id, slot_id)
        weights = self.method.mixing_weights(len(users), rng)
        power_rng = ex.rng_for(self.config, "power", round_id, slot_id)
        plan = receiver.plan(estimates, weights, self.n_reals, rng=power_rng)
        try:
            started = time.perf_counter()
            clipped = self._transmit(plan, weights, round_id, slot_id, users)
            if isinstance(receiver, TimeBaseReceiver):  # on the wall clock the next
                receiver.observe_send(time.perf_counter() - started)  # plans allow for it
            try:
                estimate = receiver.receive(plan, self.n_reals)
            except ValueError as error:  # the frame was on the air but not found
                estimate = None
                log.warning("slot %d of round %d missed: %s", slot_id, round_id, error)
            if clipped:  # a user was silent: not the planned mixup
                estimate = None
                log.warning("slot %d of round %d missed: %s", slot_id, round_id, _why(clipped))
            if record:  # the same window of air, as the eavesdropper heard it
                self._eavesdrop(plan, weights, round_id, slot_id, users)
        finally:  # stopped with the next command (or flush_stops): no frame keeps playing
            self.nodes.stop_later(users)
        capture = getattr(receiver, "last_capture", None)
        return self._slot_outcome(plan, weights, round_id, slot_id, users, stats, estimate, capture)

    def _slot_outcome(
        self,
        plan: SlotPlan,
        weights: np.ndarray,
        round_id: int,
        slot_id: int,
        users: list[str],
        stats: RoundStats,
        estimate: np.ndarray | None,
        capture: np.ndarray | None,
    ) -> Reception:
        """Count a slot that went on the air, log its estimate (None: missed) and return
        what the receiver got."""
        self._last_slot = (slot_id, users, capture, estimate)
        stats.slots += 1
        self.meter.slot_done()
        stats.payload_channel_uses += self.frame_len
        if estimate is None:
            stats.missed_slots += 1
        else:
            stats.predicted_mse.append(float(plan.predicted_mse))
            self.estimate_log.slot(
                round_id, slot_id, users, estimate, weights=weights, batch=self.batch,
                predicted_mse=float(plan.predicted_mse), dim=getattr(self.method, "dim", None),
            )  # fmt: skip
        indices = tuple(self.index_of[u] for u in users)
        return Reception(indices, estimate, weights, np.asarray(plan.effective_weights, float))

    def _step(
        self,
        receiver: OtaReceiver,
        estimates: dict[tuple[str, ...], list],
        round_id: int,
        slot_id: int,
        group: list[str],
        stats: RoundStats,
        record: bool,
    ) -> int:
        """One step of ``group``: its slots, the method's server step and feedback.
        Returns the next slot id."""
        receptions, slot_of = [], {}
        slots = self.method.slots([self.index_of[u] for u in group]) if self.n_reals else []
        for slot in slots:
            users = [self.ids[i] for i in slot]
            time_base = isinstance(receiver, TimeBaseReceiver)  # acquires/probes in plan
            clock = receiver.clock
            with self.timer.span("phy"):  # requests to nodes inside are timed apart
                if tuple(users) not in estimates:
                    estimates[tuple(users)] = (
                        users if time_base else self._acquire(receiver, round_id, slot_id, users)
                    )
                    stats.pilot_channel_uses += receiver.clock - clock
                receptions.append(
                    self._slot(
                        receiver, estimates[tuple(users)], round_id, slot_id, users, stats, record
                    )
                )
            if time_base:  # its clock counts acquisition and probe channel uses only
                stats.pilot_channel_uses += receiver.clock - clock
            slot_of.update({i: slot_id for i in slot})
            slot_id += 1
        return self._learn(group, receptions, slot_of, round_id, slot_id, stats, record)

    def _learn(
        self,
        group: list[str],
        receptions: list[Reception],
        slot_of: dict[int, int],
        round_id: int,
        slot_id: int,
        stats: RoundStats,
        record: bool,
    ) -> int:
        """The server's part of one step of ``group`` after its slots (``receptions``;
        ``slot_of``: user index -> its last slot; ``slot_id``: the slot after them): the
        method's digital uplink if it has one, its server step and feedback, and what the
        last round records. Returns the next slot id."""
        if self.method.update_length:  # the method's declared digital uplink
            exchange = LinkExchange(
                self.nodes, self.ids, self.method.update_length, round_id, slot_id
            )
            indices = [self.index_of[u] for u in group]
            gather_rng = ex.rng_for(self.config, "gather", round_id, slot_id)
            receptions += self.method.gather(indices, exchange, gather_rng)
            stats.uplink_bytes += exchange.bytes
            slot_of.update({i: slot_id for i in indices if i not in slot_of})
            slot_id += 1
        with self.timer.span("training"):
            outcome = self.method.server_step(
                receptions, ex.rng_for(self.config, "method", round_id, slot_id)
            )
            stats.losses += outcome.losses
            for feedback in outcome.feedback:
                self._feedback(feedback, round_id, slot_id - 1)
        if record:
            room = max(0, UPDATE_VIEWS_KEPT - len(self.update_views))
            self.update_views += [
                {
                    "round": round_id,
                    "slot_ids": [slot_of[i] for i in v.users],
                    "user_ids": [self.ids[i] for i in v.users],
                    "kind": v.kind,
                    "update": torch.as_tensor(np.asarray(v.update, np.float64)),
                    "model": torch.as_tensor(np.asarray(v.model, np.float64)),
                    "air_scale": float(v.air_scale),
                }
                for v in outcome.update_views[:room]
            ]
            for view in outcome.views:
                self.observations.append(
                    Observation(
                        round_id,
                        [slot_of[i] for i in view.users],
                        [self.ids[i] for i in view.users],
                        np.asarray(view.weights, float),
                        view.payload,
                        view.label,
                    )
                )
        return slot_id

    def _feedback(self, feedback: Feedback, round_id: int, slot_id: int) -> None:
        """Send one :class:`Feedback` to its users' nodes (a planned step holds it back
        and sends every group's at once)."""
        common = {"round_id": round_id, "slot_id": slot_id, "arrays": dict(feedback.arrays)}
        weights = np.asarray(feedback.weights, dtype=float)
        users = [self.ids[i] for i in feedback.users]
        requests = self.nodes.split_to_users("feedback", users, common, {"weights": weights})
        if self._held_feedback is not None:
            self._held_feedback += requests
        else:
            self.nodes.request_many(requests)

    # ------------------------------------------------------------ planned rounds
    def _planned_step(
        self,
        receiver: OtaReceiver,
        estimates: dict[tuple[str, ...], list],
        round_id: int,
        slot_id: int,
        groups: list[list[str]],
        stats: RoundStats,
        record: bool,
    ) -> int:
        """One step of every group, played in waves (``channel.schedule = "planned"``,
        :mod:`radio.planned_air`): every pilot not yet acquired, then every slot, each
        wave one request per node and one parallel render of its windows; then the
        server steps in group order and every group's feedback at once. Slot ids, mixing
        and power draws are those of the sequential loop. Returns the next slot id."""
        before = self.totals.channel_uses + stats.payload_channel_uses
        slots: list[tuple[int, int, list[str]]] = []  # (group, slot id, users)
        ends: list[int] = []  # per group: the slot id after its slots
        for g, group in enumerate(groups):
            indices = [self.index_of[u] for u in group]
            for slot in self.method.slots(indices) if self.n_reals else []:
                slots.append((g, slot_id, [self.ids[i] for i in slot]))
                slot_id += 1
            ends.append(slot_id)
        eve = self.radios.eve if record else None
        mapper = self._air_tasks()
        air = PlannedAir(
            receiver, self.radios.receiver.port, eve, mapper, getattr(mapper, "parallel", None)
        )
        try:
            with self.timer.span("phy"):
                pilots, windows = self._lay_out(receiver, air, estimates, slots)
                if len(slots) >= WAVE_LINES_FROM:  # a long wave says what it does
                    self.meter.phase(
                        f"{sum(map(len, pilots))} pilots, then {len(slots)} slots on the air"
                    )
                self._planned_acquisition(receiver, air, estimates, round_id, pilots, stats)
                receptions = self._planned_wave(
                    receiver, air, estimates, round_id, slots, windows, stats
                )
        finally:  # past every window reserved, played or not
            air.finish()
        self._held_feedback = []
        try:
            for g, group in enumerate(groups):
                mine = [
                    (sid, rec)
                    for (gg, sid, _), rec in zip(slots, receptions, strict=True)
                    if gg == g
                ]
                slot_of = {i: sid for sid, rec in mine for i in rec.users}
                group_receptions = [rec for _, rec in mine]
                self._learn(group, group_receptions, slot_of, round_id, ends[g], stats, record)
            held = self._held_feedback
        finally:
            self._held_feedback = None
        if held:
            self.nodes.request_many(held)
        if self._on_grid(before, stats):
            self._evaluate_into(round_id, stats)
        return slot_id

    def close(self) -> None:
        """Stop what the engine started besides the nodes (a planned round's air
        workers); safe to call twice."""
        if self._air_workers is not None:
            self._air_workers.close()
            self._air_workers = None

    def _air_tasks(self) -> Mapper:
        """Where a planned wave's rendering and receiver work run: air worker actors on
        the run's Ray cluster with ``users.backend = "ray"`` (the air scales with the
        cluster), else one worker process per core (no GIL between them: a 1,000-user
        round took 8.6-11.8 s on threads, 6.4-6.6 s on processes, on the same slow
        machine). Made with the engine, so the workers start while the nodes join."""
        if self._air_workers is None:
            if self.config.users.backend == "ray":
                from orchestrator.ray_nodes import RayTasks

                self._air_workers = RayTasks()
            else:
                self._air_workers = InProcesses()
        return self._air_workers

    def _lay_out(
        self,
        receiver: OtaReceiver,
        air: PlannedAir,
        estimates: dict[tuple[str, ...], list],
        slots: list[tuple[int, int, list[str]]],
    ) -> tuple[dict[tuple[str, ...], list[Window]], list[Window]]:
        """Reserve the windows of ``slots`` in the sequential loop's order: before a slot
        whose users are not acquired yet, one pilot window per user; then the slot's
        window, long enough for any plan (a user's buffer start lands within one pilot
        period). Returns (users -> their pilot windows, one window per slot)."""
        pilots: dict[tuple[str, ...], list[Window]] = {}
        windows = []
        for _, _, users in slots:
            key = tuple(users)
            if key not in estimates and key not in pilots:
                pilots[key] = [air.window(receiver.acquire_len) for _ in users]
            windows.append(air.window(self._slot_window))
        return pilots, windows

    def _planned_acquisition(
        self,
        receiver: OtaReceiver,
        air: PlannedAir,
        estimates: dict[tuple[str, ...], list],
        round_id: int,
        pilots: dict[tuple[str, ...], list[Window]],
        stats: RoundStats,
    ) -> None:
        """Acquire the users of ``pilots`` (users -> one window each, pilot k for the
        k-th): one ``send_pilots`` per node, one render, their link estimates."""
        if not pilots:
            return
        users, pilot_ids, orders, windows = [], [], [], []
        for group, group_windows in pilots.items():
            for k, (user, window) in enumerate(zip(group, group_windows, strict=True)):
                users.append(user)
                pilot_ids.append(k)
                orders.append(_scheduled(SlotOrder(0.0, 0.0, 0.0, 0, 1.0, 0), window))
                windows.append(window)
        size = max(len(group) for group in pilots)
        requests = self.nodes.split_to_users(
            "send_pilots",
            users,
            {"round_id": round_id, "slot_id": 0, "group_size": size},
            {"pilot_ids": pilot_ids, "orders": orders},
        )
        self.nodes.request_many(requests)
        tasks = [
            WindowTask(
                group_windows,
                [w.n for w in group_windows],
                partial(
                    estimate_links,
                    n_users=len(group),
                    config=receiver.config,
                    clocks=[w.clock for w in group_windows],
                    carrier_hz=receiver.carrier_hz,
                ),
            )
            for group, group_windows in pilots.items()
        ]
        estimates.update(zip(pilots, air.run(tasks), strict=True))
        stats.pilot_channel_uses += sum(w.length for w in windows)

    def _planned_wave(
        self,
        receiver: OtaReceiver,
        air: PlannedAir,
        estimates: dict[tuple[str, ...], list],
        round_id: int,
        slots: list[tuple[int, int, list[str]]],
        windows: list[Window],
        stats: RoundStats,
    ) -> list[Reception]:
        """Every slot of ``slots`` on the air, in its reserved window: plans at the
        windows' clocks, one ``transmit`` per node (entries in slot order), one render;
        the eavesdropper, if planned in, hears the same windows."""
        plans, weights_of = [], []
        users_flat, slot_ids, weights_flat, orders = [], [], [], []
        for (_, slot_id, users), window in zip(slots, windows, strict=True):
            weights = self.method.mixing_weights(
                len(users), ex.rng_for(self.config, "mixing", round_id, slot_id)
            )
            plan = receiver.plan(
                estimates[tuple(users)], weights, self.n_reals,
                rng=ex.rng_for(self.config, "power", round_id, slot_id), clock=window.clock,
            )  # fmt: skip
            if plan.buffer_len > window.n:
                raise RuntimeError(f"slot {slot_id}: plan of {plan.buffer_len} samples > window")
            plans.append(plan)
            weights_of.append(weights)
            users_flat += users
            slot_ids += [slot_id] * len(users)
            weights_flat += [float(w) for w in weights]
            orders += [_scheduled(plan.order(k), window) for k in range(len(users))]
        if not slots:
            return []
        requests = self.nodes.split_to_users(
            "transmit",
            users_flat,
            {"round_id": round_id, "slot_id": slots[0][1], "batch_size": self.batch},
            {"weights": np.asarray(weights_flat), "orders": orders, "slot_ids": slot_ids},
        )
        clipped = _clipped(self.nodes.request_many(requests))
        lengths = [plan.buffer_len for plan in plans]
        tasks = [
            WindowTask(
                [window],
                [plan.buffer_len],
                partial(
                    mixup_estimate,
                    rx_scaling=plan.rx_scaling,
                    n_reals=self.n_reals,
                    config=receiver.config,
                    frame_start=plan.target_delay,
                ),
            )
            for plan, window in zip(plans, windows, strict=True)
        ]
        found = air.run(tasks)
        heard = air.listen(windows, lengths)
        (last,) = air.capture(windows[-1:], lengths[-1:])  # the live view's spectrum
        out = []
        for j, (_, slot_id, users) in enumerate(slots):
            estimate = found[j]
            silent = {u: s for u, s in clipped.items() if s == slot_id}
            if silent:  # a user was silent: not the planned mixup
                log.warning("slot %d of round %d missed: %s", slot_id, round_id, _why(silent))
                estimate = None
            elif isinstance(estimate, ValueError):
                log.warning("slot %d of round %d missed: %s", slot_id, round_id, estimate)
                estimate = None
            if heard:
                self.eavesdropped.append(
                    EavesdropperCapture(round_id, slot_id, list(users), weights_of[j], heard[j])
                )
            capture = last if j == len(slots) - 1 else None
            out.append(
                self._slot_outcome(
                    plans[j], weights_of[j], round_id, slot_id, users, stats, estimate, capture
                )
            )
        return out

    def _eavesdrop(
        self, plan: SlotPlan, weights: np.ndarray, round_id: int, slot_id: int, users: list[str]
    ) -> None:
        """Keep what the eavesdropper (if the radios have one) heard during the slot."""
        samples = self.radios.eavesdrop(plan.buffer_len)
        if samples is not None:
            self.eavesdropped.append(
                EavesdropperCapture(round_id, slot_id, list(users), weights, samples)
            )

    def _evaluate_into(self, round_id: int, stats: RoundStats) -> float:
        """Evaluate now and record the point (channel uses so far) in ``stats``."""
        channel_uses = self.totals.channel_uses + stats.payload_channel_uses
        if stats.evaluations and stats.evaluations[-1]["channel_uses"] == channel_uses:
            return stats.evaluations[-1]["accuracy"]  # nothing happened since
        with self.timer.span("training"):
            accuracy = self.evaluate(round_id)
        stats.evaluations.append(
            {
                "channel_uses": channel_uses,
                "pilot_channel_uses": self.totals.pilot_channel_uses + stats.pilot_channel_uses,
                "slots": self.totals.slots + stats.slots,
                "accuracy": accuracy,
            }
        )
        return accuracy

    def _on_grid(self, before: int, stats: RoundStats) -> bool:
        """Whether the payload channel uses crossed a point of the evaluation grid since
        ``before`` (a running total)."""
        grid = self.config.experiment.eval_channel_uses
        now = self.totals.channel_uses + stats.payload_channel_uses
        return bool(grid) and now // grid > before // grid

    def run_round(self, round_id: int) -> dict[str, Any]:
        """Run one round; returns its metrics record."""
        window = LinkWindow(self.link.counters.snapshot, lambda: self.nodes.pump_seconds)
        self.timer = RoundTimer(medium_seconds)
        self.nodes.span = self.timer.span  # requests: the nodes' serving and the link
        self.radios.start_round(round_id)
        body = StartRound.of(round_id, radio_config(self.config))
        with contextlib.suppress(NodeLost):
            self.nodes.request_many([(n, "start_round", body) for n in self.nodes.alive_nodes])
        self._round_id = round_id
        receiver = self._receiver()
        stats = RoundStats()
        record = round_id == self.config.experiment.rounds - 1
        groups = self._groups(round_id)
        self.meter = RoundProgress(round_id, self._planned_slots(groups), self.progress)
        slot_id = 0
        estimates: dict[tuple[str, ...], list] = {}
        step = 0
        while step < self.steps and self.nodes.alive:
            try:
                if self.planned:
                    slot_id = self._planned_step(
                        receiver, estimates, round_id, slot_id, groups, stats, record
                    )
                for group in [] if self.planned else groups:
                    before = self.totals.channel_uses + stats.payload_channel_uses
                    slot_id = self._step(
                        receiver, estimates, round_id, slot_id, group, stats, record
                    )
                    if self._on_grid(before, stats):
                        self._evaluate_into(round_id, stats)
                self.nodes.pump()
                step += 1
            except NodeLost:
                self.nodes.pump()
                with contextlib.suppress(NodeLost):
                    self.nodes.flush_stops()
                stats.regroupings += 1
                groups = self._groups(round_id)  # the remaining users, regrouped
                estimates.clear()
        with contextlib.suppress(NodeLost):
            self.nodes.flush_stops()
        accuracy = self._evaluate_into(round_id, stats)
        self._record_live(round_id, receiver, estimates)
        self.totals.channel_uses += stats.payload_channel_uses
        self.totals.pilot_channel_uses += stats.pilot_channel_uses
        self.totals.slots += stats.slots
        out = round_record(
            round_id, accuracy, stats, self.totals, groups, len(self.nodes.alive), window
        )
        served = self.link.counters.snapshot()["served_seconds"] - window.before["served_seconds"]
        out["time_split"] = self.timer.split(out["messaging_seconds"], served)
        out["slots_per_second"] = round(self.meter.slots_per_second, 3)
        return out

    def _record_live(
        self,
        round_id: int,
        receiver: OtaReceiver | TimeBaseReceiver,
        estimates: dict[tuple[str, ...], list],
    ) -> None:
        """Write the round's per-user link state and its last slot for the live view
        (:mod:`orchestrator.live.recorder`): what the receiver measured, no user data.
        Stream/tdd: each tracked user's stream offset, CFO, tracked gain, SNR and
        counters; cyclic: the round's acquisition estimates."""
        if isinstance(receiver, TimeBaseReceiver):
            states = {
                str(uid): link_state(
                    track.offset,
                    track.cfo_hz,
                    gain,
                    10 * math.log10(abs(gain) ** 2 / track.noise_var) if gain else None,
                    receiver.user_counters(uid),
                )
                for uid, track in receiver.tracks.items()
                for gain in [receiver.tracked_gain(uid)]
            }
        else:
            states = {
                user: link_state_of(estimate)
                for users, group_estimates in estimates.items()
                for user, estimate in zip(users, group_estimates, strict=False)
            }
        self.live.record_link_state(round_id, dict(sorted(states.items())))
        if self._last_slot is not None and self._last_slot[2] is not None:
            slot_id, users, capture, estimate = self._last_slot
            rate = radio_config(self.config).sample_rate_hz
            self.live.record_slot(round_id, slot_id, capture, rate, estimate, users)

    # -------------------------------------------------------------- evaluation
    def evaluate(self, round_id: int) -> float:
        """Test accuracy: the method's server-side figure, else pooled over the alive
        users' evaluations at their nodes (:meth:`MethodUser.evaluate`)."""
        accuracy = self.method.evaluate()
        if accuracy is not None:
            return float(accuracy)
        arrays = self.method.evaluation_request()
        nodes = self.nodes
        nodes.eval_reports.clear()
        for node_id in nodes.alive_nodes:
            users = sorted(u for u in nodes.alive if nodes.node_of[u] == node_id)
            body = {"round_id": round_id, "user_ids": users, "arrays": arrays}
            with contextlib.suppress(NodeLost):
                nodes.request_many([(node_id, "eval_request", body)])
        # a node acked and evaluates; it reports when done and retries its report as long
        # as a request may take (timeout x attempts): wait that long, not one timeout
        # (thousands of users per node evaluate for minutes; a report left unanswered
        # blocked the node until its retries ran out while the next request waited on it)
        link = self.config.link
        deadline = time.monotonic() + link.request_timeout_s * (link.retries + 1)
        while not set(nodes.alive_nodes) <= set(nodes.eval_reports):
            if time.monotonic() >= deadline:
                break
            nodes.pump(timeout_s=0.1)
        return pooled_accuracy(
            [
                EvalCounts(math.nan, sum(r["correct"].values()), sum(r["count"].values()))
                for r in nodes.eval_reports.values()
            ]
        )

    # ------------------------------------------------------------- checkpoint
    def checkpoint(self, round_id: int) -> None:
        """Nodes save first (per round), then the orchestrator: a checkpoint names a
        round every party has saved."""
        with contextlib.suppress(NodeLost):
            self.nodes.request_many(
                [(n, "checkpoint", {"round_id": round_id}) for n in self.nodes.alive_nodes]
            )
        state = to_state(
            round_id,
            self.method.state_dict(),
            self.totals,
            self.nodes.alive,
            self.observations,
            self.eavesdropped,
        )
        state["link"] = self.link.counters.snapshot()  # cumulative counters continue on resume
        if self._time_base is not None:  # stream/tdd link knowledge and counters
            state["time_base"] = self._time_base.state_dict()
        if self.update_views:
            torch.save(self.update_views, self.run.path / UPDATE_VIEWS_FILE)
        self.run.save_checkpoint(state)

    def restore(self, state: dict[str, Any]) -> int:
        """Load a checkpoint (:func:`orchestrator.checkpoints.to_state`); returns the next
        round to run."""
        restored = from_state(state)
        self._time_base_state = state.get("time_base")
        if "link" in state:
            self.link.counters.restore(state["link"])
        self.method.load_state_dict(restored.method_state)
        self.totals = restored.totals
        self.nodes.alive = restored.alive & set(self.nodes.node_of)
        self.observations = restored.observations
        self.eavesdropped = restored.eavesdropped
        views = self.run.path / UPDATE_VIEWS_FILE
        self.update_views = torch.load(views, weights_only=True) if views.exists() else []
        return restored.round_id + 1


def _scheduled(order: SlotOrder, window: Window) -> SlotOrder:
    """``order`` played over ``window`` of a planned round (``MODE_SCHEDULED``)."""
    return dataclasses.replace(order, mode=MODE_SCHEDULED, push_s=window.push_s, end_s=window.end_s)


def _clipped(replies: list) -> dict[str, int]:
    """User id -> slot of the frames the nodes' ``transmit`` replies say were not sent
    because they would have clipped."""
    out: dict[str, int] = {}
    for reply in replies:
        out.update(reply.body.get("clipped") or {})
    return out


def _why(clipped: dict[str, int]) -> str:
    return f"the frame of {', '.join(sorted(clipped))} would have clipped the DAC (not sent)"
