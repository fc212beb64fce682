"""Benchmark of issue 13: FedAvg on the same air, FLEP's cipher, secure aggregation and
gradient inversion, on scikit-learn's digits (8x8) and bundled photographs.

Prints:

* FedAvg, digital vs over-the-air aggregation (Rayleigh block fading, closed-form MSE-optimal
  power control, 20 dB), IID and Dirichlet(0.1) splits of 20 users, half of them per round,
  OTA groups of 5: accuracy every 5 rounds and against cumulative channel uses (digital
  counted at capacity, see learning.federated.aggregation), digital bytes; final accuracy =
  mean over 3 seeds of the mean of the last 5 rounds. Target: OTA within 2 points of digital.
* FLEP's three-layer cipher and the AEAD baselines (AES-256-GCM, ChaCha20-Poly1305) on three
  bundled images (sklearn's china and flower photographs, scikit-image's camera): entropy,
  NPCR and UACI with Wu-Noonan-Agaian critical-value tests (alpha 0.05), adjacent-pixel
  correlation (3 directions), histogram chi-square, key sensitivity, MB/s; and the classic
  chosen-plaintext attack against FLEP and against a key-only keystream control.
* Secure aggregation of 8 real FedAvg updates with 0, 1 and 2 users dropping out: max abs
  error against the float sum, bytes up and down (ratio to plain float32 uploads), time.
* Gradient inversion (cosine gradient matching + TV, labels inferred from the update) of
  FedSGD updates (one local step on 8 images per user): one user's update, the secure sum of
  8 users, and the over-the-air sum of 8; task accuracy of an independent evaluator, PSNR,
  SSIM, each with its chance level (random auxiliary images), label-matched chance (random
  auxiliary images of the inferred labels) and label-aware chance (their class means); and
  task accuracy minus each chance with a 95% Student-t interval over trials.

Ends with one JSON line. Run: ``nice -n 10 .venv/bin/python benchmarks/federated.py``
(``--only-inversion --inversion-trials 20``: the inversion section alone, more trials).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305  # noqa: E402
from figures_line import print_figures  # noqa: E402

from learning.attacks.inversion import train_evaluation_classifier  # noqa: E402
from learning.data import load_dataset, split_users  # noqa: E402
from learning.federated import cipher_quality as quality  # noqa: E402
from learning.federated.aggregation import OtaAggregator  # noqa: E402
from learning.federated.cipher import FlepCipher  # noqa: E402
from learning.federated.cipher_attack import chosen_plaintext_attack  # noqa: E402
from learning.federated.distributed_noise import noisy_share  # noqa: E402
from learning.federated.fedavg import FedAvgConfig, run_fedavg  # noqa: E402
from learning.federated.gradient_inversion import (  # noqa: E402
    InversionConfig,
    one_step_update,
    score_reconstructions,
)
from learning.federated.secagg import secure_aggregate  # noqa: E402
from learning.federated.update_audit import (  # noqa: E402
    UpdateVictims,
    reconstruct,
    score_per_user,
)
from learning.federated.updates import get_flat  # noqa: E402
from learning.models import build_classifier  # noqa: E402
from phy.rng import derive_seed, seed_everything, spawn  # noqa: E402

SEED = 2026
SNR_DB = 20.0
N_USERS = 20
ROUNDS = 40
SEEDS = 3
SPLITS = (("iid", 1.0), ("dirichlet", 0.1))
ALPHA = 0.05
INV_BATCH = 8
INV_USERS = 8
INV_TRIALS = 6
INV_LR = 0.1
#: distributed Gaussian noise on the secure sum: clip norm (about the median FedSGD update
#: norm of these batches) and noise multiplier z (learning.federated.distributed_noise)
DP_CLIP = 0.2
DP_NOISE = 0.3


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


# ----------------------------------------------------------------------------- FedAvg


def fedavg_figures(train, test, rng) -> dict:
    section(f"FedAvg: {N_USERS} users, 50% per round, OTA groups of 5, fading {SNR_DB:.0f} dB")
    out: dict = {}
    for scheme, alpha in SPLITS:
        split = split_users(train, N_USERS, scheme=scheme, alpha=alpha, rng=derive_seed(rng))
        runs: dict[str, list] = {"digital": [], "ota": []}
        for s in range(SEEDS):
            for agg in runs:
                cfg = FedAvgConfig(
                    rounds=ROUNDS, aggregation=agg, snr_db=SNR_DB, group_size=5, participation=0.5
                )
                runs[agg].append(run_fedavg(train, test, split, cfg, rng=SEED + s))
        label = f"{scheme}" + (f"({alpha})" if scheme == "dirichlet" else "")
        print(f"-- split {label}: accuracy (mean of {SEEDS} seeds) by round")
        print(f"{'round':>6} {'digital':>8} {'ota':>8} {'digital uses':>14} {'ota uses':>12}")
        for r in range(4, ROUNDS, 5):
            acc = {a: np.mean([res.records[r].accuracy for res in runs[a]]) for a in runs}
            uses = {a: runs[a][0].records[r].channel_uses for a in runs}
            print(
                f"{r + 1:>6} {acc['digital']:>8.3f} {acc['ota']:>8.3f} "
                f"{uses['digital']:>14,} {uses['ota']:>12,}"
            )
        final = {
            a: float(np.mean([np.mean([x.accuracy for x in res.records[-5:]]) for res in runs[a]]))
            for a in runs
        }
        last = {a: runs[a][0].records[-1] for a in runs}
        gap = 100 * (final["ota"] - final["digital"])
        print(
            f"final (last 5 rounds): digital {final['digital']:.4f}, OTA {final['ota']:.4f}, "
            f"OTA - digital {gap:+.2f} points (target >= -2: "
            f"{'PASS' if gap >= -2 else 'MISS'})"
        )
        print(
            f"cost of {ROUNDS} rounds: digital {last['digital'].channel_uses:,} channel uses "
            f"(at capacity), {last['digital'].digital_bytes:,} bytes; OTA "
            f"{last['ota'].channel_uses:,} channel uses "
            f"({last['digital'].channel_uses / last['ota'].channel_uses:.1f}x fewer), "
            f"{last['ota'].digital_bytes:,} bytes; OTA predicted MSE per parameter "
            f"{np.mean([r.predicted_mse for r in runs['ota'][0].records]):.3g}"
        )
        for target in (0.85, 0.9):
            reach = {
                a: next((x.channel_uses for x in runs[a][0].records if x.accuracy >= target), None)
                for a in runs
            }
            print(f"channel uses to reach {target:.2f} (seed 0): {reach}")
        key = "" if scheme == "iid" else "_dirichlet"
        out[f"digital_fedavg_accuracy{key}"] = final["digital"]
        out[f"ota_fedavg_accuracy{key}"] = final["ota"]
        out[f"ota_minus_digital{key}_points"] = gap
        out[f"ota_channel_uses_per_round{key}"] = last["ota"].channel_uses // ROUNDS
        out[f"digital_channel_uses_per_round{key}"] = last["digital"].channel_uses // ROUNDS
        out[f"digital_bytes_per_round{key}"] = last["digital"].digital_bytes // ROUNDS
    out["n_parameters"] = runs["digital"][0].n_parameters
    return out


def at_rest_figures(train, test, rng) -> dict:
    section("FedAvg with the users' images FLEP-encrypted at rest (digital, IID, seed 0)")
    split = split_users(train, N_USERS, rng=derive_seed(rng))
    out = {}
    results = {}
    for sealed in (False, True):
        cfg = FedAvgConfig(rounds=ROUNDS, participation=0.5, encrypt_at_rest=sealed)
        results[sealed] = run_fedavg(train, test, split, cfg, rng=SEED)
    for sealed, res in results.items():
        acc = float(np.mean([x.accuracy for x in res.records[-5:]]))
        print(
            f"encrypted at rest {str(sealed):>5}: accuracy (last 5 rounds) {acc:.4f}, "
            f"{res.seconds / ROUNDS * 1000:.0f} ms per round"
        )
        out["digital_fedavg_accuracy" + ("_encrypted_at_rest" if sealed else "_plain_at_rest")] = (
            acc
        )
    print(
        f"time per round with decryption / without: "
        f"{results[True].seconds / results[False].seconds:.2f}"
    )
    return out


# ----------------------------------------------------------------------------- cipher


def images() -> dict[str, np.ndarray]:
    from skimage.data import camera
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    named = {Path(f).stem: im for f, im in zip(bunch.filenames, bunch.images, strict=True)}
    return {"china": named["china"], "flower": named["flower"], "camera": camera()}


def mbps(fn, nbytes: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return nbytes / 1e6 / best


def aead_body(ct: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The first H*W*C ciphertext bytes of an AEAD, laid out as the image (tag dropped)."""
    return np.frombuffer(ct[: int(np.prod(shape))], dtype=np.uint8).reshape(shape)


