"""Comparing a window's interaction map with a baseline: score, calibrated p-value, and what moved.

Score: the Euclidean distance between the baseline's and the window's mean attribution mass per
explained request — over key tuples of order ≥ 2 (Σ|coef| per tuple), over single keys' share of that
interaction mass (dense where tuples are sparse: a change spread over ('not', 'good'), ('bad', 'not') …
adds up on 'not'), and over the total — divided by the pooled mean interaction mass per request. It moves
with the *shape* and the *amount* of interaction (0 = identical). Squared differences let a few strong,
consistent moves outweigh many small sampling wiggles on rare tuples.

p-value: an exact permutation test over the two maps' request samples. Under "no change" requests are
exchangeable between baseline and window, so any statistic computed on relabelled samples gives a valid
p-value: p < α in at most a fraction α of null windows. The default test statistic (``"max"``) is the
*largest* move of mean mass per request over any single key tuple or member key, Tippett-combined (the
smaller of the two permutation p-values, itself calibrated on the same relabellings) with the move of the
total mass. The score's sum of squares is kept as the effect size, but as a test it adds the sampling noise
of every heavy tuple to the one key that moved: on the detection benchmark (``benchmarks/detection``) the
broken-negation swap, whose signal is the member key 'not', was caught within 200 explained requests in
10–50 % of runs by the sum and in 97–100 % by the maximum, at the same false-alarm rate.
``statistic="euclidean"`` keeps the first version's test for comparison.

Beside it, for rare request-local incidents (a backdoor trigger) that barely move a window's mean mass, the
decisive-interaction test (:mod:`.decisive_shift`): per key tuple, the window's rate of *decisive*
occurrences per opportunity against the baseline's (Fisher, Holm over tuples). The report's ``p_value`` is
the one alarm's: weighted Bonferroni over both tests, 0.8 / 0.2 of α (``shift_p_value`` and
``decisive.p_value`` give each alone).
Next to it: order energy shares,
first-order NDCG (SageMaker Clarify's method), and the key tuples that moved most, with exemplar ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

from .contributors import Decomposition, decompose
from .decisive_shift import DEFAULT_MIN_COUNT, DecisiveReport, combine, decisive_test
from .drift import DriftReport, drift_report
from .maps import InteractionMap, KeyTuple

MAX_TEST_KEYS = 512
MAX_SPLIT_KEYS = 128  # key tuples whose move is split into mix and behaviour (the candidates to rank)
Statistic = Literal["max", "euclidean"]


class Contributor(NamedTuple):
    """One key tuple's part in a shift: strengths are mean |coef| per explained request; ``split`` says how
    much of the move is input mix (co-occurrence) and how much behaviour (strength when present), with
    their uncertainty (:mod:`.contributors`)."""

    key: KeyTuple
    baseline: float
    window: float
    delta: float
    exemplars: list[str]
    split: Decomposition | None = None
    baseline_exemplars: tuple[str, ...] = ()  # baseline requests where it mattered (beside the window's)


@dataclass
class ShiftReport:
    """A window compared with its baseline (:func:`compare_maps`).

    Attributes:
        score: the effect size (0 = identical; see the module docstring).
        p_value: the window's p-value, the one alarm's (``p < alarm_p_value`` alarms): the permutation
            test's (``shift_p_value``) combined with the decisive test's where that applies (weighted
            Bonferroni, :func:`~.decisive_shift.combine`); 1 when either side is empty.
        order_shares: per order (1, 2, 3+), the ``(baseline, window)`` share of interaction energy.
        first_order_ndcg: agreement of the two rankings of first-order keys.
        baseline_requests, window_requests: explained requests on each side.
        n_permutations: relabellings in the test.
        contributors: key tuples (order ≥ 2) ranked by how much their strength moved.
        drift: input and output drift next to it.
        shift_p_value: the interaction-shift permutation test's p-value alone (``statistic``).
        decisive: the decisive-interaction test (``None`` where it does not apply: values without a
            decision boundary, or maps without decisive counts — then ``p_value == shift_p_value``).
    """

    score: float
    p_value: float
    order_shares: dict[int, tuple[float, float]]
    first_order_ndcg: float
    baseline_requests: float
    window_requests: float
    n_permutations: int
    contributors: list[Contributor] = field(default_factory=list)
    drift: DriftReport | None = None
    shift_p_value: float = 1.0
    decisive: DecisiveReport | None = None

    @property
    def input_drift(self) -> dict[str, float]:
        """PSI of token frequencies (top-K + other) and input length."""
        return self.drift.input_psi if self.drift else {}

    @property
    def output_drift(self) -> dict[str, float]:
        """PSI of the predicted label and of the confidence."""
        return self.drift.output_psi if self.drift else {}

    def top_contributors(self, k: int = 5) -> list[Contributor]:
        """The ``k`` key tuples (order ≥ 2) whose mean |coef| per request moved most."""
        return self.contributors[:k]


def _js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise Jensen–Shannon distance (base 2) between non-negative mass vectors (normalised here)."""
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)
    q = q / np.maximum(q.sum(axis=-1, keepdims=True), 1e-300)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
    return np.sqrt(np.clip(0.5 * (kl_p + kl_q), 0.0, 1.0))


