"""Deterministic synthetic provider data with the schema and shape of the curated CMS dataset.

The embedded default lets ``make demo`` run with no download. The generator mimics what makes the real
data hard: counts and amounts that are non-negative and heavily right-skewed (log-normal, spanning
orders of magnitude), strongly correlated through a provider's size, about 9 % positives, and a fraud
signal spread thinly over many features, so a linear model on log-scaled features learns it well but
not perfectly (centralised ROC-AUC about 0.85, as on the real data). The per-measure figures below are
rounded summaries of the real dataset (median and spread of log(mean), shift between fraudulent and
other providers, coefficient of variation), not rows of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_runtime import defaults
from fl_runtime.errors import OptionsError
from fl_runtime.learning.data import CMS_FEATURES, LabelledData

SYNTHETIC_SOURCE = "synthetic CMS-like provider data"
POSITIVE_RATE = 0.0909


@dataclass(frozen=True)
class Measure:
    name: str
    log_median: float  # median of log(per-record mean)
    log_spread: float  # standard deviation of log(per-record mean)
    fraud_shift: float  # difference of log(mean) between fraudulent and other providers
    cv: float  # typical standard deviation / mean across a provider's records
    integer: bool
    source: str  # which claims file the measure comes from: sets how many records a provider has


MEASURES = (
    Measure("tot_suplrs", 1.10, 0.77, 0.28, 0.33, True, "dmepos"),
    Measure("tot_suplr_benes", 1.61, 0.57, 0.23, 0.20, True, "dmepos"),
    Measure("tot_suplr_clms", 2.94, 0.52, 0.20, 0.38, True, "dmepos"),
    Measure("tot_suplr_srvcs", 3.99, 1.69, 0.35, 0.81, True, "dmepos"),
    Measure("avg_suplr_sbmtd_chrg", 4.63, 1.12, 0.06, 0.99, False, "dmepos"),
    Measure("avg_suplr_mdcr_pymt_amt", 3.31, 1.19, 0.25, 1.01, False, "dmepos"),
    Measure("bene_unique_cnt", 3.99, 0.56, 0.11, 0.91, True, "part_b"),
    Measure("line_svc_cnt", 4.53, 0.80, 0.41, 1.21, True, "part_b"),
    Measure("bene_day_srvc_cnt", 4.45, 0.67, 0.37, 1.19, True, "part_b"),
    Measure("average_submitted_chrg_amt", 5.11, 0.78, -0.16, 0.75, False, "part_b"),
    Measure("average_medicare_payment_amt", 4.09, 0.59, -0.09, 0.76, False, "part_b"),
    Measure("total_claim_count", 3.53, 0.52, 0.26, 0.93, True, "part_d"),
    Measure("total_30_day_fill_count", 3.90, 0.63, 0.15, 1.03, False, "part_d"),
    Measure("total_day_supply", 7.21, 0.86, 0.24, 1.11, True, "part_d"),
    Measure("total_drug_cost", 7.52, 1.32, 0.33, 1.94, False, "part_d"),
    Measure("bene_count", 2.40, 0.49, 0.06, 0.89, True, "part_d"),
)

# Median number of yearly/item records per provider in each claims file, and fraud's effect on it.
RECORDS_MEDIAN = {"dmepos": 8.0, "part_b": 46.0, "part_d": 137.0}
RECORDS_FRAUD_SHIFT = {"dmepos": 0.45, "part_b": 0.30, "part_d": 0.35}
FEMALE_RATE = {0: 0.40, 1: 0.14}
SIZE_LOADING = 0.6  # share of each measure's spread explained by the provider's overall size


def generate(n_rows: int = defaults.SYNTHETIC_ROWS, seed: int = defaults.SEED) -> LabelledData:
    """Return ``n_rows`` synthetic providers; the same seed always gives the same rows."""
    if n_rows < 20:
        raise OptionsError(f"n_rows={n_rows}: the synthetic generator needs at least 20 rows")
    rng = np.random.default_rng(seed)
    n_positive = round(POSITIVE_RATE * n_rows)
    y = rng.permutation(np.r_[np.ones(n_positive, dtype=np.int64), np.zeros(n_rows - n_positive, dtype=np.int64)])
    size = rng.standard_normal(n_rows)
    columns: dict[str, np.ndarray] = {
        "female": (rng.random(n_rows) < np.where(y == 1, FEMALE_RATE[1], FEMALE_RATE[0])).astype(float)
    }
    records = {
        source: 1
        + np.floor(np.exp(np.log(median) + 0.9 * rng.standard_normal(n_rows) + RECORDS_FRAUD_SHIFT[source] * y))
        for source, median in RECORDS_MEDIAN.items()
    }
    for measure in MEASURES:
        own = rng.standard_normal(n_rows)
        log_mean = (
            measure.log_median
            + measure.log_spread * (SIZE_LOADING * size + np.sqrt(1 - SIZE_LOADING**2) * own)
            + measure.fraud_shift * y
        )
        mean = np.exp(log_mean)
        count = records[measure.source]
        spread = mean * measure.cv * np.exp(0.5 * rng.standard_normal(n_rows))
        spread = np.where(count > 1, spread, 0.0)
        total = mean * count
        if measure.integer:
            mean, total, spread = np.round(mean), np.round(total), np.round(spread)
        else:
            mean, total, spread = np.round(mean, 6), np.round(total, 4), np.round(spread, 6)
        columns[f"{measure.name}_mean"] = mean
        columns[f"{measure.name}_sum"] = total
        columns[f"{measure.name}_standard_deviation"] = spread
    X = np.column_stack([columns[name] for name in CMS_FEATURES])
    return LabelledData(CMS_FEATURES, X, y, SYNTHETIC_SOURCE)