def cipher_figures() -> dict:
    section("FLEP three-layer cipher vs AEAD (alpha 0.05 critical-value tests)")
    # seeded key and nonces so the figures are reproducible (generate_key/os.urandom in use)
    nonces = np.random.default_rng(SEED)
    key = nonces.bytes(32)
    flep = FlepCipher(key)
    aes, chacha = (
        AESGCM(AESGCM.generate_key(256)),
        ChaCha20Poly1305(ChaCha20Poly1305.generate_key()),
    )
    rows = []
    for name, img in images().items():
        n = img.size
        body = flep.encrypt(img, nonces.bytes(16)).body
        npcr, uaci = quality.plaintext_sensitivity(
            lambda x: flep.encrypt(x, nonces.bytes(16)).body, img, rng=1
        )
        knpcr, kuaci = quality.key_sensitivity(
            lambda k, x: FlepCipher(k).encrypt(x, b"\0" * 16).body, key, img, bit=5
        )
        # AEAD baseline: a one-pixel change with the same nonce gives a one-byte change
        # (stream cipher); fresh nonces are what make it pass, so that is what is measured
        a_body = aead_body(aes.encrypt(os.urandom(12), img.tobytes(), None), img.shape)
        a_npcr, a_uaci = quality.plaintext_sensitivity(
            lambda x: aead_body(aes.encrypt(os.urandom(12), x.tobytes(), None), x.shape), img, rng=1
        )
        ct = flep.encrypt(img)
        row = {
            "image": name,
            "shape": img.shape,
            "plain_entropy": quality.entropy(img),
            "flep_entropy": quality.entropy(body),
            "aead_entropy": quality.entropy(a_body),
            "flep_npcr": npcr,
            "flep_uaci": uaci,
            "aead_npcr": a_npcr,
            "aead_uaci": a_uaci,
            "npcr_critical": quality.npcr_critical(n, ALPHA),
            "uaci_interval": quality.uaci_critical_interval(n, ALPHA),
            "plain_corr": quality.adjacent_correlation(img, max_pairs=20000, rng=0),
            "flep_corr": quality.adjacent_correlation(body, max_pairs=20000, rng=0),
            "aead_corr": quality.adjacent_correlation(a_body, max_pairs=20000, rng=0),
            "plain_chi2": quality.histogram_chi_square(img),
            "flep_chi2": quality.histogram_chi_square(body),
            "aead_chi2": quality.histogram_chi_square(a_body),
            "key_npcr": knpcr,
            "key_uaci": kuaci,
            "flep_enc_mbps": mbps(lambda img=img: flep.encrypt(img), img.nbytes),
            "flep_dec_mbps": mbps(lambda ct=ct: flep.decrypt(ct), img.nbytes),
            "aes_gcm_mbps": mbps(
                lambda img=img: aes.encrypt(os.urandom(12), img.tobytes(), None), img.nbytes
            ),
            "chacha_mbps": mbps(
                lambda img=img: chacha.encrypt(os.urandom(12), img.tobytes(), None), img.nbytes
            ),
        }
        lo, hi = row["uaci_interval"]
        row["npcr_pass"] = row["flep_npcr"] > row["npcr_critical"]
        row["uaci_pass"] = lo < row["flep_uaci"] < hi
        rows.append(row)
        print(f"-- {name} {img.shape} ({img.nbytes:,} bytes)")
        print(
            f"entropy bits: plain {row['plain_entropy']:.4f}, FLEP {row['flep_entropy']:.4f} "
            f"(/8 = {row['flep_entropy'] / 8:.5f}), AEAD {row['aead_entropy']:.4f}"
        )
        print(
            f"NPCR: FLEP {100 * npcr:.4f}% (ideal {100 * quality.IDEAL['npcr']:.4f}%, ratio "
            f"{npcr / quality.IDEAL['npcr']:.5f}; critical {100 * row['npcr_critical']:.4f}% -> "
            f"{'PASS' if row['npcr_pass'] else 'FAIL'}), AEAD {100 * a_npcr:.4f}%"
        )
        print(
            f"UACI: FLEP {100 * uaci:.4f}% (ideal {100 * quality.IDEAL['uaci']:.4f}%, ratio "
            f"{uaci / quality.IDEAL['uaci']:.5f}; interval {100 * lo:.4f}-{100 * hi:.4f}% -> "
            f"{'PASS' if row['uaci_pass'] else 'FAIL'}), AEAD {100 * a_uaci:.4f}%"
        )
        for d in ("horizontal", "vertical", "diagonal"):
            print(
                f"correlation {d:>10}: plain {row['plain_corr'][d]:+.4f}, FLEP "
                f"{row['flep_corr'][d]:+.4f}, AEAD {row['aead_corr'][d]:+.4f} (ideal 0)"
            )
        print(
            f"chi-square (255 dof, 5% critical 293.25): plain {row['plain_chi2'][0]:.0f}, FLEP "
            f"{row['flep_chi2'][0]:.1f} (p {row['flep_chi2'][1]:.3f}), AEAD "
            f"{row['aead_chi2'][0]:.1f} (p {row['aead_chi2'][1]:.3f})"
        )
        print(
            f"key sensitivity (1 key bit flipped, same nonce): NPCR {100 * knpcr:.4f}%, "
            f"UACI {100 * kuaci:.4f}%"
        )
        print(
            f"throughput MB/s: FLEP encrypt {row['flep_enc_mbps']:.1f}, decrypt "
            f"{row['flep_dec_mbps']:.1f}; AES-256-GCM {row['aes_gcm_mbps']:.0f}, "
            f"ChaCha20-Poly1305 {row['chacha_mbps']:.0f} (FLEP / AES-GCM = "
            f"{row['flep_enc_mbps'] / row['aes_gcm_mbps']:.4f})"
        )

    section("classic chosen-plaintext attack (all-zero + one-pixel images), 8x8 target")
    target = (load_dataset("digits", rng=0)[0].x[0, 0].numpy() * 255).round().astype(np.uint8)
    cpa = chosen_plaintext_attack(lambda x: flep.encrypt(x).body, flep.encrypt(target).body, target)
    rng = np.random.default_rng(7)
    perm, stream = rng.permutation(target.size), rng.integers(0, 256, target.size, dtype=np.uint8)

    def weak(x: np.ndarray) -> np.ndarray:
        return np.bitwise_xor(x.reshape(-1)[perm], stream).reshape(x.shape)

    control = chosen_plaintext_attack(weak, weak(target), target)
    for name, res in (("FLEP", cpa), ("key-only keystream control", control)):
        print(
            f"{name}: {res.queries} queries, keystream repeat {res.keystream_repeat:.3f}, "
            f"positions located {res.located:.3f}, bytes changed per 1-pixel query "
            f"{res.mean_changed:.3f}, target pixels recovered {res.recovered:.3f} "
            f"(chance {res.chance:.4f}) -> {'BROKEN' if res.broken else 'not broken'}"
        )
    mean = {
        k: float(np.mean([r[k] for r in rows])) for k in rows[0] if isinstance(rows[0][k], float)
    }
    return {
        "flep_entropy": mean["flep_entropy"],
        "flep_npcr": mean["flep_npcr"],
        "flep_uaci": mean["flep_uaci"],
        "flep_npcr_pass_fraction": float(np.mean([r["npcr_pass"] for r in rows])),
        "flep_uaci_pass_fraction": float(np.mean([r["uaci_pass"] for r in rows])),
        "flep_key_npcr": mean["key_npcr"],
        "flep_max_abs_correlation": max(abs(v) for r in rows for v in r["flep_corr"].values()),
        "flep_chi2": float(np.mean([r["flep_chi2"][0] for r in rows])),
        "flep_mbps": mean["flep_enc_mbps"],
        "flep_decrypt_mbps": mean["flep_dec_mbps"],
        "aead_mbps": mean["aes_gcm_mbps"],
        "chacha20_poly1305_mbps": mean["chacha_mbps"],
        "aead_entropy": mean["aead_entropy"],
        "aead_npcr": mean["aead_npcr"],
        "aead_uaci": mean["aead_uaci"],
        "cpa_recovered_flep": cpa.recovered,
        "cpa_recovered_control": control.recovered,
        "n_images": len(rows),
    }


