"""Pairwise masks: they cancel in the members' sum, and one member's masked vector says nothing of its values."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from scipy import stats

from fl_runtime.app import masking
from fl_runtime.learning import fixed_point
from fl_runtime.learning.fixed_point import Layout, Quantity

NAMES = ("clinic-a", "insurer-b", "insurer-c", "insurer-d")
SALT = b"\x07" * 32  # the transcript hash after the key exchange


def _public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture(scope="module")
def pair_keys():
    # fixed keys: the statistical checks below see the same streams on every run (random keys would make them
    # fail by chance once in about a thousand runs)
    private = {name: X25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i, name in enumerate(NAMES)}
    return {
        me: {
            peer: masking.pair_key(private[me], _public(private[peer]), SALT, me, peer) for peer in NAMES if peer != me
        }
        for me in NAMES
    }


def test_both_members_of_a_pair_derive_the_same_key_and_other_pairs_another(pair_keys):
    assert pair_keys["clinic-a"]["insurer-b"] == pair_keys["insurer-b"]["clinic-a"]
    assert pair_keys["clinic-a"]["insurer-b"] != pair_keys["clinic-a"]["insurer-c"]


def test_the_masks_cancel_in_the_sum_of_every_members_vector(pair_keys):
    rng = np.random.default_rng(0)
    vectors = {name: rng.integers(-(2**40), 2**40, size=500).view(np.uint64) for name in NAMES}
    masked = [masking.mask(vectors[n], n, pair_keys[n], "round/3/1") for n in NAMES]
    np.testing.assert_array_equal(fixed_point.add(masked), fixed_point.add(list(vectors.values())))
    assert not any(np.array_equal(m, vectors[n]) for m, n in zip(masked, NAMES))


def test_a_rerun_with_fewer_members_masks_with_fresh_streams_that_still_cancel(pair_keys):
    vectors = {name: np.arange(100, dtype=np.uint64) for name in NAMES[:3]}
    first = masking.mask(vectors["clinic-a"], "clinic-a", pair_keys["clinic-a"], "round/3/1")
    survivors = {peer: key for peer, key in pair_keys["clinic-a"].items() if peer in NAMES[:3]}
    again = masking.mask(vectors["clinic-a"], "clinic-a", survivors, "round/3/2")
    assert not np.array_equal(first, again)  # never the same stream for two answers
    total = fixed_point.add(
        [masking.mask(vectors[n], n, {p: k for p, k in pair_keys[n].items() if p in NAMES[:3]}, "round/3/2")
         for n in NAMES[:3]]
    )  # fmt: skip
    np.testing.assert_array_equal(total, 3 * np.arange(100, dtype=np.uint64))


def test_a_curious_server_decoding_one_members_masked_vector_learns_nothing_of_its_values(pair_keys):
    """What a curious server would do with one member's vector: decode it as if it were the member's values. The
    decoded numbers must be independent of the true ones (no correlation), spread over the whole 64-bit range
    (uniform, not near the true values), and almost never inside the quantity's valid range. Each check fails
    for an unmasked or weakly masked vector."""
    layout = Layout((Quantity("gradient", 2000, 30),))
    true = np.random.default_rng(1).normal(scale=1e4, size=2000)
    vector = layout.encode({"gradient": true})
    masked = masking.mask(vector, "clinic-a", pair_keys["clinic-a"], "round/1/1")
    decoded = masked.view(np.int64).astype(np.float64) / layout.quantities[0].scale
    correlation, _ = stats.pearsonr(decoded, true)
    assert abs(correlation) < 0.1
    words = masked.astype(np.float64) / 2.0**64  # as fractions of the word's range
    assert stats.kstest(words, "uniform").pvalue > 1e-3
    in_range = np.abs(masked.view(np.int64).astype(np.float64)) <= fixed_point.LIMIT
    assert in_range.sum() <= 2  # 2^53 of 2^64 values: 1 in 2048 by chance
    # the same checks tell the unmasked vector from noise at once
    assert abs(stats.pearsonr(vector.view(np.int64).astype(np.float64), true)[0]) > 0.99
    assert stats.kstest(vector.astype(np.float64) / 2.0**64, "uniform").pvalue < 1e-6


def test_a_mask_stream_is_as_long_as_asked_and_depends_on_the_step(pair_keys):
    key = pair_keys["clinic-a"]["insurer-b"]
    assert masking.mask_stream(key, "moments/0/1", 7).shape == (7,)
    assert not np.array_equal(masking.mask_stream(key, "moments/0/1", 7), masking.mask_stream(key, "moments/0/2", 7))
    np.testing.assert_array_equal(
        masking.mask_stream(key, "moments/0/1", 7), masking.mask_stream(key, "moments/0/1", 7)
    )