def _mass_matrix(baseline: InteractionMap, window: InteractionMap) -> tuple[np.ndarray, list[KeyTuple], int]:
    """Rows: sampled requests (baseline first); columns: the heaviest key tuples plus one "rest" column."""
    pooled: dict[KeyTuple, float] = {}
    for sample in (*baseline.samples, *window.samples):
        for key, mass in zip(sample.keys, sample.mass, strict=True):
            pooled[key] = pooled.get(key, 0.0) + mass
    keys = sorted(pooled, key=lambda k: (-pooled[k], k))[:MAX_TEST_KEYS]
    column = {key: i for i, key in enumerate(keys)}
    rows = [*baseline.samples, *window.samples]
    matrix = np.zeros((len(rows), len(keys) + 1))
    for r, sample in enumerate(rows):
        for key, mass in zip(sample.keys, sample.mass, strict=True):
            matrix[r, column.get(key, len(keys))] += mass
    return matrix, keys, len(baseline.samples)


def first_order_ndcg(baseline: InteractionMap, window: InteractionMap, k: int = 10) -> float:
    """Rank agreement of first-order attributions (SageMaker Clarify): the window's top-``k`` keys by
    mean |attribution|, scored with the baseline's attributions as relevance, over the baseline's ideal
    ordering. 1.0 = the same ranking; Clarify alarms below 0.90."""
    base = {key[0]: baseline.strength(key) for key in baseline.stats if len(key) == 1}
    win = {key[0]: window.strength(key) for key in window.stats if len(key) == 1}
    if not base:
        return 1.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ranked = sorted(win, key=lambda w: (-win[w], w))[:k]
    ideal = sorted(base.values(), reverse=True)[:k]
    dcg = float(sum(base.get(w, 0.0) * d for w, d in zip(ranked, discounts, strict=False)))
    idcg = float(sum(r * d for r, d in zip(ideal, discounts, strict=False)))
    return dcg / idcg if idcg > 0 else 1.0


def _member_matrix(baseline: InteractionMap, window: InteractionMap) -> np.ndarray:
    """Rows as in :func:`_mass_matrix`; columns: single keys, each holding its share of the interaction
    mass it takes part in (a tuple's mass split evenly over its members). Far denser than tuples, so a
    change spread over many related tuples — ('not', 'good'), ('bad', 'not'), ... — adds up."""
    pooled: dict[str, float] = {}
    rows = [*baseline.samples, *window.samples]
    for sample in rows:
        for key, mass in zip(sample.keys, sample.mass, strict=True):
            for member in key:
                pooled[member] = pooled.get(member, 0.0) + mass / len(key)
    members = sorted(pooled, key=lambda k: (-pooled[k], k))[:MAX_TEST_KEYS]
    column = {m: i for i, m in enumerate(members)}
    matrix = np.zeros((len(rows), len(members) + 1))
    for r, sample in enumerate(rows):
        for key, mass in zip(sample.keys, sample.mass, strict=True):
            for member in key:
                matrix[r, column.get(member, len(members))] += mass / len(key)
    return matrix


