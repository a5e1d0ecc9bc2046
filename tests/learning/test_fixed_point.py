"""Fixed-point contributions modulo 2^64: exact sums, ranges refused by name, never wrapped."""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime.learning import fixed_point
from fl_runtime.learning.fixed_point import LIMIT, MAX_MEMBERS, Layout, OutOfRange, Quantity, scale_bits_for


def _layout(bits: int = 20) -> Layout:
    return Layout((Quantity("rows", 1, 0), Quantity("sums", 3, bits, ("age", "claims", "payments"))))


def test_every_value_a_member_may_send_fits_so_that_the_most_members_never_wrap_the_sum():
    assert LIMIT * MAX_MEMBERS < 2**63
    layout = _layout()
    biggest = {"rows": [LIMIT], "sums": [layout.quantities[1].range] * 3}
    total = fixed_point.add([layout.encode(biggest)] * MAX_MEMBERS)
    decoded = layout.decode(total, MAX_MEMBERS)
    assert decoded["rows"][0] == pytest.approx(float(LIMIT) * MAX_MEMBERS)
    assert decoded["sums"][0] > 0  # no wrap to a negative number


def test_a_sum_of_encoded_vectors_decodes_to_the_sum_of_the_values_within_the_resolution():
    layout = _layout(bits=30)
    rng = np.random.default_rng(0)
    members = [{"rows": [int(n)], "sums": rng.normal(scale=1e3, size=3)} for n in rng.integers(1, 10_000, size=7)]
    decoded = layout.decode(fixed_point.add([layout.encode(m) for m in members]), len(members))
    assert decoded["rows"][0] == sum(m["rows"][0] for m in members)
    resolution = layout.quantities[1].resolution
    np.testing.assert_allclose(decoded["sums"], sum(m["sums"] for m in members), rtol=0, atol=7 * resolution)


def test_negative_values_add_as_twos_complement():
    layout = _layout()
    total = fixed_point.add(
        [layout.encode({"rows": [5], "sums": [-2.5, 1.0, 0.0]}), layout.encode({"rows": [1], "sums": [1.0, -3.0, 0.0]})]
    )
    np.testing.assert_allclose(layout.decode(total, 2)["sums"], [-1.5, -2.0, 0.0])


@pytest.mark.parametrize(
    "value, named",
    [(1e300, r"sums\[claims\] is outside its fixed-point range"), (float("nan"), r"sums\[claims\]")],
)
def test_a_value_out_of_range_is_refused_naming_the_quantity_and_the_position(value, named):
    with pytest.raises(OutOfRange, match=named):
        _layout().encode({"rows": [1], "sums": [0.0, value, 0.0]})


def test_a_total_that_no_members_in_range_can_add_up_to_is_refused():
    layout = _layout()
    vector = layout.encode({"rows": [1], "sums": [0.0, 0.0, 0.0]})
    forged = vector.copy()
    forged[1] = np.uint64(2**62)  # far beyond what two members in range can sum to
    with pytest.raises(OutOfRange, match=r"the sum's sums\[age\] exceeds what 2 members"):
        layout.decode(fixed_point.add([vector, forged]), 2)


def test_the_scale_for_a_bound_is_the_finest_that_holds_it():
    for bound in (1.0, 3.7, 1e6, 2.0**40, 1e12):
        bits = scale_bits_for(bound)
        assert Quantity("q", 1, bits).range >= bound
        assert Quantity("q", 1, bits + 1).range < bound


def test_a_vector_travels_as_little_endian_words_and_is_checked_for_length():
    vector = _layout().encode({"rows": [3], "sums": [1.0, 2.0, 3.0]})
    data = fixed_point.to_bytes(vector)
    assert len(data) == 8 * 4 and data[:8] == (3).to_bytes(8, "little")
    np.testing.assert_array_equal(fixed_point.from_bytes(data, 4), vector)
    with pytest.raises(ValueError, match=r"32 bytes, expected 40 \(5 words\)"):
        fixed_point.from_bytes(data, 5)
