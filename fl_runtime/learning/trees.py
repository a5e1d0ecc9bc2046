"""Histogram gradient boosting on the logistic loss, exact and deterministic: what the ``gbdt`` family computes.

Everything a split or a leaf depends on is a sum over rows of whole numbers, so the pooled rows and any split of
them among members give the same sums, in any order, on any machine:
- each row's gradient p - y and hessian p (1 - p) at its current margin are written in fixed point, units of
  2^-``GRADIENT_BITS`` (``fixed_gradients``); a node's histograms are integer sums per (feature, bin) of them
  and of the row count (``histograms``);
- a split's gain, GL^2/(HL + l2) + GR^2/(HR + l2) - G^2/(H + l2), is computed elementwise in float64 from those
  integers (exact below 2^53), and the best is the first maximum in (feature, bin) order: every party picks the
  bit-identical split (``best_split``);
- a leaf's value is -G/(H + l2) times the learning rate, from its integer sums.

Trees grow depth-wise (every node of a level at once, as the federation asks one exchange per level). A node is
split only if the best gain is positive, each child has at least ``min_rows_leaf`` rows and ``min_hessian`` of
hessian: scikit-learn's HistGradientBoostingClassifier makes the same choices on the same bin codes
(``max_leaf_nodes=None``, no early stopping), which its tests check. Rows are binned with ``<`` against float32
edges, as XGBoost applies a split (``binning``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fl_runtime import defaults
from fl_runtime.errors import OptionsError

GRADIENT_BITS = 24  # a row's gradient (in [-1, 1]) and hessian (in [0, 1/4]) in units of 2^-24
BINS = 256  # bin codes are uint8: codes 0..254 for present values (up to 254 edges), 255 for a missing one
MISSING = BINS - 1  # binning.MISSING


@dataclass(frozen=True)
class TreeSettings:
    """What every party grows: the same settings give the same trees. ``min_rows_leaf`` is also a disclosure rule:
    no node describes fewer rows of the federation (a member pins it at least its own ``min_rows``)."""

    trees: int = defaults.TREES
    depth: int = defaults.DEPTH
    learning_rate: float = defaults.LEARNING_RATE
    l2: float = defaults.L2
    min_rows_leaf: int = defaults.MIN_ROWS_LEAF
    min_hessian: float = defaults.MIN_HESSIAN
    cell_rows: int = defaults.CELL_ROWS  # 0: every bin in every node (scikit-learn's trees); see cell_ends

    def __post_init__(self) -> None:
        checks = {
            "trees": _whole(self.trees) and self.trees >= 1,
            "depth": _whole(self.depth) and 1 <= self.depth <= MAX_DEPTH,
            "learning_rate": _number(self.learning_rate) and 0 < self.learning_rate <= 1,
            "l2": _number(self.l2) and self.l2 > 0,  # a node of zero hessian still has a leaf value
            "min_rows_leaf": _whole(self.min_rows_leaf) and self.min_rows_leaf >= 1,
            "min_hessian": _number(self.min_hessian) and self.min_hessian >= 0,
            "cell_rows": _whole(self.cell_rows) and self.cell_rows >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            name = bad[0]
            raise OptionsError(f"--{name.replace('_', '-')} must be {RULES[name]}, got {getattr(self, name)!r}")

    def to_config(self) -> dict:
        """As run-config keys (the spelling of the command-line flags)."""
        return {f"{name.replace('_', '-')}": getattr(self, name) for name in RULES}

    @classmethod
    def from_config(cls, config) -> TreeSettings:
        return cls(**{name: config[name.replace("_", "-")] for name in RULES})


MAX_DEPTH = 8
RULES = {  # every setting and what it must be
    "trees": "a whole number of at least 1",
    "depth": f"a whole number from 1 to {MAX_DEPTH}",
    "learning_rate": "a number above 0 and at most 1",
    "l2": "a number above 0",
    "min_rows_leaf": "a whole number of at least 1",
    "min_hessian": "a number of at least 0",
    "cell_rows": "a whole number of at least 0",
}


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class NodeSums:
    """A node's integer totals: gradient and hessian in units of 2^-GRADIENT_BITS, and rows."""

    gradient: int
    hessian: int
    rows: int

    def value(self, settings: TreeSettings) -> float:
        """The leaf value, shrunk by the learning rate."""
        g, h = _real(self.gradient), _real(self.hessian)
        return -settings.learning_rate * g / (h + settings.l2)


