"""User grouping for over-the-air mixup: which users transmit together in one slot.

Policies (name-keyed in :data:`GROUPING_POLICIES`, built by :func:`get_grouping_policy`):

* ``"label_aware"`` -- SIMix's label-aware grouping (Secure and Efficient Model Training
  Framework for Multiuser Semantic Communications via Over-the-Air Mixup, IEEE 2026,
  doc. 11406198): users form a graph weighted by the similarity of their label
  distributions and an *extended max-clique* search partitions all users into groups
  whose intra-group label similarity is minimal, so each over-the-air mixup mixes
  different classes (harder model inversion and label inference). The paper's
  abstract names the objective and the max-clique approach; the bounded procedure
  below is ours (see :class:`LabelAwareGrouping`).
* ``"label_identical"`` -- the adversarial counterpart: groups whose label
  distributions are as *alike* as possible (same search on ``1 - similarity``), so every
  mixup mixes the same classes; the privacy baseline SIMix compares against.
* ``"random"`` -- a seeded random partition (baseline).
* ``"orthogonal"`` -- one user per slot (no mixing; the channel-use baseline).

Conventions: users are identified by ids (str or int); every policy returns a list of
groups (lists of ids), each group sorted and the groups ordered by their first member.
Ties are broken by user id order (ids are sorted first) and by the seeded ``rng``.
Group sizes: ``ceil(n / group_size)`` groups; with ``remainder="balanced"`` (default)
their sizes differ by at most one (9 users in groups of 4 -> 3, 3, 3: nobody is left
alone and unmixed), with ``remainder="last_smaller"`` all groups have ``group_size``
users except the last (9 -> 4, 4, 1). Drop-outs: call :meth:`GroupingPolicy.regroup`
(or :meth:`GroupingPolicy.group` on the remaining users).
"""

from __future__ import annotations

import functools
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from typing import ClassVar

import networkx as nx
import numpy as np

from phy.registry import Registry
from phy.rng import RngLike, make_rng

UserId = Hashable
SIMILARITY_METRICS = ("cosine", "overlap")
REMAINDER_MODES = ("balanced", "last_smaller")
#: similarities at or below this count as zero (an edge of the dissimilarity graph)
ZERO_TOL = 1e-9


# --------------------------------------------------------------------------- similarity


def label_histograms(
    labels_by_user: Mapping[UserId, Sequence[int] | np.ndarray], n_classes: int
) -> dict[UserId, np.ndarray]:
    """Per-user label counts: user id -> int array (n_classes,), from integer labels."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    out = {}
    for uid, labels in labels_by_user.items():
        arr = np.asarray(labels)
        if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"labels of user {uid!r} must be integers in [0, {n_classes})")
        out[uid] = np.bincount(arr.astype(np.int64).ravel(), minlength=n_classes)
    return out


def similarity_matrix(histograms: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Pairwise label-distribution similarity.

    Args:
        histograms: (n_users, n_classes) non-negative counts or frequencies.
        metric: "cosine" (cosine of the count vectors) or "overlap" (histogram
            intersection of the normalised distributions, sum_c min(p_ic, p_jc)).

    Returns:
        (n_users, n_users) float64 matrix in [0, 1], symmetric, zero diagonal. A user
        with an all-zero histogram has similarity 0 to everyone.
    """
    h = np.asarray(histograms, dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"histograms must be (n_users, n_classes), got shape {h.shape}")
    if not np.all(np.isfinite(h)) or np.any(h < 0):
        raise ValueError("histograms must be finite and non-negative")
    if metric == "cosine":
        norms = np.linalg.norm(h, axis=1)
        unit = np.divide(h, norms[:, None], out=np.zeros_like(h), where=norms[:, None] > 0)
        s = unit @ unit.T
    elif metric == "overlap":
        totals = h.sum(axis=1)
        p = np.divide(h, totals[:, None], out=np.zeros_like(h), where=totals[:, None] > 0)
        s = np.zeros((h.shape[0], h.shape[0]))
        for c in range(h.shape[1]):  # O(n^2) memory, not O(n^2 C)
            s += np.minimum(p[:, c, None], p[None, :, c])
    else:
        raise ValueError(f"metric must be one of {SIMILARITY_METRICS}, got {metric!r}")
    s = np.clip((s + s.T) / 2, 0.0, 1.0)
    np.fill_diagonal(s, 0.0)
    return s


