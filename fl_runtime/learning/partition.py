"""Split one labelled dataset into a server-only test set and N client datasets.

Used by ``prepare-data`` to rehearse a federation from one CSV: the test set is a stratified sample
that only the server will hold; the rest is dealt to clients either IID (stratified, equal sizes) or
non-IID with a controllable skew, drawn from a Dirichlet distribution as is usual in the FL literature:

- label skew: each class is spread over the clients in Dirichlet(alpha) proportions, so clients differ
  in their fraud rate;
- size skew: client sizes follow Dirichlet(alpha) proportions, each client stratified inside;
- size and label skew at once (``size-label``): client sizes s follow Dirichlet(alpha) proportions (the
  negatives, 91 % of the rows, are dealt in them) and each client's fraud rate is scaled by its own factor
  r, N * Dirichlet(alpha) for N clients (the positives are dealt in proportions s * r): a big client is
  big in both classes, and clients' fraud rates differ independently of their sizes. (Label skew alone
  deals the classes in two unrelated draws, so a client's size there is an accident of its negatives'.)

Smaller alpha means stronger skew. Every client must remain trainable (``data.check_trainable``);
draws that would starve a client are redrawn, reproducibly, a bounded number of times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_runtime import defaults
from fl_runtime.errors import DataError, OptionsError
from fl_runtime.learning.data import MIN_CLIENT_ROWS, MIN_ROWS_PER_CLASS, LabelledData

PARTITIONS = ("iid", "non-iid")
SKEWS = ("label", "size", "size-label")
MAX_DRAWS = 200


@dataclass(frozen=True)
class PartitionSpec:
    n_clients: int
    partition: str = defaults.PARTITION
    skew: str = defaults.SKEW
    alpha: float = defaults.ALPHA
    test_fraction: float = defaults.TEST_FRACTION
    seed: int = defaults.SEED

    def __post_init__(self) -> None:
        if self.n_clients < 1:
            raise OptionsError(f"--clients must be at least 1, got {self.n_clients}")
        if self.partition not in PARTITIONS:
            raise OptionsError(f"--partition must be one of {', '.join(PARTITIONS)}, got {self.partition!r}")
        if self.skew not in SKEWS:
            raise OptionsError(f"--skew must be one of {', '.join(SKEWS)}, got {self.skew!r}")
        if not self.alpha > 0:
            raise OptionsError(f"--alpha must be positive, got {self.alpha}")
        if not 0 < self.test_fraction < 1:
            raise OptionsError(f"--test-fraction must be between 0 and 1, got {self.test_fraction}")


def split_test(data: LabelledData, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: the test set keeps the dataset's fraud rate."""
    test_rows, rest_rows = [], []
    for label in (0, 1):
        rows = rng.permutation(np.flatnonzero(data.y == label))
        n_test = round(test_fraction * len(rows))
        test_rows.append(rows[:n_test])
        rest_rows.append(rows[n_test:])
    return np.sort(np.concatenate(test_rows)), np.sort(np.concatenate(rest_rows))


def _deal(rows: np.ndarray, proportions: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    rows = rng.permutation(rows)
    cuts = np.round(np.cumsum(proportions)[:-1] * len(rows)).astype(int)
    return np.split(rows, cuts)


def _client_rows(y: np.ndarray, rows: np.ndarray, spec: PartitionSpec, rng: np.random.Generator) -> list[np.ndarray]:
    n = spec.n_clients
    by_class = {label: rows[y[rows] == label] for label in (0, 1)}
    if spec.partition == "iid":
        shares = {label: np.full(n, 1.0 / n) for label in (0, 1)}
    elif spec.skew == "label":
        shares = {label: rng.dirichlet(np.full(n, spec.alpha)) for label in (0, 1)}
    elif spec.skew == "size":
        sizes = rng.dirichlet(np.full(n, spec.alpha))
        shares = {0: sizes, 1: sizes}
    else:
        sizes = rng.dirichlet(np.full(n, spec.alpha))
        positives = sizes * n * rng.dirichlet(np.full(n, spec.alpha))
        shares = {0: sizes, 1: positives / positives.sum()}
    parts = [_deal(by_class[label], shares[label], rng) for label in (0, 1)]
    return [np.sort(np.concatenate([parts[0][i], parts[1][i]])) for i in range(n)]


def _trainable(y: np.ndarray, rows: np.ndarray) -> bool:
    positives = int(y[rows].sum())
    return len(rows) >= MIN_CLIENT_ROWS and min(positives, len(rows) - positives) >= MIN_ROWS_PER_CLASS


def partition(data: LabelledData, spec: PartitionSpec) -> tuple[LabelledData, list[LabelledData]]:
    """Return (server test set, client datasets); the same spec and data always give the same split."""
    rng = np.random.default_rng(spec.seed)
    test_rows, rest = split_test(data, spec.test_fraction, rng)
    if min(int(data.y[test_rows].sum()), len(test_rows) - int(data.y[test_rows].sum())) == 0:
        raise DataError(
            f"{data.source}: too few rows for a test set with both classes at --test-fraction {spec.test_fraction}"
        )
    for _ in range(MAX_DRAWS):
        clients = _client_rows(data.y, rest, spec, rng)
        if all(_trainable(data.y, rows) for rows in clients):
            break
    else:
        raise DataError(
            f"{data.source}: cannot deal {len(rest)} rows ({int(data.y[rest].sum())} positive) to "
            f"{spec.n_clients} clients with at least {MIN_CLIENT_ROWS} rows and {MIN_ROWS_PER_CLASS} of each "
            f"class each; use fewer clients, a larger --alpha, or more data"
        )
    test = data.subset(test_rows, "test.csv")
    return test, [data.subset(rows, f"client_{i}.csv") for i, rows in enumerate(clients, start=1)]