@dataclass(frozen=True)
class Split:
    feature: int
    bin: int  # rows with code <= bin go left: value < edges[feature][bin]
    gain: float
    left: NodeSums
    right: NodeSums
    default_left: bool = False  # where a missing value (code MISSING) goes

    def goes_left(self, codes: np.ndarray) -> np.ndarray:
        """Which of these codes (one feature's) go left."""
        return np.where(codes == MISSING, self.default_left, codes <= self.bin)


@dataclass
class Tree:
    """One tree as arrays indexed by node (0 is the root); a leaf has feature -1 and children -1."""

    feature: list[int] = field(default_factory=list)
    bin: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)  # a leaf's, shrunk; 0 for a split node
    sums: list[NodeSums] = field(default_factory=list)  # every node's totals (cover for TreeSHAP)
    parent: list[int] = field(default_factory=list)
    default_left: list[bool] = field(default_factory=list)  # where a split sends a missing value

    def add(self, sums: NodeSums, parent: int = -1) -> int:
        for column in (self.feature, self.bin, self.left, self.right):
            column.append(-1)
        self.value.append(0.0)
        self.sums.append(sums)
        self.parent.append(parent)
        self.default_left.append(False)
        return len(self.feature) - 1

    def split(self, node: int, split: Split) -> tuple[int, int]:
        left, right = self.add(split.left, node), self.add(split.right, node)
        self.feature[node], self.bin[node], self.left[node], self.right[node] = split.feature, split.bin, left, right
        self.default_left[node] = split.default_left
        return left, right

    def depth_of(self, node: int) -> int:
        depth = 0
        while self.parent[node] >= 0:
            node, depth = self.parent[node], depth + 1
        return depth

    def cover(self) -> list[float]:
        """Each node's hessian sum: the weight TreeSHAP and XGBoost give a branch when its feature is unknown."""
        return [_real(sums.hessian) for sums in self.sums]

    def set_leaf_values(self, settings: TreeSettings) -> None:
        self.value = [s.value(settings) if f < 0 else 0.0 for f, s in zip(self.feature, self.sums)]

    def leaves_of(self, codes: np.ndarray) -> np.ndarray:
        """The leaf each row of ``codes`` (n x features, uint8) falls in."""
        node = np.zeros(codes.shape[0], dtype=np.int64)
        feature, bins = np.asarray(self.feature), np.asarray(self.bin)
        left, right, default = np.asarray(self.left), np.asarray(self.right), np.asarray(self.default_left)
        while True:
            inner = feature[node] >= 0
            if not inner.any():
                return node
            at = node[inner]
            code = codes[np.flatnonzero(inner), feature[at]]
            goes_left = np.where(code == MISSING, default[at], code <= bins[at])
            node[inner] = np.where(goes_left, left[at], right[at])

    def predict(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.value)[self.leaves_of(codes)]


def _real(units: int) -> float:
    return units / 2.0**GRADIENT_BITS


def sigmoid(margin: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * margin))