def permutation_p_value(observed: np.ndarray | float, permuted: np.ndarray) -> float:
    """Exact permutation p-value; with several statistics per relabelling, of their Tippett combination.

    ``observed``: the statistic(s) of the real labelling, shape ``()`` or ``(c,)``; ``permuted``: shape
    ``(P,)`` or ``(P, c)``; larger = more extreme. For one statistic this is
    ``(1 + #{T_perm >= T_obs}) / (1 + P)``. For ``c`` statistics, each relabelling (the real one
    included) gets its per-statistic p-values from ranks among all ``P + 1`` relabellings, its combined
    value is the smallest of them, and the p-value is the share of relabellings whose combined value is at
    least as small as the real one's (Pesarin's nonparametric combination): exact, because all ``P + 1``
    relabellings are exchangeable under "no change".
    """
    first = np.atleast_1d(np.asarray(observed, dtype=np.float64))[None, :]
    stats = np.concatenate([first, np.asarray(permuted, dtype=np.float64).reshape(len(permuted), -1)])
    rows = stats.shape[0]
    ordered = np.sort(stats, axis=0)
    # Per relabelling and statistic: how many relabellings are at least as extreme (itself included).
    at_least = np.stack(
        [rows - np.searchsorted(ordered[:, c], stats[:, c] - 1e-12) for c in range(stats.shape[1])], axis=1
    )
    combined = at_least.min(axis=1)
    return float(np.mean(combined <= combined[0]))


