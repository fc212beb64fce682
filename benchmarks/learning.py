"""Learning-layer benchmark on scikit-learn's digits (no download).

Measures the methods ``airmix run`` runs (:mod:`learning.methods`, driven in process by
:func:`learning.methods.loop.run_method` on the runtime's named seeds): label-aware
groups (``orchestrator.grouping``), labels mixed over the air in the payload's label
tail, the raw codec fitted on the auxiliary split. Prints, for 8 IID users (20 % of the
training set held out as the auxiliary split):

* centralized accuracy and training time (CNN trained on the union of the users' data);
* OAM accuracy: label-aware groups of 4, Rayleigh fading at 20 dB, closed-form MMSE power
  control (``phy.power.tx_rx_scaling`` through ``phy.ota_model``), raw mode (AirMixML
  style; the headline ``oam_accuracy``) and feature mode (split learning, per-user
  encoders);
* the gap to centralized in points (reference: centralized, target <= 3);
* the orthogonal (one user per slot) and server-side mixup baselines, with channel uses;
* payload channel uses to reach 90 % test accuracy for OAM, orthogonal slots and server
  mixup, evaluated on a grid of a tenth of an OAM round (not bounded by the round
  length); the in-process channel model needs no acquisition, so these are payload
  channel uses only (``airmix run`` reports pilots apart);
* the training-loop overhead of :func:`learning.training.train_centralized` against a plain
  PyTorch loop on the same model, initial weights and batches (target <= 1.2).

Ends with one JSON line. Run: ``.venv/bin/python benchmarks/learning.py``.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures_line import print_figures  # noqa: E402

from learning.channels import make_channel  # noqa: E402
from learning.data import load_dataset, split_users  # noqa: E402
from learning.methods import make_method  # noqa: E402
from learning.methods.base import MethodContext  # noqa: E402
from learning.methods.loop import channel_uses_to_reach, run_method  # noqa: E402
from learning.mixup import make_policy  # noqa: E402
from learning.models import build_classifier  # noqa: E402
from learning.training import evaluate, iterate_batches, train_centralized  # noqa: E402
from orchestrator.grouping import get_grouping_policy  # noqa: E402
from phy.rng import seed_everything, torch_generator  # noqa: E402

SEED = 0
N_USERS = 8
GROUP = 4
SNR_DB = 20.0
CENTRAL_EPOCHS = 30
OAM_EPOCHS = 100
TARGET = 0.9


def run(name, train, test, split, mode="raw", mixing="equal", grid=None, rounds=OAM_EPOCHS):
    """``name`` for ``rounds`` rounds over 20 dB Rayleigh fading, label-aware groups."""
    model = {"mode": mode, "arch": "cnn", "feature_dim": 32, "learning_rate": 1e-3}
    context = MethodContext(
        train, test, split, {**model, "batch_size": 32}, make_policy(mixing), seed=SEED + 2
    )
    return run_method(
        make_method(name, context),
        make_channel("fading", snr_db=SNR_DB, rng=SEED + 3),
        rounds,
        grouping=get_grouping_policy("label_aware", group_size=GROUP),
        eval_channel_uses=grid,
    )


def plain_loop(model: torch.nn.Module, train, epochs: int, batch_size: int, seed: int) -> float:
    """Reference: the textbook PyTorch loop on the same batches; returns seconds."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch_generator(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in iterate_batches(len(train), batch_size, generator):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(train.x[idx]), train.y[idx])
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def main() -> dict[str, float]:
    torch.set_num_threads(1)  # tiny models; the machine is shared
    seed_everything(SEED)
    train, test = load_dataset("digits", rng=SEED)
    split = split_users(train, N_USERS, "iid", auxiliary_fraction=0.2, rng=SEED + 1)
    union = train.subset(np.concatenate(split.users))
    print(f"digits: {len(train)} train ({len(union)} held by {N_USERS} users), {len(test)} test")

    model = build_classifier(train.input_shape, train.n_classes)
    init = copy.deepcopy(model.state_dict())
    central = train_centralized(model, union, epochs=CENTRAL_EPOCHS, rng=SEED)
    central_acc = evaluate(model, test)
    print(f"centralized: accuracy {central_acc:.4f} in {central.seconds:.1f} s of training")

    # loop overhead: same model, initial weights and batches, alternating, best of 3
    ours, plain = [], []
    for _ in range(3):
        model.load_state_dict(init)
        ours.append(train_centralized(model, union, epochs=10, rng=SEED).seconds)
        model.load_state_dict(init)
        plain.append(plain_loop(model, union, epochs=10, batch_size=64, seed=SEED))
    overhead = min(ours) / min(plain)
    print(
        f"loop overhead: {min(ours):.3f} s vs plain PyTorch {min(plain):.3f} s, "
        f"ratio {overhead:.3f} (target <= 1.2)"
    )

    # evaluation grid: a tenth of an OAM round of payload channel uses
    grid = max(1, run("oam", train, test, split, rounds=1).channel_uses // 10)
    oam = run("oam", train, test, split, grid=grid)
    oam_acc = oam.accuracy
    gap = 100.0 * (central_acc - oam_acc)
    print(
        f"OAM raw (K={GROUP}, fading {SNR_DB:g} dB, MMSE): accuracy {oam_acc:.4f}, "
        f"gap {gap:.2f} points (target <= 3), ratio to centralized {oam_acc / central_acc:.4f}, "
        f"{oam.slots} slots, mean MSE/symbol {oam.mean_mse:.4f}, {oam.seconds:.1f} s"
    )
    feat = run("oam", train, test, split, mode="features")
    feat_acc = feat.accuracy
    print(
        f"OAM feature (K={GROUP}): mean per-user accuracy {feat_acc:.4f}, "
        f"gap {100.0 * (central_acc - feat_acc):.2f} points, {feat.seconds:.1f} s"
    )
    ortho = run("orthogonal", train, test, split, grid=grid)
    ortho_acc = ortho.accuracy
    print(
        f"orthogonal (1 user/slot): accuracy {ortho_acc:.4f}, {ortho.slots} slots "
        f"({ortho.channel_uses / oam.channel_uses:.1f}x OAM's channel uses)"
    )
    smix = run("server_mixup", train, test, split, mixing="dirichlet", grid=grid)
    smix_acc = smix.accuracy
    print(f"server mixup (K={GROUP}, Dirichlet(1)): accuracy {smix_acc:.4f}, {smix.slots} slots")
    to_target = {
        name: channel_uses_to_reach(result.evaluations, TARGET)
        for name, result in (("oam", oam), ("orthogonal", ortho), ("server_mixup", smix))
    }
    print(f"payload channel uses to {TARGET:.0%} accuracy (evaluated every {grid}):")
    for name, uses in to_target.items():
        ratio = f", {uses / to_target['oam']:.2f}x OAM" if uses and to_target["oam"] else ""
        print(f"  {name:13s} {uses if uses is not None else 'not reached'}{ratio}")

    figures = {
        "centralized_accuracy": round(central_acc, 4),
        "centralized_train_seconds": round(central.seconds, 2),
        "oam_accuracy": round(oam_acc, 4),
        "oam_gap_points": round(gap, 2),
        "oam_feature_accuracy": round(feat_acc, 4),
        "oam_feature_gap_points": round(100.0 * (central_acc - feat_acc), 2),
        "orthogonal_accuracy": round(ortho_acc, 4),
        "server_mixup_accuracy": round(smix_acc, 4),
        "oam_channel_uses": int(oam.channel_uses),
        "orthogonal_channel_uses": int(ortho.channel_uses),
        "oam_channel_uses_to_target": to_target["oam"],
        "orthogonal_channel_uses_to_target": to_target["orthogonal"],
        "server_mixup_channel_uses_to_target": to_target["server_mixup"],
        "oam_mse_db": round(10.0 * float(np.log10(max(oam.mean_mse, 1e-12))), 2),
        "loop_overhead_ratio": round(overhead, 3),
    }
    # the attack figures of the same issue (model inversion, label inference, chance levels)
    from learning_privacy import main as privacy_main  # sibling script in benchmarks/

    print("\n--- privacy: attacks on unmixed and OTA-mixed payloads ---")
    figures.update(privacy_main())
    print_figures(figures)
    return figures


if __name__ == "__main__":
    main()