def similarity_graph(user_ids: Sequence[UserId], similarity: np.ndarray) -> nx.Graph:
    """A networkx graph over users; edge ``weight`` = similarity (edges only where > 0)."""
    s = np.asarray(similarity)
    if s.shape != (len(user_ids), len(user_ids)):
        raise ValueError(f"similarity must be ({len(user_ids)}, {len(user_ids)}), got {s.shape}")
    g = nx.Graph()
    g.add_nodes_from(user_ids)
    iu, ju = np.nonzero(np.triu(s, 1) > ZERO_TOL)
    g.add_weighted_edges_from(
        (user_ids[i], user_ids[j], float(s[i, j])) for i, j in zip(iu, ju, strict=True)
    )
    return g


def group_sizes(n_users: int, group_size: int, remainder: str = "balanced") -> list[int]:
    """Sizes of the ``ceil(n_users / group_size)`` groups, largest first (see module doc)."""
    if n_users < 0 or group_size < 1:
        raise ValueError(f"need n_users >= 0 and group_size >= 1, got {n_users}, {group_size}")
    if remainder not in REMAINDER_MODES:
        raise ValueError(f"remainder must be one of {REMAINDER_MODES}, got {remainder!r}")
    if n_users == 0:
        return []
    k = math.ceil(n_users / group_size)
    if remainder == "last_smaller":
        return [group_size] * (n_users // group_size) + (
            [n_users % group_size] if n_users % group_size else []
        )
    base, extra = divmod(n_users, k)
    return [base + 1] * extra + [base] * (k - extra)


def total_intra_similarity(groups: Sequence[Sequence[int]], similarity: np.ndarray) -> float:
    """Sum over groups of the similarity of every pair inside the group (indices)."""
    s = np.asarray(similarity)
    return float(sum(s[np.ix_(g, g)].sum() / 2 for g in groups if len(g) > 1))


def optimal_partition(
    similarity: np.ndarray, sizes: Sequence[int]
) -> tuple[float, list[list[int]]]:
    """Exhaustive minimum of :func:`total_intra_similarity` over partitions with ``sizes``.

    Branch and bound over set partitions; exponential, so limited to 16 users.
    Returns (minimum total similarity, groups as index lists).
    """
    s = np.asarray(similarity, dtype=np.float64)
    n = s.shape[0]
    if sum(sizes) != n:
        raise ValueError(f"sizes {list(sizes)} do not add up to {n} users")
    if n > 16:
        raise ValueError(f"exhaustive search is limited to 16 users, got {n}")
    best: list = [math.inf, []]

    def rec(remaining: list[int], sizes_left: list[int], cost: float, acc: list) -> None:
        if cost >= best[0] - 1e-12:
            return
        if not remaining:
            best[0], best[1] = cost, [list(g) for g in acc]
            return
        first, rest = remaining[0], remaining[1:]
        for size in sorted(set(sizes_left), reverse=True):
            left = list(sizes_left)
            left.remove(size)
            for others in itertools.combinations(rest, size - 1):
                group = (first, *others)
                c = s[np.ix_(group, group)].sum() / 2
                rec([u for u in rest if u not in others], left, cost + c, [*acc, group])

    rec(list(range(n)), list(sizes), 0.0, [])
    return float(best[0]), best[1]


# --------------------------------------------------------------------------- policies