def compare_maps(
    baseline: InteractionMap,
    window: InteractionMap,
    n_permutations: int = 1000,
    seed: int = 0,
    top_k: int = 50,
    statistic: Statistic = "max",
    decisive_min_count: int = DEFAULT_MIN_COUNT,
) -> ShiftReport:
    """Interaction shift of ``window`` against ``baseline`` (see the module docstring).

    ``statistic`` picks the permutation test behind the shift p-value (the score is the same either way):
    ``"max"`` (default) or ``"euclidean"`` (the first version; kept for comparison in benchmarks).
    ``decisive_min_count``: decisive occurrences a key tuple needs in the window to alarm
    (:func:`~.decisive_shift.decisive_test`).
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    if statistic not in ("max", "euclidean"):
        raise ValueError(f"statistic must be 'max' or 'euclidean', got {statistic!r}")
    matrix, keys, n_base = _mass_matrix(baseline, window)
    members = _member_matrix(baseline, window)
    n_total = matrix.shape[0]
    n_window = n_total - n_base
    total = matrix.sum(axis=0)
    member_total = members.sum(axis=0)
    if n_base == 0 or n_window == 0 or not total.any():
        observed, p_value = 0.0, 1.0
    else:
        # Pooled mean interaction mass per request: the same for every relabelling, so it scales the
        # statistic without breaking exchangeability.
        scale = total.sum() / n_total

        def moves(window_sum: np.ndarray, window_members: np.ndarray) -> tuple[np.ndarray, ...]:
            """Per relabelling: differences of mean mass per request (window - baseline) per tuple
            column and per member column, and of the total."""
            tuples = window_sum / n_window - (total - window_sum) / n_base
            single = window_members / n_window - (member_total - window_members) / n_base
            window_all = window_sum.sum(axis=-1)
            amount = window_all / n_window - (total.sum() - window_all) / n_base
            return tuples, single, amount

        def euclidean(window_sum: np.ndarray, window_members: np.ndarray) -> np.ndarray:
            tuples, single, amount = moves(window_sum, window_members)
            squared = np.square(tuples).sum(axis=-1) + np.square(single).sum(axis=-1) + np.square(amount)
            return np.sqrt(squared) / scale

        def components(window_sum: np.ndarray, window_members: np.ndarray) -> np.ndarray:
            # The key that moved most (tuples and member keys; the "rest" columns are no key) and the
            # total amount: two tests that the Tippett combination below weighs equally.
            tuples, single, amount = moves(window_sum, window_members)
            key = np.maximum(
                np.abs(tuples[..., :-1]).max(axis=-1, initial=0.0),
                np.abs(single[..., :-1]).max(axis=-1, initial=0.0),
            )
            return np.stack([key, np.abs(amount)], axis=-1) / scale

        window_sum, window_members = matrix[n_base:].sum(axis=0), members[n_base:].sum(axis=0)
        observed = float(euclidean(window_sum, window_members))
        test = euclidean if statistic == "euclidean" else components
        rng = np.random.default_rng(seed)
        permuted = []
        for start in range(0, n_permutations, 256):
            block = min(256, n_permutations - start)
            labels = np.zeros((block, n_total))
            picks = np.argsort(rng.random((block, n_total)), axis=1)[:, :n_window]
            np.put_along_axis(labels, picks, 1.0, axis=1)
            permuted.append(test(labels @ matrix, labels @ members))
        p_value = permutation_p_value(test(window_sum, window_members), np.concatenate(permuted))

    decisive = decisive_test(baseline, window, decisive_min_count)
    contributors = _contributors(baseline, window, keys, top_k)
    b_orders, w_orders = baseline.order_shares(), window.order_shares()
    return ShiftReport(
        score=observed,
        p_value=combine(p_value, decisive),
        order_shares={o: (b_orders[o], w_orders[o]) for o in (1, 2, 3)},
        first_order_ndcg=first_order_ndcg(baseline, window),
        baseline_requests=baseline.requests,
        window_requests=window.requests,
        n_permutations=n_permutations,
        contributors=contributors,
        drift=drift_report(baseline.drift, window.drift, baseline.faithfulness, window.faithfulness),
        shift_p_value=p_value,
        decisive=decisive,
    )


def _contributors(
    baseline: InteractionMap, window: InteractionMap, heavy: list[KeyTuple], top_k: int
) -> list[Contributor]:
    """Key tuples (order ≥ 2) ranked by their *behaviour* change (strength when present, weighted by how
    often they occur; :mod:`.contributors`) where it is established, else by the whole move of their mean
    |coef| per request (each row's split says whether inputs or behaviour moved). Ranking by the behaviour
    term alone put tiny, zero-variance changes of repeated requests above the incident in 40-request demo
    windows, and tuples new in the window last. Candidates: the tuples whose mass moved most and the
    heaviest tuples of the request samples (``heavy``), so a behaviour change hidden by an opposite mix
    change (mass flat) is still ranked."""
    candidates = {k for k in (*baseline.stats, *window.stats) if len(k) >= 2}
    moved = sorted(candidates, key=lambda k: (-abs(window.strength(k) - baseline.strength(k)), k))
    pool = list(dict.fromkeys([*moved[:MAX_SPLIT_KEYS], *(k for k in heavy[:MAX_SPLIT_KEYS] if len(k) >= 2)]))
    splits = decompose(baseline, window, pool)

    def rank(key: KeyTuple) -> tuple[float, KeyTuple]:
        # Both in mass per request: the behaviour part of the move where it is established (measured on
        # both sides, beyond its interval), else the whole move (its split unknown or within noise).
        split, moved = splits[key], abs(window.strength(key) - baseline.strength(key))
        established = split.behaviour_measured and abs(split.behaviour) > split.behaviour_ci
        return (-(abs(split.behaviour) if established else moved), key)

    contributors = []
    for key in sorted(pool, key=rank)[:top_k]:
        b, w = baseline.strength(key), window.strength(key)
        source = window.stats.get(key) or baseline.stats.get(key)
        exemplars = list(source.exemplars) if source is not None else []
        before = tuple(baseline.stats[key].exemplars) if key in baseline.stats else ()
        contributors.append(Contributor(key, b, w, w - b, exemplars, splits[key], before))
    return contributors
