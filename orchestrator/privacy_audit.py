"""Privacy attacks on what the server and a passive eavesdropper saw during a run.

Two views of the recorded slots (the last round), scored by the same code
(:func:`view_figures`):

* **server**: the mixed payloads and mixed labels the orchestrator's receiver estimated
  (:class:`orchestrator.checkpoints.Observation`); the curious server also knows the mixing
  weights it chose.
* **eavesdropper**: what the run's passive eavesdropper radio heard over the same window
  of air (:class:`orchestrator.checkpoints.EavesdropperCapture`, see
  :mod:`orchestrator.radios`), demodulated by the best passive receiver we give it
  (:func:`phy.eavesdropper.eavesdrop_frame`: frame detection, CFO, composite-gain
  equalisation; the users pre-compensated for the legitimate receiver, not for it). It
  knows the public frame format and the experiment's statistics, not the weights, the
  power-control plan or any channel draw. Slots whose frame it does not find are
  counted as missed.

The *ground truth* for scoring comes from the nodes' local audit files (the dataset
indices each user sent in each slot), read here by the evaluation harness only; it
never travels over the digital link.

Each attacker trains on the auxiliary split passed through the observation process it
knows (:func:`learning.privacy_report.observe_groups`): groups of the run's size at the
run's fading, power control and mixing, through ``channel="ota"`` at ``channel.snr_db``
(server) or ``channel="eavesdropper"`` at ``attacks.eavesdropper_snr_db``
(eavesdropper). It encodes auxiliary images as the method lets an outsider
(:meth:`learning.methods.oam.OverTheAirMixup.public_payloads`: the raw-mode codec, or the
users' *initial* encoder in feature mode; a semantic link's users' transmissions,
:func:`attacker_payloads`), with the attack options the method names
(``attack_kwargs``: DiffSem's inversion reads features only). Every success figure comes
with its chance level.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learning.attacks.base import GroupTruth
from learning.attacks.base import Observation as AttackObservation
from learning.methods.oam import OverTheAirMixup
from learning.privacy_report import compose_groups, group_truth, observe_groups, privacy_figures
from orchestrator import experiment as ex
from orchestrator.config import ExperimentConfig
from phy.eavesdropper import eavesdrop_frame

AUX_GROUPS = 6000


@dataclass
class SlotView:
    """What one attacker observed in one recorded slot.

    Attributes:
        round_id, user_ids: the round and the users mixed (K).
        slot_ids: the slot each user transmitted in (K).
        weights: mixing weights ``(K,)`` if this attacker knows them, else None.
        payload: mixed x-payloads ``(B, D)``; label: mixed label ``(B, C)``.
    """

    round_id: int
    slot_ids: list[int]
    user_ids: list[str]
    weights: np.ndarray | None
    payload: np.ndarray
    label: np.ndarray


def read_audit(run_dir: Path) -> dict[tuple[int, int, str], list[int]]:
    """(round, slot, user) -> dataset indices (into that user's data) from all nodes."""
    records: dict[tuple[int, int, str], list[int]] = {}
    for path in sorted((Path(run_dir) / "audit").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line:
                r = json.loads(line)
                records[(r["round"], r["slot"], r["user"])] = r["indices"]
    return records


def _victims(
    config: ExperimentConfig,
    data: ex.ExperimentData,
    views: list[SlotView],
    audit: dict[tuple[int, int, str], list[int]],
    group_size: int,
) -> tuple[AttackObservation, GroupTruth] | None:
    """The views of groups of ``group_size`` with a complete audit, as one attack
    observation and its ground truth (None if there is none)."""
    user_index = {u: i for i, u in enumerate(ex.user_ids(config))}
    payloads, labels, weights, inputs, truth_labels = [], [], [], [], []
    for view in views:
        if len(view.user_ids) != group_size:
            continue
        keys = [(view.round_id, s, u) for s, u in zip(view.slot_ids, view.user_ids, strict=True)]
        if not all(k in audit for k in keys):
            continue  # a node died before writing its audit line
        rows = [
            data.split.users[user_index[u]][np.asarray(audit[k])]
            for u, k in zip(view.user_ids, keys, strict=True)
        ]
        batch = min(len(r) for r in rows)
        idx = np.stack([r[:batch] for r in rows])  # (K, B) into train
        payloads.append(view.payload[:batch])
        labels.append(view.label[:batch])
        if view.weights is not None:
            weights.append(np.repeat(np.asarray(view.weights, float)[:, None], batch, axis=1))
        inputs.append(data.train.x.numpy()[idx])
        truth_labels.append(data.train.y.numpy()[idx])
    if not payloads:
        return None
    victim = AttackObservation(
        payload=np.concatenate(payloads),
        group_size=group_size,
        mixed_label=np.concatenate(labels),
        weights=np.concatenate(weights, axis=1) if len(weights) == len(payloads) else None,
    )
    truth = GroupTruth(
        np.concatenate(inputs, axis=1), np.concatenate(truth_labels, axis=1), data.train.n_classes
    )
    return victim, truth


def attacker_payloads(
    config: ExperimentConfig, method: Any, images: Any, rng: np.random.Generator
) -> np.ndarray:
    """The payloads ``(N, D)`` the attacker models for its auxiliary ``images``: what the
    users would transmit when the method has a public transmit rule
    (``transmitted_payloads``: a semantic link's encoder and self-noise adapted to the
    legitimate link at ``channel.snr_db``, :mod:`learning.methods.diffsem`), else the
    method's public payloads."""
    transmitted = getattr(method, "transmitted_payloads", None)
    if transmitted is None:
        return method.public_payloads(images)
    channel = config.channel
    return transmitted(images, channel.snr_db, channel.fading, channel.power_control, rng=rng)


def view_figures(
    config: ExperimentConfig,
    method: OverTheAirMixup,
    data: ex.ExperimentData,
    views: list[SlotView],
    run_dir: Path,
    rng_name: tuple[str, ...],
    **observe: Any,
) -> dict[str, Any]:
    """Fit the configured attacks on auxiliary groups passed through
    :func:`~learning.privacy_report.observe_groups` (``observe``: its channel
    arguments) and score them on ``views`` against the audit files.

    Returns ``{"group_size", "n_observations", "figures": {attack: figures}}``."""
    if not views or not config.attacks.enabled:
        return {"group_size": 0, "n_observations": 0, "figures": {}}
    group_size = Counter(len(v.user_ids) for v in views).most_common(1)[0][0]
    victims = _victims(config, data, views, read_audit(run_dir), group_size)
    if victims is None:
        return {"group_size": group_size, "n_observations": 0, "figures": {}}
    victim, victim_truth = victims
    n_classes = data.train.n_classes
    aux = data.auxiliary
    rng = ex.rng_for(config, *rng_name)
    aux_payloads = attacker_payloads(config, method, aux.x, rng)
    idx = compose_groups(aux.y.numpy(), group_size, AUX_GROUPS, "random", n_classes, rng=rng)
    aux_obs = observe_groups(
        aux_payloads,
        aux.y.numpy(),
        idx,
        n_classes,
        snr_db=config.channel.snr_db,
        mixing=method.context.mixing,  # the policy the run draws its slots' weights with
        time_base=config.channel.time_base,  # the closed loop's slot, as the run has it
        fading=config.channel.fading,
        policy=config.channel.power_control,
        rng=rng,
        **observe,
    )
    aux_truth = group_truth(aux.x.numpy(), aux.y.numpy(), idx, n_classes)
    figures = privacy_figures(
        aux_obs,
        aux_truth,
        victim,
        victim_truth,
        attacks=config.attacks.enabled,
        attack_kwargs=getattr(method, "attack_kwargs", None),
        rng=rng,
    )
    return {"group_size": group_size, "n_observations": victim.n, "figures": figures}


def server_view_figures(
    config: ExperimentConfig,
    method: OverTheAirMixup,
    data: ex.ExperimentData,
    observations: list,
    run_dir: Path,
) -> dict[str, Any]:
    """Attacks on what the server saw (:class:`orchestrator.checkpoints.Observation` s of the
    recorded slots). Returns ``{"group_size", "n_observations", "figures"}``."""
    views = [
        SlotView(o.round_id, list(o.slot_ids), list(o.user_ids), o.weights, o.payload, o.label)
        for o in observations
    ]
    return view_figures(config, method, data, views, run_dir, ("attacks",), channel="ota")


def demodulate_captures(
    config: ExperimentConfig, method: OverTheAirMixup, captures: list
) -> list[SlotView]:
    """The eavesdropper's demodulation of its captures
    (:class:`orchestrator.checkpoints.EavesdropperCapture`): one view per slot whose frame
    it found, labels as the raw received tail."""
    ofdm = ex.ofdm_config(config)
    views = []
    for capture in captures:
        try:
            frame = eavesdrop_frame(capture.samples, method.payload_reals, ofdm)
        except ValueError:
            continue  # missed: the eavesdropper found no frame in this slot
        payload, label = method.read(frame.payload, soft=False)
        views.append(
            SlotView(
                capture.round_id,
                [capture.slot_id] * len(capture.user_ids),
                list(capture.user_ids),
                None,  # the weights travel encrypted over the digital link
                payload.numpy(),
                label.numpy(),
            )
        )
    return views


def eavesdropper_view_figures(
    config: ExperimentConfig,
    method: OverTheAirMixup,
    data: ex.ExperimentData,
    captures: list,
    run_dir: Path,
) -> dict[str, Any]:
    """Attacks on what the eavesdropper heard (its captures of the recorded slots).
    Returns ``{"group_size", "n_observations", "figures", "slots", "frames_found",
    "snr_db"}``: ``slots`` captured, ``frames_found`` among them."""
    views = demodulate_captures(config, method, captures)
    out = view_figures(
        config,
        method,
        data,
        views,
        run_dir,
        ("attacks", "eavesdropper"),
        channel="eavesdropper",
        eavesdropper_snr_db=config.attacks.eavesdropper_snr_db,
        weights_known=False,
    )
    return {
        **out,
        "slots": len(captures),
        "frames_found": len(views),
        "snr_db": config.attacks.eavesdropper_snr_db,
    }
