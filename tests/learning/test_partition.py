"""Splitting one dataset into a server test set and clients: stratified, reproducible, skew on demand."""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime.errors import DataError, OptionsError
from fl_runtime.learning.data import MIN_ROWS_PER_CLASS
from fl_runtime.learning.partition import PartitionSpec, partition


def _rows(part, source):
    """Row identities (each synthetic row is unique) to check disjointness and coverage."""
    return {row.tobytes() for row in part.X}


def test_test_set_is_stratified_and_clients_share_out_the_rest_without_overlap(synthetic):
    test, clients = partition(synthetic, PartitionSpec(3, "iid", test_fraction=0.2, seed=1))
    assert test.n_rows == pytest.approx(0.2 * synthetic.n_rows, abs=2)
    assert test.n_positive / test.n_rows == pytest.approx(synthetic.n_positive / synthetic.n_rows, abs=0.005)
    pieces = [_rows(test, synthetic), *(_rows(c, synthetic) for c in clients)]
    assert sum(len(p) for p in pieces) == synthetic.n_rows
    assert len(set().union(*pieces)) == synthetic.n_rows


def test_iid_clients_have_equal_sizes_and_fraud_rates(synthetic):
    _, clients = partition(synthetic, PartitionSpec(3, "iid", test_fraction=0.1, seed=2))
    sizes = [c.n_rows for c in clients]
    rates = [c.n_positive / c.n_rows for c in clients]
    assert max(sizes) - min(sizes) <= 2
    assert max(rates) - min(rates) < 0.01


def test_same_seed_same_split_other_seed_other_split(synthetic):
    spec = PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.1, seed=5)
    first, second = partition(synthetic, spec), partition(synthetic, spec)
    other = partition(synthetic, PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.1, seed=6))
    for a, b in zip([first[0], *first[1]], [second[0], *second[1]]):
        np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(first[1][0].X, other[1][0].X)


def test_label_skew_gives_clients_different_fraud_rates_more_so_for_smaller_alpha(synthetic):
    def spread(alpha):
        spreads = []
        for seed in range(5):
            _, clients = partition(synthetic, PartitionSpec(3, "non-iid", "label", alpha, test_fraction=0.1, seed=seed))
            rates = [c.n_positive / c.n_rows for c in clients]
            spreads.append(max(rates) - min(rates))
        return np.mean(spreads)

    assert spread(0.5) > spread(5.0) > spread(100.0)
    assert spread(0.5) > 0.1


def test_size_skew_gives_clients_different_sizes_but_similar_fraud_rates(synthetic):
    _, clients = partition(synthetic, PartitionSpec(3, "non-iid", "size", 0.5, test_fraction=0.1, seed=3))
    sizes = sorted(c.n_rows for c in clients)
    rates = [c.n_positive / c.n_rows for c in clients]
    assert sizes[-1] > 2 * sizes[0]
    assert max(rates) - min(rates) < 0.03


def test_every_client_stays_trainable(synthetic):
    for seed in range(10):
        _, clients = partition(synthetic, PartitionSpec(4, "non-iid", "label", 0.3, test_fraction=0.1, seed=seed))
        for client in clients:
            assert min(client.n_positive, client.n_rows - client.n_positive) >= MIN_ROWS_PER_CLASS


def test_a_split_that_cannot_give_each_client_enough_rows_is_refused(synthetic):
    with pytest.raises(DataError, match="cannot deal .* rows .* to 40 clients"):
        partition(synthetic.subset(range(1000)), PartitionSpec(40, "iid", test_fraction=0.1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_clients": 0}, "--clients must be at least 1"),
        ({"n_clients": 3, "partition": "random"}, "--partition must be one of iid, non-iid"),
        ({"n_clients": 3, "skew": "feature"}, "--skew must be one of label, size"),
        ({"n_clients": 3, "alpha": 0}, "--alpha must be positive"),
        ({"n_clients": 3, "test_fraction": 1.0}, "--test-fraction must be between 0 and 1"),
    ],
)
def test_invalid_partition_settings_name_the_flag(kwargs, message):
    with pytest.raises(OptionsError, match=message):
        PartitionSpec(**kwargs)


def test_size_and_label_skew_gives_clients_different_sizes_and_different_fraud_rates_reproducibly(synthetic):
    spec = PartitionSpec(3, "non-iid", "size-label", 1.0, test_fraction=0.1, seed=0)
    _, clients = partition(synthetic, spec)
    _, again = partition(synthetic, spec)
    assert [c.n_rows for c in clients] == [c.n_rows for c in again]
    np.testing.assert_array_equal(clients[0].X, again[0].X)
    # over seeds: sizes spread like size skew, fraud rates like label skew, neither is the other
    size_ratios, rate_ratios = [], []
    for seed in range(5):
        _, parts = partition(synthetic, PartitionSpec(3, "non-iid", "size-label", 1.0, test_fraction=0.1, seed=seed))
        sizes = [c.n_rows for c in parts]
        rates = [c.n_positive / c.n_rows for c in parts]
        size_ratios.append(max(sizes) / min(sizes))
        rate_ratios.append(max(rates) / min(rates))
        _, label_only = partition(synthetic, PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.1, seed=seed))
        assert sizes != [c.n_rows for c in label_only]
    assert np.median(size_ratios) > 2 and np.median(rate_ratios) > 2
