"""The run's gradient-inversion audit: what the server and a passive eavesdropper saw of
the users' model updates (methods whose ``air_view`` or uplink carries model updates,
e.g. ``fedavg``).

* **server**: the update views of the recorded round (the last) the engine kept
  (:data:`orchestrator.engine.UPDATE_VIEWS_FILE`, from
  :class:`learning.methods.base.UpdateView`): each user's own update when aggregation is
  digital and unprotected, only the secure mean with secure aggregation, the noisy mean
  received over the air with ``"ota"`` (one update per slot with ``"orthogonal"``).
* **eavesdropper**: the over-the-air slots its radio captured in the same round
  (:class:`orchestrator.checkpoints.EavesdropperCapture`), demodulated as for any method
  (:func:`phy.eavesdropper.eavesdrop_frame`: frame detection, CFO, composite-gain
  equalisation) and read as an update (the public spreading undone, times the public
  scale). It is granted the global model of that step (a passive eavesdropper can track
  it from the public initial model and the sums it hears; this is the strongest passive
  attacker), not the weights, the power-control plan or any channel draw. Digital
  aggregation puts nothing on the air: there is nothing for it to capture.

Each view is attacked by :func:`learning.federated.update_audit.invert_view` (at most
:data:`MAX_VIEWS` per party, the first of the round) with an evaluation classifier
trained on the auxiliary split. The ground truth (the samples behind each user's update)
comes from the nodes' local audit files, as for the mixture attacks. Figures: mean per
victim user of task accuracy, PSNR and SSIM, each beside its chance (random auxiliary
images), label-matched chance (random auxiliary images of the labels the attacker
inferred) and label-aware chance (their class means), with a 95% interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from learning.attacks.inversion import train_evaluation_classifier
from learning.federated.gradient_inversion import InversionConfig
from learning.federated.update_audit import FIGURES, UpdateVictims, invert_view, mean_scores
from learning.methods.base import Method
from orchestrator import experiment as ex
from orchestrator.config import ExperimentConfig
from orchestrator.engine import UPDATE_VIEWS_FILE, UPDATE_VIEWS_KEPT
from orchestrator.privacy_audit import read_audit
from phy.eavesdropper import eavesdrop_frame

__all__ = [
    "MAX_VIEWS",
    "eavesdropper_inversion_figures",
    "headline",
    "inversion_table",
    "server_inversion_figures",
]

#: views inverted per party (the first ones of the recorded round)
MAX_VIEWS = 4
assert MAX_VIEWS <= UPDATE_VIEWS_KEPT, "the engine keeps fewer update views than inverted"
#: the attack's optimisation (Adam steps on the dummies' logits)
INVERSION = InversionConfig(iterations=200)
#: epochs of the attacker's evaluation classifier on the auxiliary split
EVALUATOR_EPOCHS = 30


def _truth(
    data: ex.ExperimentData,
    user_index: dict[str, int],
    audit: dict[tuple[int, int, str], list[int]],
    keys: list[tuple[int, int, str]],
) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """Per user of ``keys`` (round, slot, user): the images and labels behind its update,
    or None when an audit line is missing (a node died before writing it)."""
    if not all(k in audit and audit[k] for k in keys):
        return None
    images, labels = [], []
    for round_slot_user in keys:
        user = round_slot_user[2]
        rows = data.split.users[user_index[user]][np.asarray(audit[round_slot_user])]
        images.append(data.train.x.numpy()[rows])
        labels.append(data.train.y.numpy()[rows])
    return images, labels


def _attack(
    config: ExperimentConfig,
    method: Method,
    data: ex.ExperimentData,
    victims: list[UpdateVictims],
    party: str,
) -> dict[str, Any]:
    """Invert each view; the mean figures over victim users (see the module docstring)."""
    out: dict[str, Any] = {"n_views": len(victims), "kinds": sorted({v.kind for v in victims})}
    if not victims:
        return out
    aux = data.auxiliary
    aux_x, aux_y = aux.x.numpy(), aux.y.numpy()
    evaluator = train_evaluation_classifier(
        aux_x, aux_y, data.train.n_classes, epochs=EVALUATOR_EPOCHS,
        rng=ex.rng_for(config, "inversion", "evaluator"),
    )  # fmt: skip
    options = ex.method_options(config)
    lr = float(options["local_lr"]) * float(options["local_steps"])
    scores = []
    for i, victim in enumerate(victims):
        rng = ex.rng_for(config, "inversion", party, i)
        scores += invert_view(method.model, victim, lr, evaluator, aux_x, aux_y, INVERSION, rng)
    out["n_images"] = int(sum(len(x) for v in victims for x in v.images))
    out["figures"] = mean_scores(scores)
    return out


def server_inversion_figures(
    config: ExperimentConfig, method: Method, data: ex.ExperimentData, run_dir: Path
) -> dict[str, Any]:
    """Gradient inversion on the update views the server saw in the recorded round.
    Returns ``{"n_views", "kinds", "n_images", "figures"}`` (no ``figures`` without
    views)."""
    path = Path(run_dir) / UPDATE_VIEWS_FILE
    records = torch.load(path, weights_only=True) if path.exists() else []
    audit = read_audit(run_dir)
    user_index = {u: i for i, u in enumerate(ex.user_ids(config))}
    victims = []
    for record in records:
        keys = [
            (record["round"], s, u)
            for s, u in zip(record["slot_ids"], record["user_ids"], strict=True)
        ]
        truth = _truth(data, user_index, audit, keys)
        if truth is not None:
            victims.append(
                UpdateVictims(
                    record["kind"], record["update"].numpy(), record["model"].numpy(), *truth
                )
            )
        if len(victims) == MAX_VIEWS:
            break
    return _attack(config, method, data, victims, "server")


def eavesdropper_inversion_figures(
    config: ExperimentConfig,
    method: Method,
    data: ex.ExperimentData,
    captures: list,
    run_dir: Path,
) -> dict[str, Any]:
    """Gradient inversion on the model updates the eavesdropper's radio captured (its
    :class:`~orchestrator.checkpoints.EavesdropperCapture` s of the recorded round).
    Returns ``{"n_views", "kinds", "n_images", "figures", "slots", "frames_found",
    "snr_db"}``."""
    path = Path(run_dir) / UPDATE_VIEWS_FILE
    records = torch.load(path, weights_only=True) if path.exists() else []
    seen = {(r["round"], s): r for r in records for s in r["slot_ids"]}
    audit = read_audit(run_dir)
    user_index = {u: i for i, u in enumerate(ex.user_ids(config))}
    ofdm = ex.ofdm_config(config)
    victims, found = [], 0
    for capture in captures:
        try:
            frame = eavesdrop_frame(capture.samples, method.payload_reals, ofdm)
        except ValueError:
            continue  # missed: the eavesdropper found no frame in this slot
        found += 1
        step = seen.get((capture.round_id, capture.slot_id))
        keys = [(capture.round_id, capture.slot_id, u) for u in capture.user_ids]
        truth = _truth(data, user_index, audit, keys)
        if step is None or truth is None or len(victims) == MAX_VIEWS:
            continue
        payload = np.real(np.asarray(frame.payload))
        update = method.read_update(payload, step["air_scale"])
        kind = "ota_sum" if len(capture.user_ids) > 1 else "single_update"
        victims.append(UpdateVictims(kind, update, step["model"].numpy(), *truth))
    out = _attack(config, method, data, victims, "eavesdropper")
    out.update(slots=len(captures), frames_found=found, snr_db=config.attacks.eavesdropper_snr_db)
    return out


def headline(server: dict[str, Any] | None, eavesdropper: dict[str, Any] | None) -> dict:
    """``gradient_inversion_<figure>`` and its ``_chance`` / ``_label_matched_chance`` /
    ``_label_chance`` for the server's view, ``eavesdropper_gradient_inversion_...`` for
    the eavesdropper's."""
    out: dict[str, float | None] = {}
    for prefix, result in (("", server), ("eavesdropper_", eavesdropper)):
        figures = (result or {}).get("figures")
        if result is None or not figures:
            continue
        for name in FIGURES:
            for suffix in ("", "_chance", "_label_matched_chance", "_label_chance"):
                out[f"{prefix}gradient_inversion_{name}{suffix}"] = figures.get(name + suffix)
    return out


def inversion_table(inversion: dict[str, Any] | None) -> list[str]:
    """Lines of the gradient-inversion figures of each party, each beside its chance and
    label-aware chance (printed at the end of ``airmix run``)."""
    if not inversion:
        return []
    lines = [f"{'gradient inversion':28s} {'view':>14s} {'figure':>16s} {'chance':>8s} "
             f"{'label-matched':>14s} {'label-aware':>12s}"]  # fmt: skip
    for party, result in inversion.items():
        figures = (result or {}).get("figures")
        if not figures:
            continue
        kinds = "+".join(result["kinds"])
        for name in FIGURES:
            lines.append(
                f"{party + ' ' + name:28s} {kinds:>14s} "
                f"{figures[name]:>9.3f} ±{figures[name + '_ci95']:5.3f} "
                f"{figures[name + '_chance']:>8.3f} "
                f"{figures[name + '_label_matched_chance']:>14.3f} "
                f"{figures[name + '_label_chance']:>12.3f}"
            )
    eve = inversion.get("eavesdropper")
    if eve:
        lines.append(
            f"eavesdropper found the frame in {eve['frames_found']}/{eve['slots']} recorded "
            f"slots at {eve['snr_db']:g} dB"
        )
    return lines
