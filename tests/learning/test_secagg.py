"""Shamir secret sharing and secure aggregation (Bonawitz et al. 2017) with dropouts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from learning.federated.secagg import (
    FRACTION_BITS,
    SecAggClient,
    decode_fixed,
    encode_fixed,
    secure_aggregate,
)
from learning.federated.shamir import PRIME, Share, combine_shares, split_secret


def test_shamir_any_threshold_subset_recovers():
    secret = bytes(range(1, 33))
    shares = split_secret(secret, n=6, threshold=4)
    for subset in itertools.combinations(shares, 4):
        assert combine_shares(list(subset)) == secret
    assert combine_shares(shares) == secret  # more than the threshold works too


def test_shamir_below_threshold_reveals_a_different_value():
    secret = b"\x00" * 31 + b"\x07"
    shares = split_secret(secret, n=5, threshold=3)
    with pytest.raises(ValueError, match="length"):
        # two shares interpolate a random field element, almost surely too large
        combine_shares(shares[:2])


def test_shamir_share_serialisation_and_errors():
    shares = split_secret(b"k" * 64, n=3, threshold=2)
    assert all(Share.from_bytes(s.to_bytes()) == s for s in shares)
    assert all(s.y < PRIME for s in shares)
    with pytest.raises(ValueError, match="distinct"):
        combine_shares([shares[0], shares[0]])
    with pytest.raises(ValueError, match="threshold"):
        split_secret(b"x", n=2, threshold=3)
    with pytest.raises(ValueError, match="secret"):
        split_secret(b"x" * 65, n=2, threshold=2)


def test_fixed_point_encoding_round_trip_and_wraparound_sum():
    x = np.array([-1.5, 0.0, 3.25e-7, 1234.5])
    assert np.allclose(decode_fixed(encode_fixed(x)), x, atol=2.0 ** -(FRACTION_BITS + 1))
    total = encode_fixed(x) + encode_fixed(-2 * x)  # uint64 wraps modulo 2^64
    assert np.allclose(decode_fixed(total), -x, atol=1e-9)
    with pytest.raises(ValueError, match="NaN"):
        encode_fixed(np.array([np.nan]))


@pytest.mark.parametrize("dropped", [set(), {3}, {0, 6}])
def test_secure_sum_is_exact_with_dropouts(dropped):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.05, (8, 501))
    result = secure_aggregate(x, dropped=dropped)
    assert result.dropped == sorted(dropped)
    assert result.survivors == sorted(set(range(8)) - dropped)
    expected = x[result.survivors].sum(axis=0)
    bound = len(result.survivors) * 2.0 ** -(FRACTION_BITS + 1)
    assert np.max(np.abs(result.total - expected)) <= bound
    assert result.upload_bytes > result.plain_upload_bytes  # masks cost 64-bit words + keys


def test_too_many_dropouts_refused():
    x = np.zeros((5, 4))
    with pytest.raises(ValueError, match="threshold"):
        secure_aggregate(x, dropped={0, 1, 2})  # 2 survivors < threshold 3


def test_masked_input_reveals_nothing_alone():
    """One masked input is uniformly scrambled: decoding it is far from the user's vector,
    and removing the others' masks needs their secrets."""
    x = np.full(64, 0.25)
    clients = [SecAggClient(u) for u in range(3)]
    keys = {c.uid: c.advertise_keys() for c in clients}
    routed: dict[int, dict[int, bytes]] = {c.uid: {} for c in clients}
    for c in clients:
        for v, blob in c.share_keys(keys, threshold=2).items():
            routed[v][c.uid] = blob
    for c in clients:
        c.receive_shares(routed[c.uid])
    y = clients[0].masked_input(x)
    assert np.median(np.abs(decode_fixed(y) - x)) > 1e3
    total = sum((c.masked_input(x) for c in clients), start=np.zeros(64, np.uint64))
    # without the self masks removed the sum is still scrambled
    assert np.median(np.abs(decode_fixed(total) - 3 * x)) > 1e3


def test_tampered_share_message_refused():
    from cryptography.exceptions import InvalidTag

    clients = [SecAggClient(u) for u in range(2)]
    keys = {c.uid: c.advertise_keys() for c in clients}
    blob = clients[0].share_keys(keys, threshold=2)[1]
    clients[1].share_keys(keys, threshold=2)
    bad = bytearray(blob)
    bad[-1] ^= 1
    with pytest.raises(InvalidTag):
        clients[1].receive_shares({0: bytes(bad)})


def test_users_leaving_at_each_phase_are_left_out_or_recovered():
    """Over an exchange (as through the link): user 1 never answers the key sharing (left
    out: no one masks with it), user 4 leaves before its masked input (its masks are
    removed from the others' shares), user 6 leaves during unmasking (the others' shares
    suffice); the sum of the rest is exact and a survivor refuses to reveal both
    shares of one user."""
    from learning.federated.secagg import PHASES, secure_sum

    rng = np.random.default_rng(1)
    x = {u: rng.normal(0, 0.1, 33) for u in range(8)}
    clients = {u: SecAggClient(u) for u in x}
    leaves = {1: PHASES[1], 4: PHASES[2], 6: PHASES[3]}

    def exchange(requests):
        return {
            u: clients[u].respond(r, x[u])
            for u, r in requests.items()
            if PHASES.index(r.phase) < PHASES.index(leaves.get(u, "secagg/unmask"))
            or u not in leaves
        }

    result = secure_sum(list(x), 33, exchange)
    assert result.survivors == [0, 2, 3, 5, 6, 7] and result.dropped == [4]
    expected = sum(x[u] for u in result.survivors)
    assert np.max(np.abs(result.total - expected)) <= 6 * 2.0 ** -(FRACTION_BITS + 1)
    with pytest.raises(ValueError, match="both"):
        clients[0].unmask({0, 4}, {4})