# ----------------------------------------------------------------------------- secagg


def secagg_figures(train, split, rng) -> dict:
    section("secure aggregation of 8 FedAvg updates (X25519 + ChaCha20 masks, Shamir seeds)")
    torch.manual_seed(derive_seed(rng))
    model = build_classifier(train.input_shape, train.n_classes, "mlp")
    from learning.federated.updates import local_update

    updates = np.stack(
        [local_update(model, train.subset(split.users[u]), rng=u).delta.numpy() for u in range(8)]
    )
    worst = 0.0
    out = {}
    for drops in (set(), {2}, {2, 5}):
        res = secure_aggregate(updates / 8, dropped=drops)
        err = float(
            np.max(np.abs(res.total - (updates[res.survivors] / 8).astype(np.float64).sum(0)))
        )
        worst = max(worst, err)
        print(
            f"{len(drops)} dropped {sorted(drops)}: max |error| {err:.2e} (bound "
            f"{len(res.survivors) * 2.0**-33:.1e}), upload {res.upload_bytes:,} B "
            f"({res.upload_bytes / res.plain_upload_bytes:.2f}x plain float32), download "
            f"{res.download_bytes:,} B, {1000 * res.seconds:.1f} ms ("
            + ", ".join(f"{k} {1000 * v:.1f}" for k, v in res.phase_seconds.items())
            + ")"
        )
        out[f"secagg_seconds_{len(drops)}_dropped"] = res.seconds
        out[f"secagg_upload_ratio_{len(drops)}_dropped"] = res.upload_bytes / res.plain_upload_bytes
    out["secagg_max_abs_error"] = worst
    return out


