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

from dataclasses import dataclass

import numpy as np


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
    def from_sklearn(cls, forests) -> "PackedForests":
        """Pack fitted ``RandomForestClassifier``/``Regressor`` objects (one per seed)."""
        feats, thrs, lefts, rights, miss, vals, roots, owner = [], [], [], [], [], [], [], []
        offset, depth = 0, 0
        classes = getattr(forests[0], "classes_", None)
        for k, forest in enumerate(forests):
            for est in forest.estimators_:
                t = est.tree_
                n = t.node_count
                leaf = t.children_left < 0
                idx = np.arange(n)
                feats.append(np.where(leaf, 0, t.feature).astype(np.int32))
                thrs.append(np.where(leaf, np.inf, t.threshold))
                lefts.append((np.where(leaf, idx, t.children_left) + offset).astype(np.int32))
                rights.append((np.where(leaf, idx, t.children_right) + offset).astype(np.int32))
                mgl = getattr(t, "missing_go_to_left", np.zeros(n, np.uint8))
                miss.append(np.where(leaf, 1, mgl).astype(np.uint8))
                v = t.value[:, 0, :].astype(float)
                if classes is not None:
                    v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300)
                vals.append(v)
                roots.append(offset)
                owner.append(k)
                offset += n
                depth = max(depth, t.max_depth)
        return cls(np.concatenate(feats), np.concatenate(thrs), np.concatenate(lefts), np.concatenate(rights),
                   np.concatenate(miss), np.concatenate(vals), np.array(roots, np.int32),
                   np.array(owner, np.int32), int(depth), len(forests),
                   None if classes is None else np.asarray(classes))

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

    def per_forest(self, X: np.ndarray) -> np.ndarray:
        """Mean leaf value per forest: (n_forests, n_rows, n_outputs)."""
        vals = self.value[self.leaves(X)]  # (rows, trees, outputs)
        counts = np.bincount(self.tree_forest, minlength=self.n_forests)
        out = np.zeros((self.n_forests, vals.shape[0], vals.shape[2]))
        for k in range(self.n_forests):
            out[k] = vals[:, self.tree_forest == k].sum(axis=1) / counts[k]
        return out

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}{name}": getattr(self, name) for name in self.ARRAYS}
        out[f"{prefix}shape"] = np.array([self.depth, self.n_forests], np.int64)
        if self.classes is not None:
            out[f"{prefix}classes"] = np.asarray(self.classes, float)
        return out

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "PackedForests":
        depth, n_forests = (int(v) for v in arrays[f"{prefix}shape"])
        classes = arrays[f"{prefix}classes"] if f"{prefix}classes" in arrays else None
        return cls(*(np.asarray(arrays[f"{prefix}{name}"]) for name in cls.ARRAYS), depth=depth,
                   n_forests=n_forests, classes=classes)