class GroupingPolicy(ABC):
    """Partition users into transmission groups.

    Args:
        group_size: target users per group (>= 1).
        remainder: "balanced" or "last_smaller" (see module doc).
    """

    name: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False

    def __init__(self, group_size: int = 4, remainder: str = "balanced") -> None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
        if remainder not in REMAINDER_MODES:
            raise ValueError(f"remainder must be one of {REMAINDER_MODES}, got {remainder!r}")
        self.group_size = group_size
        self.remainder = remainder

    def group(
        self,
        user_ids: Sequence[UserId],
        *,
        label_histograms: Mapping[UserId, Sequence[float] | np.ndarray] | None = None,
        rng: RngLike = None,
    ) -> list[list[UserId]]:
        """Partition ``user_ids`` (unique) into groups.

        Args:
            user_ids: the users to schedule.
            label_histograms: user id -> label counts (n_classes,), for label-aware
                policies (may hold extra users, e.g. ones that dropped out).
            rng: seed or Generator for randomised choices.
        """
        ids = _sorted_ids(user_ids)
        if not ids:
            return []
        hist = None
        if self.needs_labels:
            if label_histograms is None:
                raise ValueError(f"policy {self.name!r} needs label_histograms")
            missing = [u for u in ids if u not in label_histograms]
            if missing:
                raise ValueError(f"label_histograms lack users {missing[:5]}")
            rows = [np.asarray(label_histograms[u], dtype=np.float64).ravel() for u in ids]
            if len({r.shape for r in rows}) != 1:
                raise ValueError("all label histograms must have the same number of classes")
            hist = np.stack(rows)
        sizes = group_sizes(len(ids), self.group_size, self.remainder)
        parts = self._partition(len(ids), sizes, hist, make_rng(rng))
        if sorted(i for g in parts for i in g) != list(range(len(ids))):
            raise RuntimeError(f"{self.name}: partition is not a partition")  # pragma: no cover
        groups = [sorted(g) for g in parts if g]
        groups.sort(key=lambda g: g[0])
        return [[ids[i] for i in g] for g in groups]

    def regroup(
        self,
        groups: Sequence[Sequence[UserId]],
        dropped: Sequence[UserId],
        *,
        label_histograms: Mapping[UserId, Sequence[float] | np.ndarray] | None = None,
        rng: RngLike = None,
    ) -> list[list[UserId]]:
        """Group the users of ``groups`` that are not in ``dropped`` anew."""
        gone = set(dropped)
        remaining = [u for g in groups for u in g if u not in gone]
        return self.group(remaining, label_histograms=label_histograms, rng=rng)

    @abstractmethod
    def _partition(
        self, n: int, sizes: list[int], histograms: np.ndarray | None, rng: np.random.Generator
    ) -> list[list[int]]:
        """Index groups (of 0..n-1, in sorted-id order) with the given sizes."""


