"""SPEX: sparse Fourier recovery by aliasing, BCH-coded delays, singleton decoding and peeling.

For ``C`` random subsampling matrices ``M_c`` (``b x n`` over GF(2)) and delays ``d`` (the zero delay plus
the rows of a BCH parity-check matrix), SPEX queries ``f`` at the masked-bit patterns ``M_c^T l XOR d``
for every ``l`` in GF(2)^b. A length-``2^b`` Walsh–Hadamard transform over ``l`` then gives buckets

    U_{c,d}[j] = sum_{k : M_c k = j} F[k] (-1)^{<d, k>},

so each bucket aliases the few coefficients hashed to it. In a bucket with a single coefficient the sign
pattern across delays is the BCH syndrome of ``k`` and decodes to ``k`` (for ``|k| <= t``); the bucket is
verified against every delay, the coefficient is recorded and *peeled* from its buckets in every other
group, which turns more buckets into singletons. A final least squares on the recovered support, over
every measured mask, removes noise. Queries: ``C * 2^b * (1 + m t)`` with ``n < 2^m``: ``O(s t log n)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import fourier as _fourier
from .bch import BCHSyndromeCode
from .engine import check_engine_arguments
from .errors import BudgetTooSmallError
from .exhaustive import explain_exhaustively, fits_exhaustively
from .interactions import Interactions
from .masks import uniform_masks
from .oracle import MaskOracle, ProgressCallback, ValueFunction
from .regression import refit_with_holdout

MIN_BUCKET_BITS = 2
MAX_BUCKET_BITS = 16
MIN_HOLDOUT = 16


def walsh_hadamard(values: np.ndarray) -> np.ndarray:
    """Normalised WHT along the last axis (length a power of two): ``2^-b sum_l v[l] (-1)^{<l, j>}``."""
    out = np.array(values, dtype=np.float64)
    size = out.shape[-1]
    lead = out.shape[:-1]
    h = 1
    while h < size:
        out = out.reshape(*lead, -1, 2, h)
        a, b = out[..., 0, :], out[..., 1, :]
        out = np.stack((a + b, a - b), axis=-2).reshape(*lead, size)
        h *= 2
    return out / size


@dataclass(frozen=True)
class SPEXDesign:
    """Parameters chosen from the budget: ``b`` bucket bits, ``groups`` (C), ``t`` and delay count."""

    bucket_bits: int
    groups: int
    t: int
    n_delays: int
    identity_delays: bool

    @property
    def queries(self) -> int:
        """Distinct masks the design evaluates: the ``l = 0`` rows are the same in every group."""
        return (self.groups * 2**self.bucket_bits - (self.groups - 1)) * (1 + self.n_delays)


@dataclass
class SPEX:
    """Budget-limited SPEX.

    Args:
        budget: hard cap on ``value_fn`` rows.
        max_order: largest interaction order decoded (BCH radius ``t``).
        seed: seeds the subsampling matrices and held-out masks.
        batch_size: rows per ``value_fn`` call.
        groups: number of independent subsampling groups ``C`` (3 is the peeling sweet spot).
        holdout: masks held out for faithfulness (default: 5 % of the budget, 16 to 200, shrunk to what
            the largest design leaves, never below 16).
        noise_tolerance: singleton check tolerance in units of the estimated bucket noise.
        progress: ``progress(inferences_used, budget)`` after every batch.
    """

    budget: int = 4000
    max_order: int = 4
    seed: int | None = 0
    batch_size: int | None = None
    groups: int = 3
    holdout: int | None = None
    noise_tolerance: float = 5.0
    progress: ProgressCallback | None = None

    def design(self, n_features: int) -> SPEXDesign:
        """The largest design that fits the budget (after the held-out masks)."""
        check_engine_arguments(self.budget, self.max_order, n_features)
        t = min(self.max_order, n_features)
        code_delays = BCHSyndromeCode(max(n_features, 2), t).n_delays
        identity = n_features <= code_delays
        n_delays = n_features if identity else code_delays
        available = self.budget - self._min_holdout()

        def make(bits: int) -> SPEXDesign:
            return SPEXDesign(bits, self.groups, t, n_delays, identity)

        bits = MIN_BUCKET_BITS
        while bits < MAX_BUCKET_BITS and make(bits + 1).queries <= available:
            bits += 1
        design = make(bits)
        if design.queries > available:
            raise BudgetTooSmallError(
                "SPEX",
                self.budget,
                design.queries + self._min_holdout(),
                f"{self.groups} groups x {2**MIN_BUCKET_BITS} buckets x {1 + n_delays} delays "
                f"for order {t} over {n_features} features, plus {self._min_holdout()} held-out masks",
            )
        return design

    def _min_holdout(self) -> int:
        return self.holdout if self.holdout is not None else MIN_HOLDOUT

    def holdout_size(self, design: SPEXDesign) -> int:
        """Held-out masks: ``holdout`` if set, else 5 % of the budget (16-200) within what is left."""
        if self.holdout is not None:
            return self.holdout
        target = int(np.clip(round(0.05 * self.budget), MIN_HOLDOUT, 200))
        return max(MIN_HOLDOUT, min(target, self.budget - design.queries))

    def explain(self, value_fn: ValueFunction, n_features: int) -> Interactions:
        """Explain ``value_fn`` over ``n_features`` features with SPEX (arXiv 2502.13870).

        Measures the masks of :meth:`design`: ``groups`` random hashes x ``2^b`` buckets x the zero delay plus
        the BCH delays (one delay per feature when that is fewer). A Walsh–Hadamard transform turns them into
        buckets; singleton buckets are decoded and peeled from the other groups, and the recovered support is
        refitted by least squares on every measured mask.
        ``faithfulness`` is the R² on :meth:`holdout_size` fresh uniformly random masks (those already
        measured are dropped). When the budget covers all ``2^n`` masks (``n <= 16``) every mask is measured
        and transformed exactly instead.

        Args:
            value_fn: maps a ``(k, n_features)`` bool batch (True = feature kept) to ``(k,)`` finite floats.
            n_features: number of features ``n``.

        Returns:
            Fourier coefficients of the recovered support (orders up to ``max_order``) plus the intercept,
            ``inferences_used <= budget`` and the design, decoding statistics and timings in ``details``.

        Raises:
            ValueError: ``budget``, ``max_order`` or ``n_features`` is not a positive int.
            BudgetTooSmallError: the smallest design plus the held-out masks does not fit the budget.
            ValueFunctionError: ``value_fn`` returned the wrong shape or a non-finite value.
        """
        started = time.perf_counter()
        check_engine_arguments(self.budget, self.max_order, n_features)
        if fits_exhaustively(n_features, self.budget):
            oracle = MaskOracle(value_fn, n_features, self.budget, self.batch_size, self.progress)
            return explain_exhaustively(oracle, n_features, min(self.max_order, n_features), "SPEX", started)
        design = self.design(n_features)
        rng = np.random.default_rng(self.seed)
        oracle = MaskOracle(value_fn, n_features, self.budget, self.batch_size, self.progress)
        code = BCHSyndromeCode(max(n_features, 2), design.t)
        if design.identity_delays:
            delays = np.eye(n_features, dtype=bool)
        else:
            delays = code.parity_check[:, :n_features]
        delays = np.concatenate([np.zeros((1, n_features), dtype=bool), delays])
        b = design.bucket_bits
        ells = ((np.arange(2**b)[:, None] >> np.arange(b)) & 1).astype(np.uint8)  # (2^b, b)

        hashes, patterns = [], []
        for _ in range(design.groups):
            m_c = rng.random((b, n_features)) < 0.5
            hashes.append(m_c)
            base = (ells @ m_c.astype(np.uint8)) % 2  # (2^b, n) masked bits
            patterns.append(base[None, :, :].astype(bool) ^ delays[:, None, :])  # (D, 2^b, n)
        masked_bits = np.stack(patterns)  # (C, D, 2^b, n)
        flat_masks = ~masked_bits.reshape(-1, n_features)  # True = kept
        values = oracle(flat_masks)
        buckets = walsh_hadamard(values.reshape(masked_bits.shape[:3]))  # (C, D, 2^b)

        support, decode_stats = self._peel(buckets, hashes, delays, code, design)

        holdout = uniform_masks(n_features, self.holdout_size(design), rng)
        holdout = holdout[[oracle.count_new(row[None, :]) == 1 for row in holdout]]
        hold_values = oracle(holdout) if len(holdout) else np.zeros(0)

        keys = [(), *sorted(k for k in support if k)]
        coef, faithfulness = refit_with_holdout(
            _fourier.design_matrix(keys, flat_masks),
            values,
            _fourier.design_matrix(keys, holdout),
            hold_values,
        )
        terms = dict(zip(keys, (float(c) for c in coef), strict=True))
        return Interactions(
            fourier=terms,
            n_features=n_features,
            faithfulness=faithfulness,
            inferences_used=oracle.used,
            method="SPEX",
            details={
                "bucket_bits": b,
                "groups": design.groups,
                "delays": design.n_delays,
                "identity_delays": design.identity_delays,
                "design_queries": design.queries,
                "holdout_masks": int(len(holdout)),
                **decode_stats,
                **oracle.timings(started),
            },
        )

    def _peel(
        self,
        buckets: np.ndarray,
        hashes: list[np.ndarray],
        delays: np.ndarray,
        code: BCHSyndromeCode,
        design: SPEXDesign,
    ) -> tuple[dict[tuple[int, ...], float], dict[str, object]]:
        """Iteratively decode singleton buckets and subtract them from every group."""
        scale = float(np.sqrt(np.mean(buckets**2))) or 1.0
        # Most buckets are empty or noise-only under sparsity: a low quantile of |U| estimates the noise
        # (|N(0, s^2)| has its 25th percentile at 0.319 s).
        noise = float(np.quantile(np.abs(buckets), 0.25)) / 0.319
        tol = max(self.noise_tolerance * noise, 1e-9 * scale)
        bit_weights = 1 << np.arange(design.bucket_bits)
        signs_cache: dict[tuple[int, ...], np.ndarray] = {}

        def delay_signs(k: tuple[int, ...]) -> np.ndarray:
            if k not in signs_cache:
                parity = np.zeros(len(delays), dtype=bool)
                if k:
                    parity = np.bitwise_xor.reduce(delays[:, list(k)], axis=1)
                signs_cache[k] = 1.0 - 2.0 * parity
            return signs_cache[k]

        def bucket_of(group: int, k: tuple[int, ...]) -> int:
            if not k:
                return 0
            bits = np.bitwise_xor.reduce(hashes[group][:, list(k)], axis=1)
            return int(bits.astype(np.int64) @ bit_weights)

        found: dict[tuple[int, ...], float] = {}
        rounds = 0
        rejected = 0
        changed = True
        while changed and rounds < 10 * buckets.shape[2]:
            changed = False
            rounds += 1
            for group in range(buckets.shape[0]):
                energy = np.max(np.abs(buckets[group]), axis=0)
                for j in np.nonzero(energy > tol)[0].tolist():
                    column = buckets[group, :, j]
                    head = column[0]
                    if abs(head) <= tol:
                        continue
                    bits = (column[1:] * head) < 0
                    if design.identity_delays:
                        k: tuple[int, ...] | None = tuple(np.nonzero(bits)[0].tolist())
                        if len(k) > design.t:
                            k = None
                    else:
                        k = code.decode(bits)
                    if k is None or bucket_of(group, k) != j:
                        rejected += 1
                        continue
                    signs = delay_signs(k)
                    if np.max(np.abs(column - head * signs)) > tol:
                        rejected += 1
                        continue
                    found[k] = found.get(k, 0.0) + head
                    for other in range(buckets.shape[0]):
                        buckets[other, :, bucket_of(other, k)] -= head * signs
                    changed = True
        residual = float(np.sqrt(np.mean(buckets**2)))
        stats = {
            "peeling_rounds": rounds,
            "rejected_buckets": rejected,
            "residual_bucket_rms": residual,
            "noise_estimate": noise,
        }
        return found, stats
