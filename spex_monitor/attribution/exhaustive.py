"""The exact path: when the budget covers all ``2^n`` masks, measure them all and transform exactly."""

from __future__ import annotations

from . import fourier as _fourier
from .bruteforce import MAX_BRUTE_FORCE_FEATURES, fourier_transform
from .interactions import Interactions
from .masks import all_masks
from .metrics import r2_score
from .oracle import MaskOracle


def fits_exhaustively(n_features: int, budget: int) -> bool:
    """Whether the exact path applies: ``n_features`` is at most 16 and the budget pays for all ``2^n``
    masks."""
    return n_features <= MAX_BRUTE_FORCE_FEATURES and 2**n_features <= budget


def explain_exhaustively(
    oracle: MaskOracle, n_features: int, max_order: int, engine: str, started: float
) -> Interactions:
    """Measure all ``2^n_features`` masks through ``oracle`` and return their exact Fourier transform.

    Terms above ``max_order`` are dropped; ``faithfulness`` is the R² of that truncation over every mask
    (the population figure: nothing is left to hold out, and nothing needs to be). ``engine`` names the
    method (``"<engine>(exhaustive)"``); ``started`` is the ``time.perf_counter()`` reading the timings in
    ``details`` count from.

    Raises:
        ValueFunctionError: the value function returned the wrong shape or a non-finite value.
    """
    masks = all_masks(n_features)
    values = oracle(masks)
    terms = {k: v for k, v in fourier_transform(values).items() if len(k) <= max_order}
    terms.setdefault((), 0.0)
    predicted = _fourier.evaluate(_fourier.group_by_order(terms), masks)
    return Interactions(
        fourier=terms,
        n_features=n_features,
        # Every mask was measured: this is the exact population R² of the order truncation.
        faithfulness=r2_score(values, predicted),
        inferences_used=oracle.used,
        method=f"{engine}(exhaustive)",
        details={
            **oracle.timings(started),
        },
    )
