"""Decision forests packed into flat arrays: pickle-free storage and fast exact evaluation.

All trees of all seeds (and, fused, of all properties) are concatenated into one node table:

``feature``      int32, split feature (0 at leaves)
``threshold``    float64, go left when ``x <= threshold`` (+inf at leaves)
``left/right``   int32, global child index (leaves point to themselves, so a fixed number of steps
                 walks every tree to its leaf without branching)
``missing_left`` uint8, where NaN goes (scikit-learn's ``missing_go_to_left``)
``value``        float64 (n_nodes, n_outputs): class proportions or the regression mean

Evaluation walks every tree of every row at once (``depth`` vectorized steps), which gives exactly
scikit-learn's ``predict``/``predict_proba`` (verified in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class NodeTable:
    """Trees as flat node arrays: a leaf is its own left and right child (feature 0, threshold
    +inf); ``roots`` index each tree's root node, ``owner`` the group (seed, or property x seed) of each
    tree."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    missing_left: np.ndarray
    value: np.ndarray  # (n_nodes, width)
    roots: np.ndarray
    owner: np.ndarray


def concat_tables(tables: Sequence[NodeTable], owners: Sequence[int]) -> tuple[NodeTable, list[int]]:
    """One node table of several: child and root indices shifted by the nodes before each table,
    owner ids by ``owners`` (how many groups each table holds) before it, values zero-padded to the
    widest. Returns the table and each input's first owner id. The one place trees are joined:
    packing a property's seeds and fusing an element's properties both use it."""
    width = max(t.value.shape[1] for t in tables)
    node_off, owner_off, starts = 0, 0, []
    parts: dict[str, list[np.ndarray]] = {f: [] for f in NodeTable.__dataclass_fields__}
    for t, n_own in zip(tables, owners):
        parts["feature"].append(t.feature)
        parts["threshold"].append(t.threshold)
        parts["left"].append(t.left + node_off)
        parts["right"].append(t.right + node_off)
        parts["missing_left"].append(t.missing_left)
        v = np.zeros((len(t.value), width))
        v[:, : t.value.shape[1]] = t.value
        parts["value"].append(v)
        parts["roots"].append(t.roots + node_off)
        parts["owner"].append(t.owner + owner_off)
        starts.append(owner_off)
        node_off += len(t.feature)
        owner_off += n_own
    arrays = {k: np.concatenate(v) if k != "value" else np.vstack(v) for k, v in parts.items()}
    for k in ("left", "right", "roots", "owner"):  # int32 tables stay int32 past the shift
        arrays[k] = arrays[k].astype(parts[k][0].dtype)
    return NodeTable(**arrays), starts


