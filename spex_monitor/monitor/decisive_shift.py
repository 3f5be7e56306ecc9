"""The decisive-interaction test: did key tuples become decisive more often, per opportunity, than in the
baseline? And how its p-value joins the interaction-shift p-value in the one alarm.

Per key tuple (:mod:`.decisive` says what is decisive), a 2×2 table of weighted request counts rounded to
integers: the window's decisive occurrences and other opportunities (requests holding all of the tuple's
keys), and the baseline's. One-sided Fisher exact test (``scipy.stats.fisher_exact``, ``alternative=
"greater"``): the window's decisive rate per opportunity is higher than the baseline's. A *rate per
opportunity* is what keeps benign drift quiet: more negated reviews mean more opportunities for ('not',
'good') at the same rate, not a higher rate. Only increases are tested — the incidents this test is for
(a backdoor trigger, a new shortcut) make an interaction decisive; a lost one (broken negation) moves the
mass that the default statistic already tests.

Multiple testing (Holm 1979, family-wise) over a family chosen from the tables' *margins* only (Tarone
1990): Fisher's test conditions on the margins, so for any family they determine the union bound holds —
``P(min p ≤ α/m) ≤ α`` for every α. A tuple enters when it has at least ``min_count`` decisive occurrences
on both sides together and ``min_count`` opportunities in the window, and its smallest attainable p-value
(every decisive occurrence in the window: the hypergeometric probability of that table) is at most
``level / k``, with ``k`` Tarone's fixed point (the smallest ``k`` with at most ``k`` such tuples). A
tuple seen decisive three times among hundreds of opportunities can never reach significance and no longer
dilutes the others; on the detection benchmark this cut the family from ~15 tuples to a few. A tuple is
rejected only with ``min_count`` decisive occurrences in the window, so one request never alarms. The
family p-value is Holm's smallest adjusted p-value, ``min(1, m · min p)``.

The one alarm (:func:`combine`): weighted Bonferroni over the two tests, ``p = min(1, p_shift / 0.8,
p_decisive / 0.2)`` — Tippett's "smallest p" with the union bound, which holds under any dependence (the
two tests read the same requests; an exact permutation combination, :func:`~.shift.permutation_p_value`,
would need the decisive statistic on every relabelling, while the per-tuple test reads the full counts).
A window alarms when the shift test has ``p < 0.8 α`` or the decisive test ``p < 0.2 α``, and no-incident
windows alarm at most at rate α. Why 0.8 / 0.2: under an incident the decisive test's p-values are tiny
or nothing (a tuple decisive in every window opportunity and in none of the baseline's has Fisher
``p = 1 / C(n_b + k, k)``), while the shift test's often land near α on gradual incidents. On the quick
detection benchmark an even split cost the preprocessing incident 20 points of detection (93 → 73 % of
runs) and weights 0.8 / 0.2 none, with the same backdoor detection (the decisive p-values that alarmed
were all below 0.001).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from scipy.stats import fisher_exact, hypergeom

from .decisive import DecisiveStats, KeyTuple, fill_in
from .maps import InteractionMap

DEFAULT_MIN_COUNT = 3
SHIFT_WEIGHT = 0.8  # the interaction-shift test's share of the alarm's α; the decisive test gets the rest
DEFAULT_LEVEL = 0.002  # Tarone's screening level: the decisive test's share of the default α (0.2 · 0.01)


@dataclass(frozen=True)
class DecisiveTuple:
    """One tested key tuple: rounded weighted counts on each side, its one-sided Fisher p-value and its
    Holm-adjusted p-value (family-wise)."""

    key: KeyTuple
    baseline_decisive: int
    baseline_opportunities: int
    window_decisive: int
    window_opportunities: int
    p_value: float
    adjusted_p_value: float

    @property
    def baseline_rate(self) -> float:
        """Decisive occurrences per opportunity in the baseline (0 without opportunities)."""
        return self.baseline_decisive / self.baseline_opportunities if self.baseline_opportunities else 0.0

    @property
    def window_rate(self) -> float:
        """Decisive occurrences per opportunity in the window (0 without opportunities)."""
        return self.window_decisive / self.window_opportunities if self.window_opportunities else 0.0


@dataclass
class DecisiveReport:
    """The decisive test of a window against its baseline.

    Attributes:
        p_value: family-wise p-value (Holm's smallest adjusted p; 1 when nothing was tested).
        tested: the family size ``m`` (tuples whose margins allow an alarm).
        min_count: decisive occurrences a tuple needs in the window to be rejected.
        tuples: the tuples with ``min_count`` decisive occurrences in the window, most significant first.
    """

    p_value: float
    tested: int
    min_count: int
    tuples: list[DecisiveTuple] = field(default_factory=list)

    def fields(self, top: int = 10, public_key: Callable[[KeyTuple], KeyTuple] = lambda k: k) -> dict:
        """JSON-ready summary (stored with a shift report): p-value, family size and the ``top`` tuples,
        their keys as ``public_key`` shows them (rare words redacted)."""
        return {
            "p_value": self.p_value,
            "tested": self.tested,
            "min_count": self.min_count,
            "tuples": [
                {
                    "keys": list(public_key(t.key)),
                    "baseline_decisive": t.baseline_decisive,
                    "baseline_opportunities": t.baseline_opportunities,
                    "window_decisive": t.window_decisive,
                    "window_opportunities": t.window_opportunities,
                    "p_value": t.p_value,
                    "adjusted_p_value": t.adjusted_p_value,
                }
                for t in self.tuples[:top]
            ],
        }


def _counts(m: InteractionMap, keys: list[KeyTuple]) -> dict[KeyTuple, tuple[int, int]]:
    """Rounded (decisive, opportunities) of ``keys`` in ``m``: its tracked counts, else filled in from its
    request sample (a tuple it never tracked was never decisive there, up to evictions)."""
    missing = [k for k in keys if k not in m.decisive.stats]
    filled = dict(zip(missing, fill_in(missing, m.samples, m.decisive.requests), strict=True))
    out = {}
    for key in keys:
        stats: DecisiveStats = m.decisive.stats.get(key) or filled[key]
        decisive = round(stats.decisive)
        out[key] = (decisive, max(decisive, round(stats.opportunities)))
    return out


def _smallest_p(decisive: int, window_opportunities: int, total: int) -> float:
    """Smallest one-sided Fisher p-value the margins allow: all ``decisive`` occurrences (of ``total``
    opportunities) in the window, as far as its opportunities reach."""
    most = min(decisive, window_opportunities)
    return float(hypergeom.sf(most - 1, total, decisive, window_opportunities))


def tarone_family(smallest: dict[KeyTuple, float], level: float) -> list[KeyTuple]:
    """Tarone's testable tuples: with ``k`` the smallest integer such that at most ``k`` tuples have a
    smallest attainable p-value ≤ ``level / k``, those tuples (a function of the margins only)."""
    ranked = sorted(smallest.values())
    k = 1
    while bisect.bisect_right(ranked, level / k) > k:  # ends by k = len(ranked): O(n log n)
        k += 1
    return sorted(key for key, p in smallest.items() if p <= level / k)


def decisive_test(
    baseline: InteractionMap,
    window: InteractionMap,
    min_count: int = DEFAULT_MIN_COUNT,
    level: float = DEFAULT_LEVEL,
) -> DecisiveReport | None:
    """Test whether key tuples are decisive more often per opportunity in ``window`` than in ``baseline``
    (see the module docstring). ``None`` when either map carries no decisive counts (values without a
    decision boundary, or maps encoded before the counts existed): the test does not apply. ``level``
    only chooses the family (Tarone's screening); the p-value is valid at every α whatever it is, and most
    powerful near ``level``.

    Raises:
        ValueError: ``min_count`` below 1, or ``level`` outside (0, 1].
    """
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if not 0 < level <= 1:
        raise ValueError(f"level must be in (0, 1], got {level}")
    if baseline.decisive.requests <= 0 or window.decisive.requests <= 0:
        return None
    keys = sorted(set(baseline.decisive.stats) | set(window.decisive.stats))
    base, win = _counts(baseline, keys), _counts(window, keys)
    eligible = [k for k in keys if base[k][0] + win[k][0] >= min_count and win[k][1] >= min_count]
    smallest = {k: _smallest_p(base[k][0] + win[k][0], win[k][1], base[k][1] + win[k][1]) for k in eligible}
    family = tarone_family(smallest, level)
    raw: list[tuple[float, KeyTuple]] = []
    for key in family:
        (d_b, n_b), (d_w, n_w) = base[key], win[key]
        if d_w < min_count:
            continue
        table = [[d_w, n_w - d_w], [d_b, n_b - d_b]]
        raw.append((float(fisher_exact(table, alternative="greater").pvalue), key))
    raw.sort()
    m = len(family)
    tuples, running = [], 0.0
    for rank, (p, key) in enumerate(raw):
        running = max(running, min(1.0, (m - rank) * p))  # Holm step-down, kept monotone
        (d_b, n_b), (d_w, n_w) = base[key], win[key]
        tuples.append(DecisiveTuple(key, d_b, n_b, d_w, n_w, p, running))
    return DecisiveReport(tuples[0].adjusted_p_value if tuples else 1.0, m, min_count, tuples)


def combine(
    shift_p_value: float, decisive: DecisiveReport | None, shift_weight: float = SHIFT_WEIGHT
) -> float:
    """The one alarm's p-value: weighted Bonferroni over the interaction-shift and decisive tests,
    ``min(1, p_shift / w, p_decisive / (1 - w))`` with ``w = shift_weight``; ``p_shift`` alone when the
    decisive test does not apply.

    Raises:
        ValueError: ``shift_weight`` outside (0, 1).
    """
    if not 0 < shift_weight < 1:
        raise ValueError(f"shift_weight must be in (0, 1), got {shift_weight}")
    if decisive is None:
        return shift_p_value
    return min(1.0, shift_p_value / shift_weight, decisive.p_value / (1.0 - shift_weight))