def fixed_gradients(margin: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's gradient and hessian of the logistic loss at ``margin``, in whole units of 2^-GRADIENT_BITS."""
    p = sigmoid(margin)
    scale = 2.0**GRADIENT_BITS
    return np.rint((p - y) * scale).astype(np.int64), np.rint(p * (1.0 - p) * scale).astype(np.int64)


def histograms(codes: np.ndarray, gradient: np.ndarray, hessian: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Integer sums per (feature, bin) over ``rows``: an array (3, features, BINS) of gradient, hessian, count.

    ``np.bincount`` adds float64 weights; every weight and partial sum is a whole number below 2^53, so the sums
    are exact (and the same in any order)."""
    chosen = codes[rows]
    weights = gradient[rows].astype(np.float64), hessian[rows].astype(np.float64)
    out = np.empty((3, codes.shape[1], BINS), dtype=np.int64)
    for feature in range(codes.shape[1]):  # feature by feature: no rows x features index or weight copies
        column = chosen[:, feature]
        out[0, feature] = np.bincount(column, weights=weights[0], minlength=BINS)
        out[1, feature] = np.bincount(column, weights=weights[1], minlength=BINS)
        out[2, feature] = np.bincount(column, minlength=BINS)
    return out


def node_sums(histogram: np.ndarray) -> NodeSums:
    """A node's totals from its histograms (any feature's bins add up to them)."""
    g, h, c = histogram[:, 0, :].sum(axis=1)
    return NodeSums(int(g), int(h), int(c))


def best_split(histogram: np.ndarray, settings: TreeSettings) -> Split | None:
    """The split of most gain (positive) whose children each keep ``min_rows_leaf`` rows and ``min_hessian``
    hessian, missing values (bin MISSING) sent right or left, whichever gains more; ties go to the lowest
    feature, then missing values right, then the lowest bin. None: the node is a leaf."""
    total = node_sums(histogram)
    present = np.cumsum(histogram[:, :, :MISSING], axis=2)  # present values in bins 0..b, b = 0..MISSING-1
    missing = histogram[:, :, MISSING:]  # (3, features, 1)
    # candidates: (3, features, direction, bin); direction 0 sends missing values right, 1 left
    left_sums = np.stack([present, present + missing], axis=2)
    gain, valid = _gains(left_sums, total, settings)
    gain = np.where(valid, gain, -math.inf)
    index = int(np.argmax(gain))  # the first maximum in C order: lowest feature, right before left, lowest bin
    feature, direction, bin_ = np.unravel_index(index, gain.shape)
    best = float(gain[feature, direction, bin_])
    if not best > 0.0:
        return None
    gl, hl, cl = (int(part) for part in left_sums[:, feature, direction, bin_])
    left = NodeSums(gl, hl, cl)
    right = NodeSums(total.gradient - gl, total.hessian - hl, total.rows - cl)
    return Split(int(feature), int(bin_), best, left, right, bool(direction))


def _gains(left_sums: np.ndarray, total: NodeSums, settings: TreeSettings) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate's gain (float64 from the integer sums) and whether both children keep the floors."""
    gl, hl, cl = left_sums
    gr, hr, cr = total.gradient - gl, total.hessian - hl, total.rows - cl
    scale, l2 = 2.0**GRADIENT_BITS, settings.l2
    glf, hlf, grf, hrf = gl / scale, hl / scale, gr / scale, hr / scale
    valid = (
        (cl >= settings.min_rows_leaf)
        & (cr >= settings.min_rows_leaf)
        & (hlf >= settings.min_hessian)
        & (hrf >= settings.min_hessian)
    )
    g, h = _real(total.gradient), _real(total.hessian)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = glf * glf / (hlf + l2) + grf * grf / (hrf + l2) - g * g / (h + l2)
    return gain, valid


def cell_ends(parent: np.ndarray, threshold: float) -> np.ndarray:
    """Which bins end a cell of a child's histograms: (features, BINS), from its parent's histogram ``parent``.

    A disclosure rule, computed by every party from totals alone: below the root, adjacent bins are merged into
    cells that hold at least ``threshold`` of the parent's rows (the last cell of a feature takes the rest), so
    a child's cell describes about threshold x child rows / parent rows of its rows, not one. Only bins where
    the parent has rows can end a cell (a child has none elsewhere); the missing-value bin is always a cell of
    its own. ``threshold`` 0 keeps every bin where the parent has rows: the same best split as every bin.
    A split can only fall at a cell's end: the bin of a merged cell's sums, placed there (``regroup``)."""
    counts = parent[2, :, :MISSING]
    ends = np.zeros((counts.shape[0], BINS), dtype=bool)
    ends[:, MISSING] = True
    if threshold <= 0:
        ends[:, :MISSING] = counts > 0
        return ends
    cumulative = np.cumsum(counts, axis=1)
    for feature, running in enumerate(cumulative):
        total, held = int(running[-1]), 0
        while total - held >= 2 * threshold:  # room for this cell and at least one more
            end = int(np.searchsorted(running, held + threshold, side="left"))
            if total - int(running[end]) < threshold:
                break
            ends[feature, end], held = True, int(running[end])
        if total > 0:
            ends[feature, int(np.flatnonzero(counts[feature])[-1])] = True  # the last cell: up to the last rows
    return ends


def regroup(histogram: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``histogram`` with each cell's sums at the bin that ends it (``cell_ends``) and zeros elsewhere."""
    present = np.cumsum(histogram[:, :, :MISSING], axis=2)
    out = np.zeros_like(histogram)
    for feature in range(histogram.shape[1]):
        at = np.flatnonzero(ends[feature, :MISSING])
        out[:, feature, at] = np.diff(present[:, feature, at], axis=1, prepend=0)
    out[:, :, MISSING] = histogram[:, :, MISSING]
    return out


def child_cells(parent: np.ndarray, smaller_rows: int, settings: TreeSettings) -> np.ndarray:
    """The cells both children of a split are described in: each about ``cell_rows`` of the smaller child's."""
    parent_rows = int(parent[2, 0].sum())
    return cell_ends(parent, settings.cell_rows * parent_rows / max(smaller_rows, 1))


def baseline(rows: int, positives: int) -> float:
    """The starting margin: the log-odds of the pooled positive rate."""
    if not 0 < positives < rows:
        raise ValueError(f"a boosted model needs both classes: {positives} positives among {rows} rows")
    return math.log(positives / (rows - positives))


def grow_tree(
    codes: np.ndarray, gradient: np.ndarray, hessian: np.ndarray, settings: TreeSettings
) -> tuple[Tree, np.ndarray]:
    """One tree on the rows given, level by level: each level's splits from its nodes' histograms, then the
    histograms of the next level's smaller children (the larger is its parent's minus the smaller). Returns the
    tree and each row's leaf."""
    root = histograms(codes, gradient, hessian, np.arange(codes.shape[0]))
    tree = Tree()
    tree.add(node_sums(root))
    node_of_row = np.zeros(codes.shape[0], dtype=np.int64)
    level = {0: root}
    for _depth in range(settings.depth):
        following: dict[int, np.ndarray] = {}
        for node in sorted(level):  # node order: the federation numbers nodes the same way
            histogram = level[node]
            split = best_split(histogram, settings)
            if split is None:
                continue
            left, right = tree.split(node, split)
            here = np.flatnonzero(node_of_row == node)
            goes_left = split.goes_left(codes[here, split.feature])
            node_of_row[here[goes_left]], node_of_row[here[~goes_left]] = left, right
            if tree.depth_of(left) == settings.depth:
                continue  # the last level's leaves need no histograms: their sums came with the split
            smaller, larger = (left, right) if split.left.rows <= split.right.rows else (right, left)
            cells = child_cells(histogram, min(split.left.rows, split.right.rows), settings)
            small = regroup(histograms(codes, gradient, hessian, np.flatnonzero(node_of_row == smaller)), cells)
            following[smaller], following[larger] = small, regroup(histogram, cells) - small
        level = following
    tree.set_leaf_values(settings)
    return tree, node_of_row


@dataclass
class Ensemble:
    """A boosted model: the starting margin and the trees, each on bin codes."""

    baseline: float
    trees: list[Tree] = field(default_factory=list)

    def margin(self, codes: np.ndarray) -> np.ndarray:
        """Each row's margin, added tree by tree in order (the same float operations as during training)."""
        margin = np.full(codes.shape[0], self.baseline)
        for tree in self.trees:
            margin += tree.predict(codes)
        return margin


def boost(codes: np.ndarray, y: np.ndarray, settings: TreeSettings) -> Ensemble:
    """Boosting on the rows given, in process: the reference the federation's trees must equal."""
    ensemble = Ensemble(baseline(len(y), int(y.sum())))
    margin = np.full(len(y), ensemble.baseline)
    for _ in range(settings.trees):
        gradient, hessian = fixed_gradients(margin, y)
        tree, leaf_of_row = grow_tree(codes, gradient, hessian, settings)
        ensemble.trees.append(tree)
        margin += np.asarray(tree.value)[leaf_of_row]
    return ensemble