def _sorted_ids(user_ids: Sequence[UserId]) -> list[UserId]:
    ids = list(user_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("user_ids must be unique")
    try:
        return sorted(ids)
    except TypeError:
        raise ValueError("user_ids must be mutually comparable (all str or all int)") from None


class RandomGrouping(GroupingPolicy):
    """Uniformly random partition into groups of the configured sizes (seeded)."""

    name = "random"

    def _partition(self, n, sizes, histograms, rng):
        order = rng.permutation(n)
        bounds = np.cumsum([0, *sizes])
        return [order[a:b].tolist() for a, b in itertools.pairwise(bounds)]


class OrthogonalGrouping(GroupingPolicy):
    """One user per group (orthogonal slots, no over-the-air mixing)."""

    name = "orthogonal"

    def __init__(self, group_size: int = 1, remainder: str = "balanced") -> None:
        if group_size != 1:
            raise ValueError(f"orthogonal grouping has group_size 1, got {group_size}")
        super().__init__(1, remainder)

    def _partition(self, n, sizes, histograms, rng):
        return [[i] for i in range(n)]


class LabelAwareGrouping(GroupingPolicy):
    """SIMix label-aware grouping by a bounded, extended max-clique search.

    Objective: minimise the total intra-group label similarity
    ``sum_groups sum_{i<j in group} S_ij`` (:func:`similarity_matrix`).

    Procedure (``n`` users, groups of ``g``, pool size ``P``):

    1. *Peel* groups one at a time, largest size first. Seed = the remaining user with
       the largest similarity to all remaining users (the hardest to place; ties by id).
       Candidates = remaining users, pruned to the ``P`` best (least similar to the
       seed, then hardest). On the *dissimilarity graph* of the candidates (edge = zero
       similarity) ``networkx.max_weight_clique`` finds the largest clique around the
       seed, preferring hard users; if it has ``g - 1`` members the group is perfect
       (zero similarity). Otherwise the minimum-similarity ``(g-1)``-subset of the pool
       is found exactly when ``C(P, g-1) <= enum_limit``, else greedily.
    2. *Repair* by local search: swaps of two users between groups and moves of a user
       to a group one smaller than its own (group sizes are kept), until a sweep over
       all users improves nothing or ``max_sweeps`` sweeps.
    3. *Restart*: alternately a new peel with the seed order perturbed by ``rng`` and a
       random kick of the best solution followed by local search (iterated local
       search); keep the best. Stops early at zero similarity.

    Groups of two are edges, so for ``g == 2`` (and n <= ``matching_limit``) the exact
    optimum is a minimum-weight perfect matching (networkx blossom, O(n^3)).

    Complexity: similarity O(n^2 C); peeling O(n^2 + (n/g) (P log P + clique(P) +
    enum_limit g^2)), exponential only in the bounded pool size P; each local-search
    sweep O(n^2) time, O(n^2) memory. 1,000 users in groups of 4: about 1-2 s.

    Populations larger than ``block_size`` are cut into blocks of at most that many
    users (whole groups each, :func:`population_blocks`) and each block is grouped as
    above: time O(n block_size), memory O(block_size^2) instead of O(n^2) (10,000
    users would need an 800 MB similarity matrix). The blocks are cross-sections of the
    population (users sorted by dominant label, then dealt across blocks), so every
    block holds every kind of user and the search inside it finds partners about as
    dissimilar as a search over everyone would (``benchmarks/scale.py`` and the tests
    compare both).

    Args:
        metric: "cosine" or "overlap"; pool_size: P (>= group_size); enum_limit: most
        subsets enumerated exactly per group; max_sweeps: local-search sweeps per start;
        restarts: starts (None: clip(2000 // n, 1, 16)); matching_limit: largest n solved
        by exact matching when g == 2; block_size: largest population searched as one
        (larger ones are cut into blocks, see above).
    """

    name = "label_aware"
    needs_labels = True

    def __init__(
        self,
        group_size: int = 4,
        remainder: str = "balanced",
        *,
        metric: str = "cosine",
        pool_size: int = 24,
        enum_limit: int = 2048,
        max_sweeps: int = 50,
        restarts: int | None = None,
        matching_limit: int = 128,
        block_size: int = 1000,
    ) -> None:
        super().__init__(group_size, remainder)
        if block_size < 2 * group_size:
            raise ValueError(f"block_size must be >= 2 group_size, got {block_size}")
        if metric not in SIMILARITY_METRICS:
            raise ValueError(f"metric must be one of {SIMILARITY_METRICS}, got {metric!r}")
        if pool_size < group_size or enum_limit < 1 or (restarts is not None and restarts < 1):
            raise ValueError("need pool_size >= group_size, enum_limit >= 1, restarts >= 1")
        if max_sweeps < 0:
            raise ValueError(f"max_sweeps must be >= 0, got {max_sweeps}")
        self.metric = metric
        self.pool_size = pool_size
        self.enum_limit = enum_limit
        self.max_sweeps = max_sweeps
        self.restarts = restarts
        self.matching_limit = matching_limit
        self.block_size = block_size

    #: blocks are cross-sections of the population (True) or runs of alike users (False)
    mix_blocks: ClassVar[bool] = True

    def _similarity(self, histograms: np.ndarray) -> np.ndarray:
        """The matrix whose intra-group sum the search minimises."""
        return similarity_matrix(histograms, self.metric)

    def _partition(self, n, sizes, histograms, rng):
        if n <= self.block_size:
            return self.partition_similarity(self._similarity(histograms), sizes, rng)
        groups = []
        restarts = self._restarts(n)  # as many starts as the whole population would get
        for users, block_sizes in population_blocks(
            histograms, sizes, self.block_size, mix=self.mix_blocks
        ):
            s = self._similarity(histograms[users])
            for members in self.partition_similarity(s, block_sizes, rng, restarts):
                groups.append(users[members].tolist())
        return groups

    def _restarts(self, n: int) -> int:
        return self.restarts or int(np.clip(2000 // n, 1, 16))

    def partition_similarity(
        self,
        similarity: np.ndarray,
        sizes: Sequence[int],
        rng: RngLike = None,
        restarts: int | None = None,
    ) -> list[list[int]]:
        """Partition users 0..n-1 given their (n, n) similarity matrix and group sizes
        (``restarts``: starts of the search; None: the policy's for n users)."""
        s = np.asarray(similarity, dtype=np.float64)
        n = s.shape[0]
        if s.shape != (n, n) or sum(sizes) != n or any(k < 1 for k in sizes):
            raise ValueError(f"similarity {s.shape} and sizes {list(sizes)} do not match")
        rng = make_rng(rng)
        sizes = sorted(sizes, reverse=True)
        if len(sizes) <= 1:
            return [list(range(n))] if n else []
        if sizes[0] == 2 and n <= self.matching_limit:
            return _min_weight_pairs(s)  # exact: partition into pairs = perfect matching
        best = _local_search(s, self._peel(s, sizes, None), self.max_sweeps)
        best_cost = total_intra_similarity(best, s)
        for r in range(1, restarts or self._restarts(n)):
            if best_cost <= ZERO_TOL:
                break  # cannot do better than zero
            if r % 2:  # a new construction with a perturbed seed order
                start = self._peel(s, sizes, 1.0 + 0.5 * rng.random(n))
            else:  # iterated local search: kick the best solution
                start = _perturb(best, max(2, n // 8), rng)
            groups = _local_search(s, start, self.max_sweeps)
            cost = total_intra_similarity(groups, s)
            if cost < best_cost - 1e-12:
                best_cost, best = cost, groups
        return best

    def _peel(self, s: np.ndarray, sizes: list[int], jitter: np.ndarray | None) -> list[list[int]]:
        n = s.shape[0]
        remaining = np.ones(n, dtype=bool)
        difficulty = s.sum(axis=1)  # similarity to the remaining users
        groups = []
        for size in sizes:
            rest = np.flatnonzero(remaining)
            if size >= rest.size:
                groups.append(rest.tolist())
                break
            score = difficulty[rest] * (1.0 if jitter is None else jitter[rest])
            seed = int(rest[np.argmax(score)])  # argmax: first (lowest id) among ties
            cand = rest[rest != seed]
            # prune: least similar to the seed first, then hardest, then lowest id
            order = np.lexsort((cand, -difficulty[cand], s[seed, cand]))
            pool = cand[order[: self.pool_size]]
            members = [seed, *self._best_clique(s, seed, pool, size, difficulty)]
            groups.append(members)
            remaining[members] = False
            difficulty -= s[:, members].sum(axis=1)
        return groups

    def _best_clique(
        self, s: np.ndarray, seed: int, pool: np.ndarray, size: int, difficulty: np.ndarray
    ) -> list[int]:
        need = size - 1
        if need == 0:
            return []
        # 1) max clique of the dissimilarity (zero-similarity) graph around the seed
        zero = pool[s[seed, pool] <= ZERO_TOL]
        if zero.size >= need:
            ranks = np.empty(zero.size, dtype=np.int64)
            ranks[np.lexsort((-zero, difficulty[zero]))] = np.arange(1, zero.size + 1)
            big = int(zero.size * (zero.size + 1))  # cardinality first, then difficulty
            h = nx.Graph()
            h.add_nodes_from(
                (int(u), {"w": big + int(r)}) for u, r in zip(zero, ranks, strict=True)
            )
            sub = s[np.ix_(zero, zero)]
            iu, ju = np.nonzero(np.triu(sub <= ZERO_TOL, 1))
            h.add_edges_from((int(zero[i]), int(zero[j])) for i, j in zip(iu, ju, strict=True))
            clique, _ = nx.max_weight_clique(h, weight="w")
            if len(clique) >= need:
                clique.sort(key=lambda u: (-h.nodes[u]["w"], u))
                return clique[:need]
        # 2) minimum-similarity subset: exact enumeration when small, else greedy
        if math.comb(pool.size, need) <= self.enum_limit:
            combos = _combinations(pool.size, need)
            sub = s[np.ix_(pool, pool)]
            cost = s[seed, pool][combos].sum(axis=1)
            for a, b in itertools.combinations(range(need), 2):
                cost += sub[combos[:, a], combos[:, b]]
            hard = difficulty[pool][combos].sum(axis=1)
            best = np.lexsort((-hard, cost))[0]  # min cost, then hardest users
            return pool[combos[best]].tolist()
        members = [seed]
        cost_to = s[seed, pool].copy()
        free = np.ones(pool.size, dtype=bool)
        for _ in range(need):
            idx = np.flatnonzero(free)
            pick = idx[np.lexsort((pool[idx], -difficulty[pool[idx]], cost_to[idx]))[0]]
            free[pick] = False
            members.append(int(pool[pick]))
            cost_to += s[pool[pick], pool]
        return members[1:]


@functools.lru_cache(maxsize=32)
def _combinations(n: int, k: int) -> np.ndarray:
    """Every k-subset of range(n) as rows of an int array (C(n, k), k), read-only."""
    combos = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64)
    combos.setflags(write=False)
    return combos


def population_blocks(
    histograms: np.ndarray, sizes: Sequence[int], block_size: int, *, mix: bool = True
) -> list[tuple[np.ndarray, list[int]]]:
    """Cut a population into blocks of whole groups for a block-wise search.

    Args:
        histograms: (n, n_classes) label counts of users 0..n-1.
        sizes: the group sizes of the whole partition (summing to n).
        block_size: most users per block (>= the largest group).
        mix: True: each block is a cross-section (users sorted by dominant label and its
            share, then dealt across the blocks in proportion to their sizes); False:
            each block is a run of that order (alike users together).

    Returns:
        [(user indices (int64 array), the block's group sizes)], blocks in order; every
        user in exactly one block, each block's sizes summing to its user count; as few
        blocks as fit, their user counts within one group of each other.
    """
    h = np.asarray(histograms, dtype=np.float64)
    n = h.shape[0]
    totals = h.sum(axis=1)
    share = np.divide(h.max(axis=1), totals, out=np.zeros(n), where=totals > 0)
    order = np.lexsort((np.arange(n), -share, h.argmax(axis=1)))
    n_blocks = -(-n // block_size)
    while True:  # groups dealt largest first to the emptiest block: counts within a group
        per_block: list[list[int]] = [[] for _ in range(n_blocks)]
        counts = np.zeros(n_blocks, dtype=np.int64)
        for size in sorted(sizes, reverse=True):
            b = int(np.argmin(counts))
            per_block[b].append(size)
            counts[b] += size
        if counts.max() <= block_size:
            break
        n_blocks += 1
    if not mix:
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [
            (order[a:b], sizes_b)
            for (a, b), sizes_b in zip(itertools.pairwise(bounds), per_block, strict=True)
        ]
    # deal the sorted users: each goes to the block furthest behind its share
    dealt = np.zeros(counts.size, dtype=np.int64)
    members: list[list[int]] = [[] for _ in per_block]
    for rank, user in enumerate(order):
        behind = (rank + 1) * counts / n - dealt
        behind[dealt >= counts] = -np.inf
        b = int(np.argmax(behind))
        members[b].append(int(user))
        dealt[b] += 1
    return [
        (np.array(users, dtype=np.int64), sizes_b)
        for users, sizes_b in zip(members, per_block, strict=True)
    ]


def _local_search(s: np.ndarray, groups: list[list[int]], max_sweeps: int) -> list[list[int]]:
    """Swaps and moves between groups that lower the objective; returns the new groups.

    One sweep visits every user ``u`` (in id order) and applies the best improving
    change: swapping ``u`` with a user of another group, or moving ``u`` to a group
    exactly one smaller than its own (which keeps the multiset of group sizes). O(n) per
    user, O(n^2) per sweep; sweeps stop when one changes nothing or after ``max_sweeps``.
    """
    n = s.shape[0]
    if len(groups) < 2 or max_sweeps == 0:
        return groups
    g = np.empty(n, dtype=np.int64)
    m = np.zeros((n, len(groups)))
    size = np.array([len(members) for members in groups])
    for k, members in enumerate(groups):
        g[members] = k
        m[:, k] = s[:, members].sum(axis=1)  # m[w, k] = similarity of w to group k
    idx = np.arange(n)
    for _ in range(max_sweeps):
        changed = False
        for u in range(n):
            a = g[u]
            own = m[idx, g]
            # objective change if u and v swap groups (0 within u's group)
            delta = m[:, a] - own[u] + m[u, g] - own - 2.0 * s[u]
            delta[g == a] = 0.0
            v = int(np.argmin(delta))  # first (lowest id) among equal improvements
            move = m[u] - own[u]  # objective change if u moves to group k
            move[size != size[a] - 1] = 0.0
            k = int(np.argmin(move))
            if move[k] < min(delta[v], 0.0) - 1e-12:
                m[:, a] -= s[:, u]
                m[:, k] += s[:, u]
                g[u] = k
                size[a] -= 1
                size[k] += 1
                changed = True
            elif delta[v] < -1e-12:
                b = g[v]
                m[:, a] += s[:, v] - s[:, u]
                m[:, b] += s[:, u] - s[:, v]
                g[u], g[v] = b, a
                changed = True
        if not changed:
            break
    return [np.flatnonzero(g == k).tolist() for k in range(len(groups))]


def _min_weight_pairs(s: np.ndarray) -> list[list[int]]:
    """Exact minimum-similarity partition into pairs (+ one single if n is odd).

    Groups of two are edges, so the partition is a minimum-weight perfect matching of
    the complete similarity graph (networkx blossom algorithm, O(n^3)). An odd user out
    is matched to a dummy vertex of zero similarity.
    """
    n = s.shape[0]
    h = nx.Graph()
    h.add_nodes_from(range(n + n % 2))
    iu, ju = np.triu_indices(n, 1)
    h.add_weighted_edges_from(zip(iu.tolist(), ju.tolist(), s[iu, ju].tolist(), strict=True))
    if n % 2:
        h.add_weighted_edges_from((i, n, 0.0) for i in range(n))
    pairs = nx.min_weight_matching(h)
    groups = [sorted(p) for p in pairs]
    groups = [[u for u in p if u < n] for p in groups]
    matched = {u for p in groups for u in p}
    groups += [[u] for u in range(n) if u not in matched]  # (only without a dummy partner)
    return sorted(groups)


def _perturb(groups: list[list[int]], n_swaps: int, rng: np.random.Generator) -> list[list[int]]:
    """``groups`` with ``n_swaps`` random swaps of two users of different groups."""
    groups = [list(members) for members in groups]
    for _ in range(n_swaps):
        a, b = rng.choice(len(groups), size=2, replace=False)
        i, j = rng.integers(len(groups[a])), rng.integers(len(groups[b]))
        groups[a][i], groups[b][j] = groups[b][j], groups[a][i]
    return groups


class LabelIdenticalGrouping(LabelAwareGrouping):
    """Groups of users whose label distributions are as *alike* as possible.

    The adversarial counterpart of :class:`~orchestrator.grouping.LabelAwareGrouping`
    (same search, same group sizes) run on the dissimilarity ``1 - S``: minimising the
    total intra-group dissimilarity maximises the intra-group similarity (the number of
    pairs is fixed by the group sizes), so each mixup mixes the same classes.
    """

    name = "label_identical"
    mix_blocks = False  # alike users share a block

    def _similarity(self, histograms: np.ndarray) -> np.ndarray:
        dissimilarity = 1.0 - similarity_matrix(histograms, self.metric)
        np.fill_diagonal(dissimilarity, 0.0)
        return dissimilarity


#: policy name -> class (for experiment files)
GROUPING_POLICIES: Registry[type[GroupingPolicy]] = Registry(
    "grouping policy",
    {
        cls.name: cls
        for cls in (LabelAwareGrouping, LabelIdenticalGrouping, RandomGrouping, OrthogonalGrouping)
    },
)


def get_grouping_policy(name: str, **kwargs) -> GroupingPolicy:
    """Build the policy registered as ``name`` with its keyword arguments."""
    return GROUPING_POLICIES[name](**kwargs)
