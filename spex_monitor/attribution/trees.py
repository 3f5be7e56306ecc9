"""Exact Fourier coefficients of a LightGBM ensemble over binary features.

A regression tree on 0/1 features is a sum over leaves of ``value * prod_{(i, b) on path} [x_i = b]``.
With ``[x_i = 1] = (1 + z_i)/2`` and ``[x_i = 0] = (1 - z_i)/2`` a leaf at depth ``d`` contributes
``value * 2^-d * prod_{i in S} s_i`` to the Fourier coefficient of every subset ``S`` of its path
(``s_i = +1`` for the ``x_i = 1`` branch, ``-1`` for ``x_i = 0``). We parse the model text once, walk all
leaves of all trees up to their roots together (one vectorised step per depth level), and aggregate the
subset contributions with one sort per order: no per-node Python work.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from .fourier import Grouped, aggregate


def _parse_trees(model_text: str) -> list[dict[str, np.ndarray]]:
    trees: list[dict[str, np.ndarray]] = []
    current: dict[str, str] | None = None
    wanted = {
        "num_leaves",
        "split_feature",
        "threshold",
        "decision_type",
        "left_child",
        "right_child",
        "leaf_value",
    }
    for line in model_text.splitlines():
        if line.startswith("Tree="):
            current = {}
            trees.append(current)  # type: ignore[arg-type]
            continue
        if current is None:
            continue
        if line.startswith("end of trees"):
            break
        key, sep, value = line.partition("=")
        if sep and key in wanted:
            current[key] = value
    parsed = []
    for raw in trees:
        raw_map: dict[str, str] = raw  # type: ignore[assignment]
        num_leaves = int(raw_map["num_leaves"])

        def arr(name: str, dtype: type, raw_map: dict[str, str] = raw_map) -> np.ndarray:
            text = raw_map.get(name, "").strip()
            return np.array(text.split(), dtype=dtype) if text else np.zeros(0, dtype=dtype)

        parsed.append(
            {
                "num_leaves": np.array(num_leaves),
                "split_feature": arr("split_feature", np.int64),
                "threshold": arr("threshold", np.float64),
                "decision_type": arr("decision_type", np.int64),
                "left_child": arr("left_child", np.int64),
                "right_child": arr("right_child", np.int64),
                "leaf_value": arr("leaf_value", np.float64),
            }
        )
    return parsed


def ensemble_fourier(model_text: str, n_features: int, max_order: int) -> Grouped:
    """Fourier coefficients (orders ``0..max_order``) of the sum of all trees in a LightGBM model string.

    Exact for the ensemble's raw score whenever ``max_order`` ≥ the trees' depth.
    """
    trees = _parse_trees(model_text)
    features, thresholds, parents_of_internal, sides_of_internal = [], [], [], []
    leaf_values, leaf_parent, leaf_side = [], [], []
    constant = 0.0
    offset = 0
    for tree in trees:
        if int(tree["num_leaves"]) == 1:
            constant += float(tree["leaf_value"][0])
            continue
        n_internal = tree["split_feature"].size
        if np.any(tree["decision_type"] & 1):
            raise ValueError("categorical splits are not supported for binary-mask features")
        parent = np.full(n_internal, -1, dtype=np.int64)
        side = np.zeros(n_internal, dtype=np.int8)
        lp = np.empty(tree["leaf_value"].size, dtype=np.int64)
        ls = np.empty(tree["leaf_value"].size, dtype=np.int8)
        nodes = np.arange(n_internal, dtype=np.int64)
        for child_arr, branch in ((tree["left_child"], 0), (tree["right_child"], 1)):
            internal = child_arr >= 0
            parent[child_arr[internal]] = nodes[internal] + offset
            side[child_arr[internal]] = branch
            leaves = ~child_arr[~internal]
            lp[leaves] = nodes[~internal] + offset
            ls[leaves] = branch
        features.append(tree["split_feature"])
        thresholds.append(tree["threshold"])
        parents_of_internal.append(parent)
        sides_of_internal.append(side)
        leaf_values.append(tree["leaf_value"])
        leaf_parent.append(lp)
        leaf_side.append(ls)
        offset += n_internal

    grouped: Grouped = {}
    if not leaf_values:
        grouped[0] = (np.zeros((1, 0), dtype=np.int64), np.array([constant]))
        return grouped
    feat = np.concatenate(features)
    thr = np.concatenate(thresholds)
    if np.any((thr < 0) | (thr >= 1)):
        raise ValueError("split thresholds outside [0, 1): the model was not trained on 0/1 masks")
    parent_internal = np.concatenate(parents_of_internal)
    side_internal = np.concatenate(sides_of_internal)
    values = np.concatenate(leaf_values)
    cur = np.concatenate(leaf_parent)
    cur_side = np.concatenate(leaf_side)

    # Walk every leaf to its root together; columns are path positions (leaf upwards).
    path_feat: list[np.ndarray] = []
    path_sign: list[np.ndarray] = []
    depth = np.zeros(values.size, dtype=np.int64)
    active = np.ones(values.size, dtype=bool)
    while active.any():
        f = np.where(active, feat[np.maximum(cur, 0)], -1)
        s = np.where(active, 2 * cur_side.astype(np.int64) - 1, 0)
        path_feat.append(f)
        path_sign.append(s)
        depth += active
        nxt = np.where(active, parent_internal[np.maximum(cur, 0)], -1)
        cur_side = np.where(active, side_internal[np.maximum(cur, 0)], 0)
        cur = nxt
        active = cur >= 0
    pf = np.stack(path_feat, axis=1)
    ps = np.stack(path_sign, axis=1)

    contributions: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {0: ([], [])}
    contributions[0][1].append(np.array([constant]))
    contributions[0][0].append(np.zeros((1, 0), dtype=np.int64))
    for d in np.unique(depth).tolist():
        rows = depth == d
        f_d, s_d = pf[rows, :d], ps[rows, :d]
        if d > 1 and np.any(np.diff(np.sort(f_d, axis=1), axis=1) == 0):
            raise ValueError("a tree path tests the same feature twice; not a binary-feature model")
        scaled = values[rows] * 2.0**-d
        for j in range(min(d, max_order) + 1):
            keys_parts, vals_parts = contributions.setdefault(j, ([], []))
            for cols in combinations(range(d), j):
                cols_list = list(cols)
                keys_parts.append(np.sort(f_d[:, cols_list], axis=1))
                vals_parts.append(scaled * np.prod(s_d[:, cols_list], axis=1))
    for j, (keys_parts, vals_parts) in contributions.items():
        if not keys_parts:
            continue
        grouped[j] = aggregate(np.concatenate(keys_parts), np.concatenate(vals_parts), n_features)
    return grouped
