"""Benchmark of orchestrator.grouping: label-aware grouping vs. the exhaustive optimum,
vs. random grouping, and its run time against the number of users.

Instances: each user holds 20 (small) or 50 (large) labels drawn from its own
Dirichlet(alpha) class distribution over 10 classes (alpha in {0.1, 0.3, 1.0} for the
small instances, 0.3 for the large ones); similarity = cosine of label histograms.
Prints

* label-aware total intra-group similarity / exhaustive optimum on 100 small instances
  (6..12 users, groups of 2..4): mean and max (reference 1.0; target max <= 1.10),
* random grouping / optimum on the same instances (mean, where the optimum is not 0),
* grouping time (s) and label-aware / random similarity at 10, 100 and 1000 users,
  groups of 4 (target: 1,000 users "in seconds"),

and ends with one JSON line. Run: ``.venv/bin/python benchmarks/grouping.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures_line import print_figures  # noqa: E402

from orchestrator.grouping import (  # noqa: E402
    LabelAwareGrouping,
    RandomGrouping,
    group_sizes,
    optimal_partition,
    similarity_matrix,
    total_intra_similarity,
)
from phy.rng import seed_everything, spawn  # noqa: E402

N_SMALL, N_CLASSES, SIZES = 100, 10, (10, 100, 1000)


def _histograms(rng: np.random.Generator, n: int, n_labels: int, alpha: float) -> np.ndarray:
    """(n, N_CLASSES) label counts, one Dirichlet(alpha) class distribution per user."""
    p = rng.dirichlet(alpha * np.ones(N_CLASSES), size=n)
    return np.stack([rng.multinomial(n_labels, row) for row in p])


def _ratio(found: float, optimum: float) -> float:
    return 1.0 if found <= 1e-9 else found / max(optimum, 1e-12)


def main() -> dict:
    """Run the benchmark, print the figures and return them."""
    small_rng, large_rng, policy_rng = spawn(seed_everything(2026), 3)
    ratios, random_ratios = [], []
    for _ in range(N_SMALL):
        n, size = int(small_rng.integers(6, 13)), int(small_rng.integers(2, 5))
        alpha = float(small_rng.choice([0.1, 0.3, 1.0]))
        s = similarity_matrix(_histograms(small_rng, n, 20, alpha))
        sizes = group_sizes(n, size)
        optimum, _ = optimal_partition(s, sizes)
        groups = LabelAwareGrouping(size).partition_similarity(s, sizes, rng=policy_rng)
        ratios.append(_ratio(total_intra_similarity(groups, s), optimum))
        rand = RandomGrouping(size).group(list(range(n)), rng=policy_rng)
        if optimum > 1e-9:  # the ratio is undefined where a zero partition exists
            random_ratios.append(total_intra_similarity(rand, s) / optimum)
    print(f"small instances ({N_SMALL}): label-aware / optimum  mean {np.mean(ratios):.4f}"
          f"  max {np.max(ratios):.4f}  (reference 1.0, target max <= 1.10)")  # fmt: skip
    print(f"                      random / optimum       mean {np.mean(random_ratios):.4f}"
          f"  ({len(random_ratios)} instances with a non-zero optimum)")  # fmt: skip

    seconds, vs_random = {}, {}
    for n in SIZES:
        hist = _histograms(large_rng, n, 50, 0.3)
        users = [f"u{i:04d}" for i in range(n)]
        by_user = dict(zip(users, hist, strict=True))
        policy = LabelAwareGrouping(4)
        start = time.perf_counter()
        groups = policy.group(users, label_histograms=by_user, rng=policy_rng)
        seconds[str(n)] = round(time.perf_counter() - start, 4)
        s = similarity_matrix(hist)
        index = {u: i for i, u in enumerate(users)}
        la = total_intra_similarity([[index[u] for u in g] for g in groups], s)
        rand = RandomGrouping(4).group(users, rng=policy_rng)
        rd = total_intra_similarity([[index[u] for u in g] for g in rand], s)
        vs_random[str(n)] = round(la / rd, 4)
        print(f"{n:5d} users, groups of 4: {seconds[str(n)]:8.3f} s   similarity label-aware "
              f"{la:9.3f}  random {rd:9.3f}  ratio {la / rd:.3f}")  # fmt: skip
    return {
        "similarity_over_optimum_mean": round(float(np.mean(ratios)), 5),
        "similarity_over_optimum_max": round(float(np.max(ratios)), 5),
        "random_similarity_over_optimum_mean": round(float(np.mean(random_ratios)), 5),
        "grouping_seconds": seconds,
        "label_aware_over_random_similarity": vs_random,
    }


if __name__ == "__main__":
    print_figures(main())
