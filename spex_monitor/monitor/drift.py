"""Input and output drift next to the interaction shift: mergeable histograms and PSI.

Population Stability Index, ``PSI = Σ (q - p) ln(q / p)`` over bins (``p`` baseline, ``q`` window shares,
smoothed by ``1e-4``): < 0.1 stable, 0.1–0.25 moderate, > 0.25 significant (the usual rule of thumb).
Token frequencies keep a bounded vocabulary (at most ``2 * max_tokens`` tokens; each trim keeps the most
frequent ``max_tokens`` and folds the rest into an "other" bin), so the counters stay small, cost O(1)
amortised per observed token, and merge by addition across windows and pods.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np
from scipy.stats import ks_2samp

LENGTH_EDGES = (0, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1024)
CONFIDENCE_EDGES = tuple(np.linspace(0.5, 1.0, 11).tolist())
OTHER = "<other>"
MAX_LABELS = 64
_EPS = 1e-4


def psi(baseline: np.ndarray, window: np.ndarray) -> float:
    """PSI between two count vectors over the same bins (0 when either side is empty)."""
    baseline = np.asarray(baseline, dtype=np.float64)
    window = np.asarray(window, dtype=np.float64)
    if baseline.sum() <= 0 or window.sum() <= 0:
        return 0.0
    p = baseline / baseline.sum() + _EPS
    q = window / window.sum() + _EPS
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass
class DriftCounters:
    """Mergeable input/output counters for every observed request (explained or not)."""

    max_tokens: int = 2000
    tokens: dict[str, float] = field(default_factory=dict)
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(len(LENGTH_EDGES)))
    labels: dict[str, float] = field(default_factory=dict)
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(len(CONFIDENCE_EDGES)))
    observed: float = 0.0

    def observe(
        self,
        tokens: list[str] | None = None,
        label: str | None = None,
        confidence: float | None = None,
        weight: float = 1.0,
    ) -> None:
        """Count one request (``weight`` times): its tokens and token count, its label (labels past
        :data:`MAX_LABELS` go to the other bin) and its confidence (a non-finite one is skipped).
        """
        self.observed += weight
        if tokens is not None:
            for token in tokens:
                self.tokens[token] = self.tokens.get(token, 0.0) + weight
            self.lengths[np.searchsorted(LENGTH_EDGES, len(tokens), side="right") - 1] += weight
            self._trim()
        if label is not None:
            if label not in self.labels and len(self.labels) >= MAX_LABELS:
                label = OTHER  # classes are few; beyond that the caller sends ids, not labels
            self.labels[label] = self.labels.get(label, 0.0) + weight
        if confidence is not None and np.isfinite(confidence):
            bin_index = np.searchsorted(CONFIDENCE_EDGES, max(confidence, 1.0 - confidence), side="right") - 1
            self.confidence[min(max(bin_index, 0), len(CONFIDENCE_EDGES) - 1)] += weight

    def _trim(self) -> None:
        """Fold all but the ``max_tokens`` most frequent tokens into the "other" bin.

        Runs only once the dict holds twice that many: open-vocabulary traffic (ids, names, typos) brings a
        new token on almost every request, and trimming on each one would cost a sort per request on the
        serving path. With the slack, a trim costs O(n log k) once per ``max_tokens`` new tokens.
        """
        if len(self.tokens) <= 2 * self.max_tokens + 1:
            return
        other = self.tokens.pop(OTHER, 0.0)
        keep = heapq.nlargest(self.max_tokens, self.tokens.items(), key=itemgetter(1))
        other += sum(self.tokens.values()) - sum(count for _, count in keep)
        self.tokens = dict(keep)
        self.tokens[OTHER] = other

    def merge(self, other: DriftCounters) -> DriftCounters:
        """Add ``other``'s counts into this one (then trim the vocabulary); returns ``self``."""
        for token, count in other.tokens.items():
            self.tokens[token] = self.tokens.get(token, 0.0) + count
        for label, count in other.labels.items():
            self.labels[label] = self.labels.get(label, 0.0) + count
        self.lengths = self.lengths + other.lengths
        self.confidence = self.confidence + other.confidence
        self.observed += other.observed
        self._trim()
        return self

    def to_dict(self) -> dict:
        """A JSON-ready dict of every counter (the inverse of :meth:`from_dict`)."""
        return {
            "max_tokens": self.max_tokens,
            "tokens": self.tokens,
            "lengths": self.lengths.tolist(),
            "labels": self.labels,
            "confidence": self.confidence.tolist(),
            "observed": self.observed,
        }

    @classmethod
    def from_dict(cls, data: dict) -> DriftCounters:
        """Rebuild counters from :meth:`to_dict` output.

        Raises:
            KeyError: a counter is missing from ``data``.
        """
        return cls(
            data["max_tokens"],
            dict(data["tokens"]),
            np.asarray(data["lengths"], dtype=np.float64),
            dict(data["labels"]),
            np.asarray(data["confidence"], dtype=np.float64),
            data["observed"],
        )


def token_psi(baseline: DriftCounters, window: DriftCounters, top_k: int = 200) -> float:
    """PSI over the baseline's ``top_k`` tokens plus one bin for everything else."""
    vocab = sorted((t for t in baseline.tokens if t != OTHER), key=lambda t: -baseline.tokens[t])[:top_k]

    def counts(c: DriftCounters) -> np.ndarray:
        known = [c.tokens.get(t, 0.0) for t in vocab]
        return np.array([*known, sum(c.tokens.values()) - sum(known)])

    return psi(counts(baseline), counts(window))


def label_psi(baseline: DriftCounters, window: DriftCounters) -> float:
    """PSI of the predicted-label distribution over the union of both sides' labels."""
    labels = sorted(set(baseline.labels) | set(window.labels))
    return psi(
        np.array([baseline.labels.get(x, 0.0) for x in labels]),
        np.array([window.labels.get(x, 0.0) for x in labels]),
    )


@dataclass(frozen=True)
class DriftReport:
    """Input and output drift of a window against its baseline: PSI of tokens and input length, of the label
    and the confidence, and the faithfulness (R²) medians with a two-sample KS p-value.
    """

    input_psi: dict[str, float]  # {"tokens": .., "length": ..}
    output_psi: dict[str, float]  # {"label": .., "confidence": ..}
    faithfulness: dict[str, float]  # medians and a two-sample KS p-value


def drift_report(
    baseline: DriftCounters,
    window: DriftCounters,
    baseline_faithfulness: list[float],
    window_faithfulness: list[float],
) -> DriftReport:
    """Compare ``window``'s counters and faithfulness values (R² per explanation) with ``baseline``'s.

    Medians are ``nan`` for an empty side; the KS p-value is 1 unless both sides hold at least two values.
    """
    faith = {
        "baseline_median": float(np.median(baseline_faithfulness)) if baseline_faithfulness else float("nan"),
        "window_median": float(np.median(window_faithfulness)) if window_faithfulness else float("nan"),
        "ks_pvalue": 1.0,
    }
    if len(baseline_faithfulness) >= 2 and len(window_faithfulness) >= 2:
        faith["ks_pvalue"] = float(ks_2samp(baseline_faithfulness, window_faithfulness).pvalue)
    return DriftReport(
        input_psi={"tokens": token_psi(baseline, window), "length": psi(baseline.lengths, window.lengths)},
        output_psi={
            "label": label_psi(baseline, window),
            "confidence": psi(baseline.confidence, window.confidence),
        },
        faithfulness=faith,
    )
