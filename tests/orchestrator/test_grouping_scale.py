"""Label-aware grouping of large populations: block-wise search (orchestrator.grouping)."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.grouping import (
    LabelAwareGrouping,
    LabelIdenticalGrouping,
    group_sizes,
    population_blocks,
    similarity_matrix,
    total_intra_similarity,
)


def _histograms(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(0.3 * np.ones(10), size=n)
    return np.stack([rng.multinomial(50, row) for row in p])


def _cost(histograms: np.ndarray, groups: list[list[int]]) -> float:
    return sum(similarity_matrix(histograms[g]).sum() / 2 for g in groups)


@pytest.mark.parametrize("mix", [True, False])
def test_population_blocks_cut_whole_groups(mix):
    h = _histograms(1003)
    sizes = group_sizes(1003, 4)
    blocks = population_blocks(h, sizes, 200, mix=mix)
    users = np.concatenate([u for u, _ in blocks])
    assert sorted(users.tolist()) == list(range(1003))
    assert sorted(s for _, b in blocks for s in b) == sorted(sizes)
    for u, b in blocks:
        assert u.size == sum(b) <= 200
    dominant = h.argmax(axis=1)
    kinds = [set(dominant[u].tolist()) for u, _ in blocks]
    common = {c for c in set(dominant.tolist()) if np.sum(dominant == c) >= len(blocks)}
    if mix:  # cross-sections: every block holds every dominant label common enough
        assert all(common <= k for k in kinds)
    else:  # runs of alike users: the first block holds only the first labels
        assert len(kinds[0]) < len(set(dominant.tolist()))


def test_blocked_search_close_to_whole_search_and_far_better_than_random():
    h = _histograms(800)
    hist = {i: row for i, row in enumerate(h)}
    ids = list(range(800))
    whole = LabelAwareGrouping(4, block_size=1000).group(ids, label_histograms=hist, rng=1)
    blocked = LabelAwareGrouping(4, block_size=200).group(ids, label_histograms=hist, rng=1)
    assert sorted(u for g in blocked for u in g) == ids
    assert [len(g) for g in blocked].count(4) == 200
    random = np.random.default_rng(3).permutation(800).reshape(200, 4).tolist()
    c_whole, c_blocked, c_random = _cost(h, whole), _cost(h, blocked), _cost(h, random)
    assert c_blocked <= 1.10 * c_whole
    assert c_blocked < 0.5 * c_random


def test_blocked_search_is_deterministic_and_label_identical_keeps_alike_users():
    h = _histograms(500)
    hist = {f"u{i:03d}": row for i, row in enumerate(h)}
    policy = LabelAwareGrouping(4, block_size=100)
    first = policy.group(sorted(hist), label_histograms=hist, rng=5)
    assert first == policy.group(sorted(hist), label_histograms=hist, rng=5)
    alike = LabelIdenticalGrouping(4, block_size=100)
    same = alike.group(sorted(hist), label_histograms=hist, rng=5)
    index = {u: i for i, u in enumerate(sorted(hist))}
    s = similarity_matrix(h)

    def total(groups):
        return total_intra_similarity([[index[u] for u in g] for g in groups], s)

    assert total(same) > 2 * total(first)


def test_block_size_must_hold_two_groups():
    with pytest.raises(ValueError, match="block_size"):
        LabelAwareGrouping(4, block_size=7)
