"""Privacy attacks on what the server actually saw during a run.

The *observations* are the mixed payloads and mixed labels the orchestrator's receiver
estimated in the recorded slots (:class:`orchestrator.engine.Observation`). The *ground
truth* for scoring comes from the nodes' local audit files (the dataset indices each
user sent in each slot), read here by the evaluation harness only; it never travels
over the digital link.

The attacker (a curious server) trains on the auxiliary split passed through the same
observation process it knows: groups of the run's size mixed by the differentiable OTA
model at the run's SNR, fading, power control and mixing weights
(:func:`learning.privacy_report.observe_groups`). It encodes auxiliary images with the
raw-mode codec (public) or, in feature mode, with the users' *initial* encoder (the
only encoder it ever had).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learning.attacks.base import Observation as AttackObservation
from learning.privacy_report import compose_groups, group_truth, observe_groups, privacy_figures
from orchestrator import experiment as ex
from orchestrator.config import ExperimentConfig

AUX_GROUPS = 6000


def read_audit(run_dir: Path) -> dict[tuple[int, int, str], list[int]]:
    """(round, slot, user) -> dataset indices (into that user's data) from all nodes."""
    records: dict[tuple[int, int, str], list[int]] = {}
    for path in sorted((Path(run_dir) / "audit").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line:
                r = json.loads(line)
                records[(r["round"], r["slot"], r["user"])] = r["indices"]
    return records


def server_view_figures(
    config: ExperimentConfig,
    data: ex.ExperimentData,
    observations: list,
    run_dir: Path,
) -> dict[str, Any]:
    """Fit the configured attacks on simulated auxiliary observations and score them on
    the run's recorded slots. Returns ``{"group_size", "n_observations", "figures"}``."""
    if not observations or not config.attacks.enabled:
        return {"group_size": 0, "n_observations": 0, "figures": {}}
    audit = read_audit(run_dir)
    group_size = Counter(len(o.user_ids) for o in observations).most_common(1)[0][0]
    user_index = {u: i for i, u in enumerate(ex.user_ids(config))}
    payloads, labels, weights, inputs, truth_labels = [], [], [], [], []
    for obs in observations:
        if len(obs.user_ids) != group_size:
            continue
        keys = [(obs.round_id, obs.slot_id, u) for u in obs.user_ids]
        if not all(k in audit for k in keys):
            continue  # a node died before writing its audit line
        rows = [
            data.split.users[user_index[u]][np.asarray(audit[k])]
            for u, k in zip(obs.user_ids, keys, strict=True)
        ]
        batch = min(len(r) for r in rows)
        idx = np.stack([r[:batch] for r in rows])  # (K, B) into train
        payloads.append(obs.payload[:batch])
        labels.append(obs.label[:batch])
        weights.append(np.repeat(np.asarray(obs.weights, float)[:, None], batch, axis=1))
        inputs.append(data.train.x.numpy()[idx])
        truth_labels.append(data.train.y.numpy()[idx])
    if not payloads:
        return {"group_size": group_size, "n_observations": 0, "figures": {}}
    from learning.attacks.base import GroupTruth

    n_classes = data.train.n_classes
    victim = AttackObservation(
        payload=np.concatenate(payloads),
        group_size=group_size,
        mixed_label=np.concatenate(labels),
        weights=np.concatenate(weights, axis=1),
    )
    victim_truth = GroupTruth(
        np.concatenate(inputs, axis=1), np.concatenate(truth_labels, axis=1), n_classes
    )
    aux = data.auxiliary
    if config.model.mode == "raw":
        aux_payloads = data.codec.encode(aux.x)
    else:
        with torch.no_grad():
            aux_payloads = ex.build_user_encoder(config, data).eval()(aux.x)
    rng = ex.rng_for(config, "attacks")
    idx = compose_groups(aux.y.numpy(), group_size, AUX_GROUPS, "random", n_classes, rng=rng)
    aux_obs = observe_groups(
        aux_payloads.numpy(),
        aux.y.numpy(),
        idx,
        n_classes,
        channel="ota",
        snr_db=config.channel.snr_db,
        weights="dirichlet" if config.channel.mixing == "dirichlet" else "equal",
        fading=config.channel.fading,
        policy=config.channel.power_control,
        rng=rng,
    )
    aux_truth = group_truth(aux.x.numpy(), aux.y.numpy(), idx, n_classes)
    figures = privacy_figures(
        aux_obs, aux_truth, victim, victim_truth, attacks=config.attacks.enabled, rng=rng
    )
    return {"group_size": group_size, "n_observations": victim.n, "figures": figures}
