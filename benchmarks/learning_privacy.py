"""Benchmark of the privacy attacks (learning.attacks) on digits, with chance levels.

Set-up (seeded): scikit-learn digits, 8 users (IID) after holding out 30% of each class
as the attacker's auxiliary split. The legitimate model is trained by the ``"oam"``
method as ``airmix run`` runs it (:mod:`learning.methods`, in process: feature mode,
label-aware groups of 4, Rayleigh fading at 20 dB with MMSE power control, labels mixed
over the air); its test accuracy is the utility. The eavesdropper knows the system: it
can pass its auxiliary images through the same encoder (user 0's trained encoder, used
here for every participant) or the raw codec (fitted on the auxiliary split), and
through the same channel.

Prints, each beside its chance level (same pipeline fed blind guesses / random
auxiliary images; see learning.attacks):

* model inversion against UNMIXED single-user payloads (raw samples and features), one
  user per slot through the 20 dB fading channel: attacker task accuracy (target >= 0.8)
  and its ratio to the evaluation classifier's accuracy on the true images (the ceiling);
* against OAM mixtures of 4 users (20 dB, fading, equal weights, labels mixed over the
  air with the payload) for label-identical, random and label-distinct groups: inversion
  task accuracy (matched to participants by minimum-MSE assignment), PSNR/SSIM, and
  label-inference per-user and exact-set accuracy; also both attacks from the feature
  payload alone (mixed label and weights withheld from the attacker);
* the privacy-utility report (PNG under runs/benchmarks/).

Ends with one JSON line. Run: ``.venv/bin/python benchmarks/learning_privacy.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures_line import print_figures  # noqa: E402

from learning.attacks.inversion import train_evaluation_classifier  # noqa: E402
from learning.channels import make_channel  # noqa: E402
from learning.data import load_dataset, split_users  # noqa: E402
from learning.methods import make_method  # noqa: E402
from learning.methods.base import MethodContext  # noqa: E402
from learning.methods.loop import run_method  # noqa: E402
from learning.metrics import uniform_chance  # noqa: E402
from learning.mixup import make_policy  # noqa: E402
from learning.privacy_report import (  # noqa: E402
    GROUP_SCHEMES,
    grouped_privacy_figures,
    plot_privacy_utility,
    privacy_utility_report,
)
from orchestrator.grouping import get_grouping_policy  # noqa: E402
from phy.rng import seed_everything, spawn  # noqa: E402

SEED = 2026
K = 4
SNR_DB = 20.0
N_AUX_GROUPS = 8000
N_VICTIM_GROUPS = 1000
ROUNDS = 30


def main() -> dict:
    t0 = time.perf_counter()
    root = seed_everything(SEED)
    g = spawn(root, 8)
    train, test = load_dataset("digits")
    split = split_users(train, 8, "iid", auxiliary_fraction=0.3, rng=g[0])
    aux = train.subset(split.auxiliary)
    victims = train.subset(np.concatenate(split.users))
    print(f"digits: {len(aux)} auxiliary, {len(victims)} victim, {len(test)} test images")

    model = {"mode": "features", "arch": "cnn", "feature_dim": 32, "learning_rate": 1e-3}
    context = MethodContext(
        train, test, split, {**model, "batch_size": 32}, make_policy("equal"), seed=SEED
    )
    method = make_method("oam", context)
    oam = run_method(
        method,
        make_channel("fading", snr_db=SNR_DB, rng=g[1]),
        ROUNDS,
        grouping=get_grouping_policy("label_aware", group_size=K),
    )
    legit = oam.accuracy
    print(f"legitimate OAM model (feature mode, K={K}, {SNR_DB:.0f} dB): test acc {legit:.3f}")
    encoder = oam.users[0].learner.encoder.eval()
    codec = method.codec  # fitted on the auxiliary split, as in airmix run
    evaluator = train_evaluation_classifier(aux.x.numpy(), aux.y.numpy(), aux.n_classes, rng=g[2])
    kw = {"model_inversion": {"evaluator": evaluator}}
    obs = {"channel": "ota", "snr_db": SNR_DB, "fading": "rayleigh", "policy": "mmse"}
    encoders = {"raw": codec.encode, "features": encoder}

    figures: dict[str, dict] = {}
    out: dict = {"chance": {"uniform": uniform_chance(aux.n_classes)}}
    print("\n-- model inversion, unmixed single-user payloads (one user per slot) --")
    for i, (kind, enc) in enumerate(encoders.items()):
        f = grouped_privacy_figures(
            aux,
            victims,
            enc,
            group_size=1,
            schemes=("random",),
            n_aux_groups=len(aux),
            n_victim_groups=N_VICTIM_GROUPS,
            attacks=("model_inversion",),
            attack_kwargs={"model_inversion": {"evaluator": evaluator, "epochs": 150}},
            rng=g[3 + i],
            send_label=False,
            **obs,
        )["random"]["model_inversion"]
        figures[f"unmixed_{kind}"] = {"model_inversion": f}
        acc, ceil = f["task_accuracy"], f["evaluator_accuracy"]
        print(
            f"{kind:9s}: task acc {acc:.3f} (chance {f['task_accuracy_chance']:.3f}; "
            f"ratio to evaluator on true images {acc / ceil:.3f}), PSNR {f['psnr_db']:.1f} dB "
            f"(chance {f['psnr_db_chance']:.1f}), SSIM {f['ssim']:.3f} "
            f"(chance {f['ssim_chance']:.3f})"
        )
        out[f"inversion_task_accuracy_unmixed_{kind}"] = acc
        out[f"inversion_psnr_unmixed_{kind}_db"] = f["psnr_db"]
        out["chance"][f"inversion_unmixed_{kind}"] = f["task_accuracy_chance"]

    mixed = {}
    for i, (kind, enc) in enumerate(encoders.items()):
        mixed[kind] = grouped_privacy_figures(
            aux,
            victims,
            enc,
            group_size=K,
            n_aux_groups=N_AUX_GROUPS,
            n_victim_groups=N_VICTIM_GROUPS,
            attack_kwargs=kw,
            rng=g[5 + i],
            **obs,
        )
    payload_only = grouped_privacy_figures(
        aux,
        victims,
        encoder,
        group_size=K,
        n_aux_groups=N_AUX_GROUPS,
        n_victim_groups=N_VICTIM_GROUPS,
        attack_kwargs={
            "model_inversion": {"evaluator": evaluator, "use_label": False},
            "label_inference": {"use_label": False},
        },
        rng=g[7],
        **obs,
    )

    for kind in encoders:
        print(f"\n-- OAM mixtures of {K} users, {kind} payloads, {SNR_DB:.0f} dB fading --")
        print(
            "scheme     inv task acc (chance)  PSNR dB  SSIM   label per-user (chance)  exact set"
        )
        for s in GROUP_SCHEMES:
            inv, li = mixed[kind][s]["model_inversion"], mixed[kind][s]["label_inference"]
            print(
                f"{s:10s} {inv['task_accuracy']:.3f} ({inv['task_accuracy_chance']:.3f})"
                f"          {inv['psnr_db']:5.1f}   {inv['ssim']:.3f}  "
                f"{li['per_user_accuracy']:.3f} ({li['per_user_accuracy_chance']:.3f})"
                f"            {li['exact_set_accuracy']:.3f} "
                f"({li['exact_set_accuracy_chance']:.3f})"
            )
            figures[f"{kind}_{s}"] = mixed[kind][s]
    print("\nfrom the feature payload alone (mixed label and weights not used):")
    print("scheme     inv task acc (chance)  label per-user (chance)  exact set (chance)")
    for s in GROUP_SCHEMES:
        inv, li = payload_only[s]["model_inversion"], payload_only[s]["label_inference"]
        print(
            f"{s:10s} {inv['task_accuracy']:.3f} ({inv['task_accuracy_chance']:.3f})"
            f"          {li['per_user_accuracy']:.3f} ({li['per_user_accuracy_chance']:.3f})"
            f"            {li['exact_set_accuracy']:.3f} ({li['exact_set_accuracy_chance']:.3f})"
        )

    feat = mixed["features"]
    out["inversion_task_accuracy_mixed"] = {
        s: feat[s]["model_inversion"]["task_accuracy"] for s in GROUP_SCHEMES
    }
    out["inversion_task_accuracy_mixed_raw"] = {
        s: mixed["raw"][s]["model_inversion"]["task_accuracy"] for s in GROUP_SCHEMES
    }
    out["inversion_task_accuracy_mixed_payload_only"] = {
        s: payload_only[s]["model_inversion"]["task_accuracy"] for s in GROUP_SCHEMES
    }
    out["label_inference_per_user_accuracy_payload_only"] = {
        s: payload_only[s]["label_inference"]["per_user_accuracy"] for s in GROUP_SCHEMES
    }
    out["label_inference_exact_set_accuracy_payload_only"] = {
        s: payload_only[s]["label_inference"]["exact_set_accuracy"] for s in GROUP_SCHEMES
    }
    out["label_inference_per_user_accuracy"] = {
        s: feat[s]["label_inference"]["per_user_accuracy"] for s in GROUP_SCHEMES
    }
    out["label_inference_exact_set_accuracy"] = {
        s: feat[s]["label_inference"]["exact_set_accuracy"] for s in GROUP_SCHEMES
    }
    out["chance"]["inversion_mixed"] = {
        s: feat[s]["model_inversion"]["task_accuracy_chance"] for s in GROUP_SCHEMES
    }
    out["chance"]["label_inference_per_user"] = {
        s: feat[s]["label_inference"]["per_user_accuracy_chance"] for s in GROUP_SCHEMES
    }
    out["chance"]["label_inference_exact_set"] = {
        s: feat[s]["label_inference"]["exact_set_accuracy_chance"] for s in GROUP_SCHEMES
    }
    out["legitimate_accuracy"] = legit

    order = sorted(GROUP_SCHEMES, key=lambda s: out["inversion_task_accuracy_mixed"][s])
    print(f"\nleast inversion leakage (features, with label): {order[0]}; most: {order[-1]}")
    report = privacy_utility_report(legit, figures)
    png = plot_privacy_utility(
        report, Path(__file__).resolve().parents[1] / "runs" / "benchmarks" / "learning_privacy.png"
    )
    print(f"privacy-utility plot: {png}  (total {time.perf_counter() - t0:.0f} s)")
    return out


if __name__ == "__main__":
    print_figures(main())
