"""Benchmark of membership inference against defences (learning.membership, learning.defences).

Setting (``experiments/membership.toml``, seeded): scikit-learn's digits; the target
trains on a small member set (300 images) for many epochs (an MLP that reaches 100%
training accuracy) - a setting where membership leaks. As many non-members are drawn,
disjoint; the rest of the training split is the attacker's population; the test split
gives the accuracy. For each defence (none, static mixup, AdaMixup, over-the-air mixup
as the run trains it, DP-SGD through Opacus) the target is trained and audited by every
attack; the attacker's shadow models follow the defence's recipe (offline shadows on
population data only, online shadows on random halves of the challenge set).

Prints, per defence and attack: test accuracy, AUC, TPR at 0.1% and 1% FPR (each with
its chance level: 0.5, 0.001, 0.01) and time (scoring plus training of the shadow
families the attack uses). Then the undefended LiRA re-scored with more or fewer shadow
models, the targets with their ratio to the figure, plots under
``runs/benchmarks/membership/`` (log-log ROC per defence, privacy vs accuracy), and one
JSON line.

Targets (issue 12): undefended strongest attack AUC >= 0.7 and TPR at 0.1% FPR >= 10x
the FPR; AdaMixup AUC <= 0.55 with an accuracy drop <= 2 points.

Run: ``nice -n 10 .venv/bin/python benchmarks/membership.py [EXPERIMENT.toml]``.
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures_line import print_figures  # noqa: E402

from learning.data import load_dataset  # noqa: E402
from learning.defences import DpSgd, TrainSettings, get_defence  # noqa: E402
from learning.membership import (  # noqa: E402
    AuditSettings,
    ShadowRecipe,
    audit_membership,
    get_membership_attack,
    membership_split,
    plot_privacy_accuracy,
    train_family,
)
from learning.models import build_classifier  # noqa: E402
from learning.training import evaluate  # noqa: E402
from phy.rng import spawn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXPERIMENT = ROOT / "experiments" / "membership.toml"
OUT_DIR = ROOT / "runs" / "benchmarks" / "membership"
FIELDS = {
    "setting": {"seed", "members", "arch", "feature_dim", "epochs", "batch_size", "learning_rate"},
    "audit": {
        "shadows",
        "shadow_sweep",
        "attacks",
        "defences",
        "label_only_queries",
        "label_only_noise",
    },
}


def load(path: Path) -> dict[str, Any]:
    """Read the experiment file; unknown or missing fields exit 2 naming the field."""
    raw = tomllib.loads(path.read_text())
    for section, names in FIELDS.items():
        body = raw.get(section, {})
        for name in set(body) - names:
            sys.exit(f"{path}: {section}.{name}: unknown field; allowed: {sorted(names)}")
        for name in names - set(body):
            sys.exit(f"{path}: {section}.{name}: missing")
    for name in raw["audit"]["defences"]:
        if name not in raw.get("defences", {}):
            sys.exit(f"{path}: defences.{name}: missing section for a selected defence")
    return raw


def fmt(figures: dict[str, float], name: str) -> str:
    return f"{figures[name]:.3f} ({figures[name + '_chance']:.3f})"


def main(path: Path = DEFAULT_EXPERIMENT) -> dict[str, Any]:
    started = time.perf_counter()
    torch.set_num_threads(1)
    exp = load(path)
    setting, audit_cfg = exp["setting"], exp["audit"]
    data_rng, split_rng, *defence_rngs = spawn(setting["seed"], 2 + len(audit_cfg["defences"]))
    train, test = load_dataset("digits", rng=data_rng)
    split = membership_split(len(train), setting["members"], rng=split_rng)
    members, non_members = train.subset(split.members), train.subset(split.non_members)
    population = train.subset(split.population)
    settings = TrainSettings(
        epochs=setting["epochs"], batch_size=setting["batch_size"], lr=setting["learning_rate"]
    )

    def factory() -> torch.nn.Module:
        return build_classifier(
            train.input_shape, train.n_classes, setting["arch"], setting["feature_dim"]
        )

    audit_settings = AuditSettings(
        attacks=tuple(audit_cfg["attacks"]),
        n_shadows=audit_cfg["shadows"],
        label_only_queries=audit_cfg["label_only_queries"],
        label_only_noise=audit_cfg["label_only_noise"],
    )
    print(
        f"digits: {len(members)} members, {len(non_members)} non-members, "
        f"{len(population)} population, {len(test)} test; {settings.epochs} epochs; "
        f"{audit_settings.n_shadows} shadow models per family"
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name, rng in zip(audit_cfg["defences"], defence_rngs, strict=True):
        target_rng, audit_rng = spawn(rng, 2)
        defence = get_defence(name, **exp["defences"][name])
        t0 = time.perf_counter()
        model = defence.train_target(
            factory, train.x, train.y, split.members, train.n_classes, settings, target_rng
        )
        train_seconds = time.perf_counter() - t0
        accuracy = evaluate(model, test)
        audit = audit_membership(
            model,
            members,
            non_members,
            population,
            ShadowRecipe(factory, defence, settings, train.n_classes),
            audit_settings,
            rng=audit_rng,
            plot_path=OUT_DIR / f"roc_{name}.png",
            progress=lambda line, tag=name: print(f"  [{tag}] {line}", flush=True),
        )
        epsilon = defence.spent_epsilon if isinstance(defence, DpSgd) else None
        results[name] = {
            "defence": defence.describe(),
            "accuracy": accuracy,
            "train_accuracy": evaluate(model, members),
            "train_seconds": train_seconds,
            "epsilon": epsilon,
            "audit": audit,
            "model": model,
        }
        print(
            f"\n{name}: test accuracy {accuracy:.3f}, train accuracy "
            f"{results[name]['train_accuracy']:.3f}, target trained in {train_seconds:.1f} s"
            + (f", epsilon {epsilon:.2f} at delta {defence.delta:g}" if epsilon else "")
        )
        print(
            f"  {'attack':18s} {'test acc':>8s} {'AUC (chance)':>14s} "
            f"{'TPR@0.1%FPR (chance)':>21s} {'TPR@1%FPR (chance)':>19s} {'time s':>7s}"
        )
        for attack, fig in audit.figures.items():
            families = get_membership_attack(attack).shadow_families
            seconds = fig["seconds"] + sum(audit.shadow_seconds.get(f, 0.0) for f in families)
            print(
                f"  {attack:18s} {accuracy:8.3f} {fmt(fig, 'auc'):>14s} "
                f"{fmt(fig, 'tpr_at_0_1pct_fpr'):>21s} {fmt(fig, 'tpr_at_1pct_fpr'):>19s} "
                f"{seconds:7.1f}"
            )
        print(
            f"  strongest: {audit.best_attack} (AUC {audit.figures[audit.best_attack]['auc']:.3f});"
            f" smallest FPR the {audit.n_non_members} non-members resolve: "
            f"{audit.figures[audit.best_attack]['min_fpr']:.4f}"
        )

    sweep = shadow_sweep(results, audit_cfg, members, non_members, population, settings, factory)
    figures = headline(results, sweep)
    plot_privacy_accuracy(
        {name: (r["accuracy"], best(results, name)) for name, r in results.items()},
        OUT_DIR / "privacy_accuracy.png",
        title="membership inference: strongest attack vs test accuracy",
    )
    report_targets(figures)
    if "none" in results:
        audit = results["none"]["audit"]
        count = sum(family.n_models for family in audit.shadows.values())
        print(
            f"LiRA at the default size: {count} shadow models ({audit_settings.n_shadows} "
            f"per family) trained in {sum(audit.shadow_seconds.values()):.0f} s"
        )
    print(f"total {time.perf_counter() - started:.0f} s; plots: {OUT_DIR}")
    print_figures(figures)
    return figures


def shadow_sweep(results, audit_cfg, members, non_members, population, settings, factory):
    """Undefended LiRA (offline and online) re-scored with each number of shadow models
    in ``shadow_sweep``: fewer models are the first ones of the audit's families; more
    are trained once at the largest size (same recipe, own seed)."""
    if "none" not in results:
        return {}
    audit = results["none"]["audit"]
    sizes = sorted(set(audit_cfg["shadow_sweep"]))
    largest = max(sizes)
    families = dict(audit.shadows)
    x = torch.cat([members.x, non_members.x])
    y = torch.cat([members.y, non_members.y])
    recipe = ShadowRecipe(factory, get_defence("none"), settings, members.n_classes)
    for kind in ("offline", "online"):
        if kind in families and families[kind].n_models < largest:
            print(f"  [sweep] training {largest} {kind} shadow models ...", flush=True)
            families[kind] = train_family(
                kind, recipe, largest, x, y, population.x, population.y, rng=spawn(7, 1)[0]
            )
    lira = tuple(a for a in ("lira_offline", "lira_online") if a.split("_")[1] in families)
    if not lira:
        return {}
    out = {}
    print("\nundefended LiRA vs shadow models per family")
    print(f"  {'shadows':>7s} {'attack':13s} {'AUC':>6s} {'TPR@0.1%':>9s} {'TPR@1%':>7s}")
    for size in sizes:
        subset = {k: f.first(size) for k, f in families.items()}
        sized = audit_membership(
            results["none"]["model"],
            members,
            non_members,
            population,
            None,
            AuditSettings(attacks=lira, n_shadows=max(size, 2)),
            rng=11,
            shadows=subset,
        )
        for attack, fig in sized.figures.items():
            out[f"{attack}_{size}"] = fig
            print(
                f"  {size:7d} {attack:13s} {fig['auc']:6.3f} {fig['tpr_at_0_1pct_fpr']:9.3f} "
                f"{fig['tpr_at_1pct_fpr']:7.3f}"
            )
    return out


def best(results: dict[str, dict[str, Any]], name: str) -> dict[str, float]:
    audit = results[name]["audit"]
    return audit.figures[audit.best_attack]


def headline(
    results: dict[str, dict[str, Any]], sweep: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """The JSON figures: fractions in [0, 1], ``_points`` in accuracy points, and
    ``dpsgd_epsilon`` (the privacy loss at ``delta``)."""
    out: dict[str, Any] = {}
    if "none" in results:
        figures = results["none"]["audit"].figures
        lira = [figures[a] for a in ("lira_online", "lira_offline") if a in figures]
        if lira:
            out["undefended_lira_tpr_at_0_1pct_fpr"] = max(f["tpr_at_0_1pct_fpr"] for f in lira)
            out["undefended_lira_tpr_at_1pct_fpr"] = max(f["tpr_at_1pct_fpr"] for f in lira)
            out["undefended_lira_auc"] = max(f["auc"] for f in lira)
        strongest = best(results, "none")
        out["undefended_best_tpr_at_0_1pct_fpr"] = strongest["tpr_at_0_1pct_fpr"]
        out["min_fpr"] = strongest["min_fpr"]
    for name, r in results.items():
        key = "undefended" if name == "none" else name
        out[f"{key}_best_auc"] = best(results, name)["auc"]
        out[f"{key}_best_tpr_at_0_1pct_fpr"] = best(results, name)["tpr_at_0_1pct_fpr"]
        out[f"{key}_best_tpr_at_1pct_fpr"] = best(results, name)["tpr_at_1pct_fpr"]
        out[f"{key}_accuracy"] = r["accuracy"]
        if name != "none" and "none" in results:
            drop = 100.0 * (results["none"]["accuracy"] - r["accuracy"])
            out[f"{key}_accuracy_drop_points"] = drop
    if "dpsgd" in results:
        out["dpsgd_epsilon"] = results["dpsgd"]["epsilon"]
    for key, fig in sweep.items():
        out[f"sweep_{key}_auc"] = fig["auc"]
        out[f"sweep_{key}_tpr_at_0_1pct_fpr"] = fig["tpr_at_0_1pct_fpr"]
    return out


def report_targets(figures: dict[str, Any]) -> None:
    """Each target of issue 12 with the measured figure and its ratio to the target."""
    wanted = [
        ("undefended strongest attack AUC >= 0.7", "undefended_best_auc", 0.7, True),
        (
            "undefended strongest TPR at 0.1% FPR >= 10 x 0.001",
            "undefended_best_tpr_at_0_1pct_fpr",
            0.01,
            True,
        ),
        ("AdaMixup strongest attack AUC <= 0.55", "adamixup_best_auc", 0.55, False),
        ("AdaMixup accuracy drop <= 2 points", "adamixup_accuracy_drop_points", 2.0, False),
    ]
    print("\ntargets")
    for label, key, target, at_least in wanted:
        if key not in figures:
            continue
        value = figures[key]
        met = value >= target if at_least else value <= target
        verdict = "met" if met else "NOT MET"
        print(f"  {label:52s} {value:8.3f}  ratio {value / target:6.2f}  {verdict}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_EXPERIMENT)