# ----------------------------------------------------------------------------- inversion


def cluster_interval(per_trial: list[float]) -> tuple[float, float]:
    """Mean and 95% Student-t half-width over trials (the users of one trial share its
    reconstructions and the same draw of images, so a trial is the independent unit)."""
    v = np.asarray(per_trial, dtype=float)
    half = (
        stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan
    )
    return float(v.mean()), float(half)


def inversion_figures(train, split, rng, n_trials: int = INV_TRIALS) -> dict:
    section(
        f"gradient inversion: FedSGD updates ({INV_BATCH} images, lr {INV_LR}), evaluator on aux"
    )
    g_eval, g_model, g_attack, g_ota = spawn(rng, 4)
    aux = train.subset(split.auxiliary)
    aux_x, aux_y = aux.x.numpy(), aux.y.numpy()
    evaluator = train_evaluation_classifier(aux_x, aux_y, 10, epochs=30, rng=g_eval)
    torch.manual_seed(derive_seed(g_model))
    model = build_classifier(train.input_shape, train.n_classes, "mlp")
    flat = get_flat(model).numpy()
    cfg = InversionConfig(iterations=300)
    views: dict[str, list[dict]] = {
        "single_update": [],
        "secure_sum": [],
        "ota_sum": [],
        "secure_sum_noised": [],
    }
    trials: dict[str, list[list[dict]]] = {v: [] for v in views}
    pooled: dict[str, list[dict]] = {"secure_sum": [], "ota_sum": [], "secure_sum_noised": []}
    # the noised view draws from its own streams: the other views' figures stay as without it
    g_noise, g_attack_noised = spawn(g_ota, 1)[0], spawn(g_attack, 1)[0]
    label_hits = []
    g_pick = spawn(g_model, 1)[0]
    for _ in range(n_trials):
        chosen = g_pick.choice(len(split.users), size=INV_USERS, replace=False)
        batches = [
            train.subset(g_pick.choice(split.users[u], size=INV_BATCH, replace=False))
            for u in chosen
        ]
        x = np.concatenate([b.x.numpy() for b in batches])
        y = np.concatenate([b.y.numpy() for b in batches])
        ups = torch.stack([one_step_update(model, b.x, b.y, INV_LR) for b in batches])
        weights = np.full(INV_USERS, 1.0 / INV_USERS)
        # view 1: each user's own update
        single = []
        for b, u in zip(batches, ups, strict=True):
            victim = UpdateVictims("single_update", u.numpy(), flat, [b.x.numpy()], [b.y.numpy()])
            labels, rec = reconstruct(model, victim, INV_LR, aux_x, cfg, g_attack)
            label_hits.append(sorted(labels.tolist()) == sorted(b.y.tolist()))
            single += score_per_user(victim, labels, rec, evaluator, aux_x, aux_y, g_attack)
        trials["single_update"].append(single)
        sums = {
            "secure_sum": secure_aggregate(ups.numpy().astype(np.float64) * weights[:, None]).total,
            "ota_sum": OtaAggregator("fading", snr_db=SNR_DB, group_size=INV_USERS, rng=g_ota)
            .aggregate(ups, weights)
            .estimate.numpy(),
            "secure_sum_noised": secure_aggregate(
                np.stack(
                    [noisy_share(u.numpy(), DP_CLIP, DP_NOISE, INV_USERS, g_noise) for u in ups]
                )
                * weights[:, None]
            ).total,
        }
        for view, observed in sums.items():
            g_view = g_attack_noised if view == "secure_sum_noised" else g_attack
            victim = UpdateVictims(
                view, observed, flat, [b.x.numpy() for b in batches], [b.y.numpy() for b in batches]
            )
            labels, rec = reconstruct(model, victim, INV_LR, aux_x, cfg, g_view)
            pooled[view].append(
                score_reconstructions(evaluator, rec, x, y, aux_x, g_view, aux_y, labels)
            )
            trials[view].append(
                score_per_user(victim, labels, rec, evaluator, aux_x, aux_y, g_view)
            )
    for view, per_trial in trials.items():
        views[view] = [score for trial in per_trial for score in trial]
    out = {}
    names = ("task_accuracy", "psnr_db", "ssim")
    print(f"label multiset inferred exactly from single updates: {np.mean(label_hits):.2f}")
    print("chance: random auxiliary images; label-aware: auxiliary class-mean images of the")
    print("labels the attacker inferred from the update (what the labels alone give away)")
    print(f"{'view':<28}" + "".join(f"{n:>14}{'chance':>8}{'label-aware':>12}" for n in names))
    rows = [(f"{v} (per user)", s) for v, s in views.items()]
    rows += [(f"{v} (pooled 64 vs 64)", s) for v, s in pooled.items()]
    for label, scores in rows:
        mean = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
        print(
            f"{label:<28}"
            + "".join(
                f"{mean[n]:>14.3f}{mean[n + '_chance']:>8.3f}{mean[n + '_label_chance']:>12.3f}"
                for n in names
            )
        )
        key = label.split()[0] + ("_pooled" if "pooled" in label else "")
        for n in names:
            # names end in _db for PSNR (the JSON convention: fractions unless _db/_points)
            stem, unit = (n[: -len("_db")], "_db") if n.endswith("_db") else (n, "")
            out[f"inversion_{stem}_{key}{unit}"] = mean[n]
            out[f"inversion_{stem}_{key}_chance{unit}"] = mean[n + "_chance"]
            out[f"inversion_{stem}_{key}_label_chance{unit}"] = mean[n + "_label_chance"]
            if n == "task_accuracy":
                out[f"inversion_{stem}_{key}_label_matched_chance"] = mean[
                    n + "_label_matched_chance"
                ]
    print(
        f"task accuracy per user against chance, 95% interval over {n_trials} trials "
        f"(a trial's {INV_USERS} users share one sum, so a trial is the independent unit):"
    )
    print(
        f"{'view':<16}{'accuracy':>16}{'- chance':>18}{'- label-matched':>18}{'- label-aware':>18}"
    )
    for view, per_trial in trials.items():
        cells = []
        for ref in ("", "_chance", "_label_matched_chance", "_label_chance"):
            diffs = [
                float(np.mean([s["task_accuracy"] - (s["task_accuracy" + ref] if ref else 0.0)
                               for s in trial]))
                for trial in per_trial
            ]  # fmt: skip
            mean, half = cluster_interval(diffs)
            cells.append(f"{mean:+.3f} ±{half:.3f}" if ref else f"{mean:.3f} ±{half:.3f}")
            tag = {"": "", "_chance": "_excess", "_label_matched_chance": "_excess_label_matched",
                   "_label_chance": "_excess_label_aware"}[ref]  # fmt: skip
            out[f"inversion_task_accuracy_{view}{tag}_ci95_points"] = 100 * half
            if ref:
                out[f"inversion_task_accuracy_{view}{tag}_points"] = 100 * mean
        print(f"{view:<18}" + "".join(f"{c:>18}" for c in cells))
    single, secure = (
        out["inversion_task_accuracy_single_update"],
        out["inversion_task_accuracy_secure_sum"],
    )
    print(
        f"single update: task accuracy {single:.3f} vs chance "
        f"{out['inversion_task_accuracy_single_update_chance']:.3f} (ratio "
        f"{single / out['inversion_task_accuracy_single_update_chance']:.2f}); secure sum of 8: "
        f"{secure:.3f} vs chance {out['inversion_task_accuracy_secure_sum_chance']:.3f} (ratio "
        f"{secure / out['inversion_task_accuracy_secure_sum_chance']:.2f})"
    )
    return out