def hot_first_order(left: np.ndarray, right: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Node indices of one tree (scikit-learn's arrays, -1 below leaves) in depth-first order,
    visiting the child with the larger ``weight`` (training samples reaching it) first."""
    order = np.empty(len(left), np.int64)
    stack, k = [0], 0
    while stack:
        n = stack.pop()
        order[k] = n
        k += 1
        a, b = left[n], right[n]
        if a >= 0:
            if weight[a] >= weight[b]:
                stack += [b, a]  # a is popped next: it follows its parent
            else:
                stack += [a, b]
    return order


@dataclass
class PackedForests:
    """Trees of several forests (one per seed) of one property, packed."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    missing_left: np.ndarray
    value: np.ndarray
    roots: np.ndarray  # (n_trees,) global index of each tree's root
    tree_forest: np.ndarray  # (n_trees,) which forest (seed) each tree belongs to
    depth: int
    n_forests: int
    classes: np.ndarray | None = None  # classifier labels; None for regressors

    ARRAYS = ("feature", "threshold", "left", "right", "missing_left", "value", "roots", "tree_forest")

    @classmethod
    def from_sklearn(cls, forests, columns=None) -> PackedForests:
        """Pack fitted ``RandomForestClassifier``/``Regressor`` objects (one per seed).

        ``columns`` (one index array per forest, a seed ensemble's ``columns_``): the features each
        forest was fitted on; its trees' split features are mapped to those columns, so every
        packed tree reads the full feature vector."""
        classes = getattr(forests[0], "classes_", None)
        trees, depth = [], 0
        for k, forest in enumerate(forests):
            cols = None if columns is None else np.asarray(columns[k], np.int64)
            for est in forest.estimators_:
                t = est.tree_
                n = t.node_count
                # nodes in depth-first order, the child more training samples reached first: the
                # likely step of a walk is then to the next node, mostly in the same cache line
                order = hot_first_order(t.children_left, t.children_right, t.weighted_n_node_samples)
                pos = np.empty(n, np.int64)
                pos[order] = np.arange(n)
                cl, cr = t.children_left[order], t.children_right[order]
                leaf = cl < 0
                idx = np.arange(n)
                v = t.value[order, 0, :].astype(float)
                if classes is not None:
                    v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300)
                mgl = getattr(t, "missing_go_to_left", np.zeros(n, np.uint8))[order]
                feat = np.where(leaf, 0, t.feature[order])
                if cols is not None:
                    feat = np.where(leaf, 0, cols[feat])
                trees.append(NodeTable(
                    feat.astype(np.int32), np.where(leaf, np.inf, t.threshold[order]),
                    np.where(leaf, idx, pos[np.maximum(cl, 0)]).astype(np.int32),
                    np.where(leaf, idx, pos[np.maximum(cr, 0)]).astype(np.int32),
                    np.where(leaf, 1, mgl).astype(np.uint8), v, np.zeros(1, np.int32), np.full(1, k, np.int32)))
                depth = max(depth, t.max_depth)
        tab, _ = concat_tables(trees, [0] * len(trees))  # owners are the seeds' own indices
        return cls(tab.feature, tab.threshold, tab.left, tab.right, tab.missing_left, tab.value, tab.roots,
                   tab.owner, int(depth), len(forests), None if classes is None else np.asarray(classes))

    def table(self) -> NodeTable:
        """Its nodes as a :class:`NodeTable` (owner = seed of each tree)."""
        return NodeTable(self.feature, self.threshold, self.left, self.right, self.missing_left, self.value,
                         self.roots, self.tree_forest)

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """Leaf index reached in every tree, shape (n_rows, n_trees)."""
        # scikit-learn compares float32 features with float64 thresholds: do the same, for exactness
        X = np.atleast_2d(np.asarray(X, np.float32)).astype(np.float64)
        rows = np.arange(len(X))[:, None]
        nodes = np.broadcast_to(self.roots, (len(X), len(self.roots))).copy()
        for _ in range(self.depth):
            x = X[rows, self.feature[nodes]]
            go_left = np.where(np.isnan(x), self.missing_left[nodes].astype(bool), x <= self.threshold[nodes])
            nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        return nodes

    def per_forest(self, X: np.ndarray, second: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mean leaf value per forest: (n_forests, n_rows, n_outputs); with ``second``, also the
        mean of its square per forest (the trees' spread, :func:`tree_std`)."""
        vals = self.value[self.leaves(X)]  # (rows, trees, outputs)
        counts = np.bincount(self.tree_forest, minlength=self.n_forests)
        out = np.zeros((self.n_forests, vals.shape[0], vals.shape[2]))
        sq = np.zeros_like(out)
        for k in range(self.n_forests):
            out[k] = vals[:, self.tree_forest == k].sum(axis=1) / counts[k]
            if second:
                sq[k] = (vals[:, self.tree_forest == k] ** 2).sum(axis=1) / counts[k]
        return (out, sq) if second else out

    def validate(self, n_features: int, max_depth: int = 256) -> None:
        """Check the node table before anything walks it; ``ValueError`` names the first problem.

        A table from a file may be hostile: a child index out of range makes compiled code read
        outside the arrays, a cycle makes it loop for ever. Checked: shapes and dtypes agree;
        children are in range, a leaf points to itself and an internal node's children come after it
        within its own tree (so no cycle); every node has at most one parent; the depth is at most
        the declared one (which the vectorized walk relies on) and ``max_depth``; split features are
        valid column indices; no threshold is NaN and all values are finite; classes match the
        value columns.
        """
        n = len(self.feature)
        for name in ("threshold", "left", "right", "missing_left"):
            a = getattr(self, name)
            if a.ndim != 1 or len(a) != n:
                raise ValueError(f"node array {name!r} has shape {a.shape}, expected ({n},)")
        if self.value.ndim != 2 or len(self.value) != n or self.value.shape[1] < 1:
            raise ValueError(f"value array has shape {self.value.shape}, expected ({n}, outputs)")
        for name in ("feature", "left", "right", "roots", "tree_forest"):
            if not np.issubdtype(getattr(self, name).dtype, np.integer):
                raise ValueError(f"node array {name!r} is not integer ({getattr(self, name).dtype})")
        if not np.issubdtype(self.threshold.dtype, np.floating) or not np.issubdtype(self.value.dtype, np.floating):
            raise ValueError("thresholds and values must be floating point")
        t = len(self.roots)
        if t == 0 or self.tree_forest.shape != (t,) or self.roots.ndim != 1:
            raise ValueError("no trees, or roots and tree_forest disagree")
        if not (0 < self.depth <= max_depth) or self.n_forests < 1:
            raise ValueError(f"declared depth {self.depth} or forest count {self.n_forests} out of range")
        if self.tree_forest.min() < 0 or self.tree_forest.max() >= self.n_forests or \
                len(np.unique(self.tree_forest)) != self.n_forests:
            raise ValueError("tree_forest does not assign every tree to one of the forests")
        if self.roots[0] != 0 or np.any(np.diff(self.roots) <= 0) or self.roots[-1] >= n:
            raise ValueError("tree roots are not increasing node indices inside the table")
        idx = np.arange(n, dtype=np.int64)
        end = np.append(self.roots[1:], n).astype(np.int64)  # each tree's nodes: [root, next root)
        tree_of = np.repeat(np.arange(t), np.diff(np.append(self.roots, n)))
        left, right = self.left.astype(np.int64), self.right.astype(np.int64)
        leaf = left == idx
        if np.any(leaf != (right == idx)):
            raise ValueError("a node is a leaf on one side only")
        inner = ~leaf
        lim = end[tree_of]
        for name, child in (("left", left), ("right", right)):
            if np.any(child < 0) or np.any(child >= n):
                raise ValueError(f"{name} child index out of range")
            if np.any(inner & ((child <= idx) | (child >= lim))):
                raise ValueError(f"{name} child does not follow its parent inside the same tree (a cycle or a "
                                 "link into another tree)")
        parents = np.bincount(np.concatenate([left[inner], right[inner]]), minlength=n)
        if np.any(parents > 1) or np.any(parents[self.roots] > 0):
            raise ValueError("a node has more than one parent")
        if np.any(inner & ((self.feature < 0) | (self.feature >= n_features))):
            raise ValueError(f"split feature index outside 0..{n_features - 1}")
        # an internal threshold may be +-inf (scikit-learn's split of "missing vs the rest"), never NaN
        if np.any(np.isnan(self.threshold[inner])) or not np.all(np.isfinite(self.value)):
            raise ValueError("NaN threshold or non-finite value")
        # depth: walk the levels from the roots (each node is reached once: one parent at most)
        frontier, level = self.roots.astype(np.int64), 0
        while True:
            frontier = frontier[inner[frontier]]
            if not len(frontier):
                break
            level += 1
            if level > self.depth:
                raise ValueError(f"trees are deeper than the declared depth {self.depth}")
            frontier = np.concatenate([left[frontier], right[frontier]])
        if self.classes is not None and (self.classes.ndim != 1 or len(self.classes) != self.value.shape[1]
                                         or not np.all(np.isfinite(self.classes))):
            raise ValueError("class list does not match the value columns")

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}{name}": getattr(self, name) for name in self.ARRAYS}
        out[f"{prefix}shape"] = np.array([self.depth, self.n_forests], np.int64)
        if self.classes is not None:
            out[f"{prefix}classes"] = np.asarray(self.classes, float)
        return out

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> PackedForests:
        depth, n_forests = (int(v) for v in arrays[f"{prefix}shape"])
        classes = arrays[f"{prefix}classes"] if f"{prefix}classes" in arrays else None
        return cls(*(np.asarray(arrays[f"{prefix}{name}"]) for name in cls.ARRAYS), depth=depth,
                   n_forests=n_forests, classes=classes)


def tree_std(per_forest: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Standard deviation over every tree of every forest, (rows, outputs), from the per-forest
    means and mean squares (:meth:`PackedForests.per_forest` with ``second``; forests of equal
    size, as a seed ensemble's are)."""
    var = second.mean(axis=0) - per_forest.mean(axis=0) ** 2
    return np.sqrt(np.maximum(var, 0.0))
