"""Learning-layer benchmark on scikit-learn's digits (no download).

Prints, for 8 IID users (20 % of the training set held out as the auxiliary split):

* centralized accuracy and training time (CNN trained on the union of the users' data);
* OAM accuracy: groups of 4, Rayleigh fading at 20 dB, closed-form MMSE power control
  (``phy.power.tx_rx_scaling`` through ``phy.ota_model``), raw mode (AirMixML style; the
  headline ``oam_accuracy``) and feature mode (split learning, per-user encoders);
* the gap to centralized in points (reference: centralized, target <= 3);
* the orthogonal (one user per slot) and server-side mixup baselines, with channel uses;
* the training-loop overhead of :func:`learning.training.train_centralized` against a plain
  PyTorch loop on the same model, initial weights and batches (target <= 1.2).

Ends with one JSON line. Run: ``.venv/bin/python benchmarks/learning.py``.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learning.data import load_dataset, split_users  # noqa: E402
from learning.models import build_classifier  # noqa: E402
from learning.training import (  # noqa: E402
    evaluate,
    iterate_batches,
    train_centralized,
    train_oam,
    train_orthogonal,
    train_server_mixup,
)
from phy.rng import seed_everything, torch_generator  # noqa: E402

SEED = 0
N_USERS = 8
GROUP = 4
SNR_DB = 20.0
CENTRAL_EPOCHS = 30
OAM_EPOCHS = 100


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

    common = dict(channel="fading", snr_db=SNR_DB, epochs=OAM_EPOCHS, rng=SEED + 2)
    oam = train_oam(train, split, mode="raw", group_size=GROUP, policy="equal", **common)
    oam_acc = oam.accuracy(test)
    gap = 100.0 * (central_acc - oam_acc)
    print(
        f"OAM raw (K={GROUP}, fading {SNR_DB:g} dB, MMSE): accuracy {oam_acc:.4f}, "
        f"gap {gap:.2f} points (target <= 3), ratio to centralized {oam_acc / central_acc:.4f}, "
        f"{oam.slots} slots, mean MSE/symbol {oam.mean_mse:.4f}, {oam.seconds:.1f} s"
    )
    feat = train_oam(train, split, mode="feature", group_size=GROUP, policy="equal", **common)
    feat_acc = feat.accuracy(test)
    print(
        f"OAM feature (K={GROUP}): mean per-user accuracy {feat_acc:.4f}, "
        f"gap {100.0 * (central_acc - feat_acc):.2f} points, {feat.seconds:.1f} s"
    )
    ortho = train_orthogonal(train, split, mode="raw", **common)
    ortho_acc = ortho.accuracy(test)
    print(
        f"orthogonal (1 user/slot): accuracy {ortho_acc:.4f}, {ortho.slots} slots "
        f"({ortho.slots / oam.slots:.1f}x OAM's channel uses)"
    )
    smix = train_server_mixup(train, split, mode="raw", **common)
    smix_acc = smix.accuracy(test)
    print(f"server mixup (K=2, Beta(1,1)): accuracy {smix_acc:.4f}, {smix.slots} slots")

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
        "oam_mse_db": round(10.0 * float(np.log10(max(oam.mean_mse, 1e-12))), 2),
        "loop_overhead_ratio": round(overhead, 3),
    }
    # the attack figures of the same issue (model inversion, label inference, chance levels)
    from learning_privacy import main as privacy_main  # sibling script in benchmarks/

    print("\n--- privacy: attacks on unmixed and OTA-mixed payloads ---")
    figures.update(privacy_main())
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