def main(only_inversion: bool = False, trials: int = INV_TRIALS) -> dict:
    """Every section (or only gradient inversion, over ``trials`` trials: the same seeds,
    so its first trials are those of the full run)."""
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    root = seed_everything(SEED)
    g_fed, g_split, g_sec, g_inv = spawn(root, 4)
    train, test = load_dataset("digits", rng=SEED)
    figures: dict = {}
    if not only_inversion:
        figures.update(fedavg_figures(train, test, g_fed))
        figures.update(at_rest_figures(train, test, g_fed))
        figures.update(cipher_figures())
    split = split_users(train, N_USERS, auxiliary_fraction=0.3, rng=derive_seed(g_split))
    if not only_inversion:
        figures.update(secagg_figures(train, split, g_sec))
    figures.update(inversion_figures(train, split, g_inv, trials))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return final_line(figures)


#: issue-13 figures that are neither fractions nor _points/_db (units in their names' docs)
NON_FRACTIONS = (
    "flep_entropy",
    "flep_mbps",
    "aead_mbps",
    "chacha20_poly1305_mbps",
    "flep_decrypt_mbps",
    "aead_entropy",
)


def final_line(figures: dict) -> dict:
    """The JSON line: the issue's figures plus every fraction, _points and _db figure
    (counts, bytes and times are printed above, not put in the line)."""
    out = {}
    for key, value in figures.items():
        keep = key in NON_FRACTIONS or key.endswith(("_points", "_db"))
        keep = keep or (isinstance(value, float) and 0.0 <= value <= 1.0)
        if keep:
            out[key] = value
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only-inversion", action="store_true", help="run the gradient-inversion section only"
    )
    parser.add_argument("--inversion-trials", type=int, default=INV_TRIALS, metavar="N")
    arguments = parser.parse_args()
    print_figures(main(arguments.only_inversion, arguments.inversion_trials))
