"""The in-process runtime: a :class:`~learning.methods.base.Method` over a channel model.

:func:`run_method` runs the round of :mod:`learning.methods.base` with every user in
this process and the air replaced by an :class:`~learning.channels.OtaChannel` (ideal
sum, AWGN or fading through the differentiable phy model). It draws from the same
named seeds as the distributed runtime (``orchestrator/engine.py``): ``("batches",
round, user)``, ``("grouping", round)``, ``("mixing", round, slot)``, ``("method",
round, slot)``, so it measures the system ``airmix run`` runs, with the radios
replaced by a model.

Channel uses are counted as the distributed runtime counts payload channel uses: the
samples of one OFDM frame carrying the slot (:func:`phy.waveform.frame_length`) per
slot. The channel model needs no acquisition, so there are no pilot channel uses here.
Evaluation: at every round end, and also whenever the payload channel uses cross a
multiple of ``eval_channel_uses`` (a grid finer than a round, so "channel uses to reach
the target accuracy" is not bounded by the round length).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from learning.channels import OtaChannel
from learning.methods.base import (
    EvalCounts,
    Method,
    MethodUser,
    Reception,
    UplinkRequest,
    Upload,
)
from phy.rng import make_rng
from phy.waveform import OfdmConfig, frame_length

__all__ = ["LoopResult", "channel_uses_to_reach", "pooled_accuracy", "run_method"]

log = logging.getLogger(__name__)


@dataclass
class LoopResult:
    """Outcome of :func:`run_method`.

    Attributes:
        accuracy: final test accuracy.
        evaluations: ``{"round", "slots", "channel_uses", "accuracy"}`` per evaluation,
            in order (channel uses cumulative, payload only).
        losses: server loss per update.
        slots: slots used; channel_uses: payload channel uses (frame samples).
        mean_mse: mean expected MSE per complex symbol the channel reported.
        missed_slots: slots whose estimate was None.
        seconds: wall-clock time.
        users: the method's user halves after training (index order).
    """

    accuracy: float = float("nan")
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    slots: int = 0
    channel_uses: int = 0
    mean_mse: float = 0.0
    missed_slots: int = 0
    seconds: float = 0.0
    users: list[MethodUser] = field(default_factory=list)


def pooled_accuracy(counts: Sequence[EvalCounts]) -> float:
    """Correct over count pooled over users (NaN with no samples)."""
    total = sum(c.count for c in counts)
    return sum(c.correct for c in counts) / total if total else float("nan")


def evaluate_method(method: Method, users: Sequence[MethodUser]) -> float:
    """The method's accuracy: the server's, else pooled over ``users``' evaluations."""
    accuracy = method.evaluate()
    if accuracy is not None:
        return float(accuracy)
    request = method.evaluation_request()
    return pooled_accuracy([user.evaluate(request) for user in users])


def channel_uses_to_reach(evaluations: Sequence[dict[str, Any]], target: float) -> int | None:
    """Payload channel uses at the first evaluation with accuracy >= ``target`` (None if
    never reached)."""
    return next((e["channel_uses"] for e in evaluations if e["accuracy"] >= target), None)


def _direct_exchange(users: Sequence[MethodUser]):
    """The digital uplink in process: each request goes straight to its user; users that
    answer None dropped out (:data:`learning.methods.base.Exchange`)."""

    def exchange(requests: dict[int, UplinkRequest]) -> dict[int, Upload]:
        answers = {u: users[u].upload(r) for u, r in requests.items()}
        return {u: a for u, a in answers.items() if a is not None}

    return exchange


def _random_groups(n_users: int, group_size: int, rng: np.random.Generator) -> list[list[int]]:
    order = rng.permutation(n_users)
    return [order[i : i + group_size].tolist() for i in range(0, n_users, group_size)]


