"""Contributions as fixed-point integers modulo 2^64: what a member's answer becomes before it is masked.

Every answer a member gives is a sum over its rows (counts, moments, gradients, curvature, losses, histogram
counts). Each sum is written as a whole number of units of 2^-s (``Quantity.scale_bits``), as a two's
complement 64-bit integer, and members' vectors are added modulo 2^64: the masks that hide each member's
vector cancel in that sum (``fl_runtime.app.masking``), and the total is read back as a signed integer.

A value is accepted only if its fixed-point magnitude is at most ``LIMIT``, with ``LIMIT * MAX_MEMBERS <
2^63``: the sum of every member's value then never wraps, so the total read back is the true total. A value
out of range is refused, naming the quantity and the position, never wrapped or clipped. Each quantity's
range (``Quantity.range``) is ``LIMIT / 2^s``; the learning families choose ``s`` so that every honest value
fits (``logistic.layout`` derives it from proven bounds) and the resolution 2^-s is as fine as that allows.

The arithmetic is exact: the same values encode to the same integers on every machine, and integers add
associatively, so a sum does not depend on how rows are split among members or in which order vectors add.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MAX_MEMBERS = 1000  # the most members any sum may have
# the largest fixed-point magnitude of one member's value: every integer up to it is exact in float64, and
# LIMIT * MAX_MEMBERS (about 2^62.97) < 2^63, so no sum of members in range wraps
LIMIT = 2**53
WORD = np.dtype("<u8")  # how a vector travels: little-endian unsigned 64-bit words


class OutOfRange(ValueError):
    """A value that does not fit its quantity's fixed-point range (refused, never wrapped)."""


FINE_BITS = 48  # a two-word value's second word counts units of 2^-(scale_bits + FINE_BITS)


@dataclass(frozen=True)
class Quantity:
    """One named block of a contribution: ``length`` values in units of 2^-``scale_bits``.

    ``words`` 2: each value also sends what its first word rounded off, in units 2^48 times finer (at most half
    a unit of the first word, so it always fits): for sums whose range needs a coarse scale but whose use needs
    float precision (the moments: a variance is a difference of two large sums).
    """

    name: str
    length: int
    scale_bits: int
    labels: tuple[str, ...] = ()  # what each position is (feature names), for refusals; empty: by index
    words: int = 1

    def __post_init__(self) -> None:
        if self.words not in (1, 2):
            raise ValueError(f"{self.name}: a value takes one or two words, not {self.words}")

    @property
    def scale(self) -> float:
        return math.ldexp(1.0, self.scale_bits)

    @property
    def range(self) -> float:
        """The largest magnitude one member's value may have."""
        return LIMIT / self.scale

    @property
    def resolution(self) -> float:
        return 1.0 / self.scale

    def position(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)


def scale_bits_for(bound: float) -> int:
    """The finest scale whose range holds every value of magnitude up to ``bound``."""
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"a quantity's bound must be a positive number, got {bound!r}")
    bits = math.floor(math.log2(LIMIT / bound))
    while LIMIT / math.ldexp(1.0, bits) < bound:  # log2 rounding at the edge
        bits -= 1
    return bits


@dataclass(frozen=True)
class Layout:
    """The quantities of one kind of contribution, in order: what the vector's positions mean."""

    quantities: tuple[Quantity, ...]

    def __post_init__(self) -> None:
        names = [q.name for q in self.quantities]
        if len(set(names)) != len(names):
            raise ValueError(f"a layout names each quantity once, got {names}")

    @property
    def length(self) -> int:
        """Words of a vector of this layout."""
        return sum(q.length * q.words for q in self.quantities)

    def describe(self) -> list[dict]:
        """Each quantity's length, scale and range: what the report and the docs print."""
        return [
            {
                "quantity": q.name,
                "values": q.length,
                "scale": f"2^-{q.scale_bits}" + (f" + 2^-{q.scale_bits + FINE_BITS}" if q.words == 2 else ""),
                "range": q.range,
            }
            for q in self.quantities
        ]

    def encode(self, values: Mapping[str, np.ndarray | float | int]) -> np.ndarray:
        """One member's values as a vector of words; OutOfRange names the first value that does not fit."""
        missing = [q.name for q in self.quantities if q.name not in values]
        extra = sorted(set(values) - {q.name for q in self.quantities})
        if missing or extra:
            raise ValueError(f"contribution values: missing {missing}, unexpected {extra}")
        parts = []
        for quantity in self.quantities:
            array = np.asarray(values[quantity.name], dtype=np.float64).reshape(-1)
            if array.shape != (quantity.length,):
                raise ValueError(f"{quantity.name}: {array.size} values, the layout has {quantity.length}")
            scaled = np.rint(array * quantity.scale)
            bad = np.flatnonzero(~(np.abs(scaled) <= LIMIT))  # also catches NaN
            if bad.size:
                where = quantity.position(int(bad[0]))
                raise OutOfRange(
                    f"{quantity.name}[{where}] is outside its fixed-point range (magnitude at most "
                    f"{quantity.range:.6g} in units of 2^-{quantity.scale_bits})"
                )
            parts.append(scaled.astype(np.int64))
            if quantity.words == 2:
                parts.append(
                    np.rint((array - scaled / quantity.scale) * quantity.scale * 2.0**FINE_BITS).astype(np.int64)
                )
        return np.concatenate(parts).view(np.uint64) if parts else np.zeros(0, dtype=np.uint64)

    def decode(self, total: np.ndarray, members: int) -> dict[str, np.ndarray]:
        """A sum of ``members`` encoded vectors back as values; OutOfRange if it cannot be such a sum."""
        if total.shape != (self.length,):
            raise ValueError(f"a sum of {total.size} words, the layout has {self.length}")
        if not 1 <= members <= MAX_MEMBERS:
            raise ValueError(f"a sum over {members} members (at most {MAX_MEMBERS})")
        signed = total.astype(np.uint64).view(np.int64)
        values: dict[str, np.ndarray] = {}
        start = 0
        for quantity in self.quantities:
            block = signed[start : start + quantity.length * quantity.words].reshape(quantity.words, quantity.length)
            bad = np.flatnonzero(np.abs(block.astype(np.float64)).max(axis=0) > float(LIMIT) * members)
            if bad.size:
                raise OutOfRange(
                    f"the sum's {quantity.name}[{quantity.position(int(bad[0]))}] exceeds what {members} members "
                    "in range can add up to"
                )
            value = block[0].astype(np.float64) / quantity.scale
            if quantity.words == 2:
                value += block[1].astype(np.float64) / (quantity.scale * 2.0**FINE_BITS)
            values[quantity.name] = value
            start += quantity.length * quantity.words
        return values


def add(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The sum of vectors of words, modulo 2^64 (numpy's unsigned arithmetic wraps)."""
    if not vectors:
        raise ValueError("no vectors to add")
    total = np.zeros_like(vectors[0], dtype=np.uint64)
    for vector in vectors:
        total += vector.astype(np.uint64, copy=False)
    return total


def to_bytes(vector: np.ndarray) -> bytes:
    return vector.astype(WORD, copy=False).tobytes()


def from_bytes(data: bytes, length: int) -> np.ndarray:
    if len(data) != 8 * length:
        raise ValueError(f"a vector of {len(data)} bytes, expected {8 * length} ({length} words)")
    return np.frombuffer(data, dtype=WORD).astype(np.uint64)