def run_method(
    method: Method,
    channel: OtaChannel,
    rounds: int,
    *,
    group_size: int = 4,
    grouping: Any = None,
    eval_channel_uses: int | None = None,
    ofdm: OfdmConfig | None = None,
    progress: bool = False,
) -> LoopResult:
    """Run ``rounds`` rounds of ``method`` over ``channel`` in this process.

    Args:
        method: the method (its context fixes data, users, seeds, steps per round).
        channel: the channel model between a slot's users and the server.
        rounds: rounds to run (>= 1).
        group_size: users per group when ``grouping`` is None (random groups per round).
        grouping: a grouping policy (``orchestrator.grouping``: ``group(ids,
            label_histograms=..., rng=...)``) over user indices, e.g. label-aware.
        eval_channel_uses: also evaluate every this many payload channel uses (None:
            at round ends only).
        ofdm: frame layout for counting channel uses (default ``OfdmConfig()``).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    if eval_channel_uses is not None and eval_channel_uses < 1:
        raise ValueError(f"eval_channel_uses must be >= 1, got {eval_channel_uses}")
    ctx = method.context
    users = [method.make_user(i) for i in range(ctx.n_users)]
    histograms = {
        i: np.bincount(u.data.y.numpy(), minlength=ctx.n_classes) for i, u in enumerate(users)
    }
    slot_uses = (
        frame_length(method.payload_reals, ofdm or OfdmConfig()) if method.payload_reals else 0
    )
    result = LoopResult(users=users)
    mses: list[float] = []
    next_eval = eval_channel_uses
    start = time.perf_counter()

    def record(round_id: int) -> None:
        accuracy = evaluate_method(method, users)
        result.evaluations.append(
            {
                "round": round_id,
                "slots": result.slots,
                "channel_uses": result.channel_uses,
                "accuracy": accuracy,
            }
        )
        result.accuracy = accuracy

    for round_id in tqdm(range(rounds), desc=method.name, disable=not progress, leave=False):
        for i, user in enumerate(users):
            user.start_round(ctx.seed_for("batches", round_id, i))
        group_rng = make_rng(ctx.seed_for("grouping", round_id))
        if grouping is None:
            groups = _random_groups(ctx.n_users, group_size, group_rng)
        else:
            groups = grouping.group(
                list(range(ctx.n_users)), label_histograms=histograms, rng=group_rng
            )
        slot_id = 0
        for _ in range(ctx.steps_per_round):
            for group in groups:
                receptions = []
                for slot in method.slots(group):
                    weights = method.mixing_weights(
                        len(slot), make_rng(ctx.seed_for("mixing", round_id, slot_id))
                    )
                    vectors = np.stack([users[k].payload(ctx.slot_batch).vector for k in slot])
                    out = channel.transmit(torch.as_tensor(vectors[:, None, :]).float(), weights)
                    receptions.append(
                        Reception(
                            tuple(slot),
                            out.estimate[0].detach().numpy().astype(float),
                            weights,
                            np.asarray(out.effective_weights, dtype=float),
                        )
                    )
                    mses.append(out.mse)
                    slot_id += 1
                    result.slots += 1
                    result.channel_uses += slot_uses
                receptions += method.gather(
                    group,
                    _direct_exchange(users),
                    make_rng(ctx.seed_for("gather", round_id, slot_id)),
                )
                outcome = method.server_step(
                    receptions, make_rng(ctx.seed_for("method", round_id, slot_id))
                )
                result.losses += outcome.losses
                for feedback in outcome.feedback:
                    for k, weight in zip(feedback.users, feedback.weights, strict=True):
                        users[k].apply(feedback, float(weight))
                if next_eval is not None and result.channel_uses >= next_eval:
                    record(round_id)
                    while next_eval <= result.channel_uses:
                        next_eval += eval_channel_uses
        if not result.evaluations or result.evaluations[-1]["slots"] != result.slots:
            record(round_id)
    result.mean_mse = float(np.mean(mses)) if mses else 0.0
    result.seconds = time.perf_counter() - start
    log.info("%s: %d slots, final accuracy %.4f", method.name, result.slots, result.accuracy)
    return result
