"""From an alarm's key tuple to the training data behind it: the data lens over groups of training examples.

The value of a subset ``S`` of training groups is the tuple's joint effect on one exemplar request after
retraining the model's head on ``S`` alone: the mixed difference, over the tuple's words, of the log-odds
of the class the fully trained head predicts (:func:`.training.tuple_contrast`). ProxySPEX fits that
function of the groups; a group's Banzhaf value is how much its presence moves the tuple's joint effect on
average over the other groups (Data Banzhaf, Wang & Jia 2023), and pair terms name groups that only matter
together. Groups are ranked by Banzhaf value in the direction of the effect with all the data, so the
first ones are those that *make* the tuple decisive — poisoned examples behind a trigger, for instance.

Then the rows of the top groups are ranked the same way (one retrain per mask, the other groups' rows
kept), so the trace names examples, not only groups.

Cost: one retrain of the head per mask (``budget`` for the groups, ``row_budget`` for the rows), each on
about half of the training set; results are cached on disk by training-set fingerprint, exemplar, tuple,
budgets and seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..attribution import ProxySPEX
from ..keys import normalize_key
from .data import DataLens
from .training import TrainingSet, class_name, tuple_contrast, word_keys

FORMAT = 3  # bump when DataTrace's JSON changes: older cache files are then recomputed
MIN_ROW_BUDGET = 40  # ProxySPEX's smallest design at max_order 1; a row budget is 0 (skip) or at least this
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankedGroup:
    """One training group: its Banzhaf value on the tuple's joint effect (log-odds units, signed so that
    positive drives the effect the way it goes with all the data), its size, and its rows that hold every
    word of the tuple."""

    group: str
    banzhaf: float
    rows: int
    tuple_rows: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class RankedExample:
    """One training example of a top group: row index, group, text, label and Banzhaf value (as above)."""

    row: int
    group: str
    text: str
    label: int
    banzhaf: float


@dataclass(frozen=True)
class DataTrace:
    """What the data lens found for one key tuple on one exemplar request.

    Attributes:
        keys: the tuple's monitor keys.
        exemplar: the request text the effect is measured on.
        target: the class whose log-odds is differenced (the fully trained head's prediction).
        target_name: its name (``TrainingSet.class_names``).
        training_set: the training set's name.
        effect_all: the tuple's joint effect with every group kept (log-odds).
        groups: every group, ranked (strongest driver first).
        group_pairs: the strongest pair terms between groups, ``(group, group, Banzhaf interaction)``:
            negative when either group alone does most of what both do (redundant), positive when they
            matter only together.
        examples: rows of the top groups, ranked.
        faithfulness: held-out R² of the group fit.
        budget: the group fit's budget (retrains).
        retrains: distinct training subsets scored (groups and rows together; a one-class subset scores
            the class prior without a fit).
        seconds: wall time of the computation (0 when read from the cache).
        class_names: label names by class id (for printing training labels).
        cached: True when read from the cache.
    """

    keys: tuple[str, ...]
    exemplar: str
    target: int
    target_name: str
    training_set: str
    effect_all: float
    groups: list[RankedGroup]
    group_pairs: list[tuple[str, str, float]]
    examples: list[RankedExample]
    faithfulness: float
    budget: int
    retrains: int
    seconds: float
    class_names: list[str] = field(default_factory=list)
    cached: bool = False

    def label_name(self, label: int) -> str:
        """The name of class ``label`` (its number when ``class_names`` does not name it)."""
        return class_name(self.class_names, label)

    def to_json(self) -> str:
        """JSON text of the whole result (the cache file's content; a non-finite R² is written as null)."""
        raw = asdict(self)
        if not math.isfinite(raw["faithfulness"]):
            raw["faithfulness"] = None
        return json.dumps({"format": FORMAT, **raw}, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> DataTrace:
        """Read :meth:`to_json` output.

        Raises:
            ValueError: another format, or a field missing.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.pop("format", None) != FORMAT:
            raise ValueError("data trace cache: another format")
        raw["faithfulness"] = float("nan") if raw.get("faithfulness") is None else raw["faithfulness"]
        raw["keys"] = tuple(raw["keys"])
        raw["groups"] = [RankedGroup(**g) for g in raw["groups"]]
        raw["examples"] = [RankedExample(**e) for e in raw["examples"]]
        raw["group_pairs"] = [tuple(p) for p in raw["group_pairs"]]
        return cls(**raw)


Progress = Callable[[str, int, int], None]


def trace_training_data(
    training: TrainingSet,
    exemplar: str,
    keys: Sequence[str],
    *,
    budget: int = 1000,
    row_budget: int = 300,
    top_groups: int = 3,
    max_order: int = 2,
    seed: int = 0,
    n_jobs: int = 2,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    refresh: bool = False,
) -> DataTrace:
    """Rank the training groups (then the rows of the ``top_groups`` strongest) by how much they drive the
    joint effect of ``keys`` on ``exemplar``.

    Args:
        training: the model's training set and retrainable head.
        exemplar: a request text that holds every word of ``keys``.
        keys: the alarm's key tuple (1–6 words).
        budget: head retrains for the group fit (ProxySPEX's budget); at least 64.
        row_budget: head retrains for the row fit of the top groups: 0 (skip it) or at least 40.
        top_groups: groups whose rows are ranked.
        max_order: highest order of group interactions fitted.
        seed: seeds mask sampling and the proxy.
        n_jobs: parallel retrains.
        cache_dir: where results are cached (``None``: no cache); the key holds the training set's
            fingerprint and the featurized ablations of the exemplar, so a changed featurizer misses it.
        refresh: recompute and overwrite a cached result.
        progress: ``progress(stage, retrains_done, budget)`` after every batch of retrains.

    Raises:
        ValueError: a key the exemplar lacks, a training set with fewer than 2 groups, a budget below 64,
            a row budget in 1–39, a cache folder that cannot be written, or a tuple without any joint
            effect on the exemplar with all the data (nothing to trace).
    """
    check_budgets(budget, row_budget)
    if len(set(training.groups)) < 2:
        found = len(set(training.groups))
        raise ValueError(f"the training set has {found} group; the data lens needs 2 or more")
    wanted = tuple(normalize_key(k) for k in keys)
    texts, weights = tuple_contrast(exemplar, wanted, training.mask_word)  # raises on a missing key
    began = time.perf_counter()
    query = training.featurize(texts)  # cheap (2^|T| texts), and part of the cache key
    numbers = (budget, row_budget, top_groups, max_order, seed)
    key = _cache_key(training, exemplar, wanted, _digest(query), *numbers)
    cached = None if refresh else _read_cache(cache_dir, key)
    if cached is not None:
        return cached
    writable(cache_dir)
    x_train = training.train_features()
    lens = DataLens(x_train, training.labels, query, groups=list(training.groups),
                    model_factory=training.model_factory, query_weights=weights, n_jobs=n_jobs)  # fmt: skip
    # One fit on all the data gives the target class (what that head predicts for the exemplar, query 0:
    # log-odds of class 1 above 0) and the effect; the lens's values are then signed for the target.
    log_odds_all = lens.outputs(np.ones(lens.n_features, dtype=bool))
    target = int(log_odds_all[0] > 0)
    sign = 1.0 if target == 1 else -1.0
    effect_all = sign * float(weights @ log_odds_all)
    names = [f.key.removeprefix("group:") for f in lens.features]
    if not abs(effect_all) > 1e-9:
        raise ValueError(
            f"{' × '.join(wanted)} has no joint effect on this exemplar with all the training data: nothing "
            "to trace (a linear head on separate word or n-gram counts adds the words' effects, so it has "
            "none; give it features that combine them, like word-pair counts; and check that featurize "
            "sees the words as the monitor keys them)"
        )
    direction = 1.0 if effect_all > 0 else -1.0
    engine = ProxySPEX(
        budget=budget,
        max_order=max_order,
        seed=seed,
        progress=(lambda done, total: progress("groups", done, total)) if progress else None,
    )
    fit = engine.explain(lambda masks: sign * lens.value_function(masks), lens.n_features)
    banzhaf = direction * fit.banzhaf_values()
    members = lens.members
    tuple_words = set(wanted)
    groups = [
        RankedGroup(
            group=names[i],
            banzhaf=float(banzhaf[i]),
            rows=int(members[i].size),
            tuple_rows=[int(r) for r in members[i] if tuple_words <= word_keys(training.texts[r])],
        )
        for i in np.argsort(-banzhaf, kind="stable")
    ]
    pairs = sorted(
        (
            (names[k[0]], names[k[1]], direction * v)
            for k, v in fit.interaction_index("BII", 2).items()
            if len(k) == 2 and v
        ),  # fmt: skip
        key=lambda p: -abs(p[2]),
    )[:5]
    retrains = lens.retrains
    examples: list[RankedExample] = []
    if row_budget:
        examples, row_retrains = _rank_rows(
            training, dict(zip(names, members, strict=True)), query, sign * weights, groups[:top_groups],
            direction, row_budget, seed, n_jobs, progress,
        )  # fmt: skip
        retrains += row_retrains
    result = DataTrace(
        keys=wanted,
        exemplar=exemplar,
        target=target,
        target_name=class_name(training.class_names, target),
        training_set=training.name,
        effect_all=effect_all,
        groups=groups,
        group_pairs=[(a, b, float(v)) for a, b, v in pairs],
        examples=examples,
        faithfulness=float(fit.faithfulness),
        budget=budget,
        retrains=retrains,
        seconds=round(time.perf_counter() - began, 2),
        class_names=[str(c) for c in training.class_names],
    )
    _write_cache(cache_dir, key, result)
    return result


def _rank_rows(
    training: TrainingSet,
    members_of: dict[str, np.ndarray],
    query: object,
    weights: np.ndarray,
    top: Sequence[RankedGroup],
    direction: float,
    budget: int,
    seed: int,
    n_jobs: int,
    progress: Progress | None,
) -> tuple[list[RankedExample], int]:
    """Banzhaf values of the rows of the ``top`` groups (``members_of``: each group's training rows), every
    other group's rows kept in each retrain."""
    rows = np.concatenate([members_of[g.group] for g in top]) if top else np.zeros(0, dtype=int)
    if rows.size < 2:
        return [], 0
    lens = DataLens(
        training.train_features(),
        training.labels,
        query,
        model_factory=training.model_factory,
        query_weights=weights,
        always_kept=np.setdiff1d(np.arange(len(training.labels)), rows).tolist(),
        n_jobs=n_jobs,
    )
    rows = np.concatenate(lens.members)  # the features: one row each, in row order
    engine = ProxySPEX(
        budget=budget,
        max_order=1,
        seed=seed,
        progress=(lambda done, total: progress("rows", done, total)) if progress else None,
    )
    fit = engine.explain(lens.value_function, rows.size)
    values = direction * fit.banzhaf_values()
    group_of = {int(r): g.group for g in top for r in members_of[g.group]}
    ranked = [
        RankedExample(
            row=int(rows[i]),
            group=group_of[int(rows[i])],
            text=str(training.texts[rows[i]]),
            label=int(training.labels[rows[i]]),
            banzhaf=float(values[i]),
        )
        for i in np.argsort(-values, kind="stable")
    ]
    return ranked, lens.retrains




def check_budgets(budget: int, row_budget: int) -> None:
    """Refuse a group budget below 64 or a row budget in 1–39 (``ValueError`` naming it)."""
    if budget < 64:
        raise ValueError(f"budget: at least 64 retrains, got {budget}")
    if row_budget < 0 or 0 < row_budget < MIN_ROW_BUDGET:
        wanted = f"0 (skip the rows) or at least {MIN_ROW_BUDGET} retrains"
        raise ValueError(f"row_budget: {wanted}, got {row_budget}")


def writable(cache_dir: Path | None) -> None:
    """Make sure results can be cached in ``cache_dir`` before any work (``ValueError`` naming it)."""
    if cache_dir is None:
        return
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        probe = Path(cache_dir) / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"cache_dir {str(cache_dir)!r}: cannot write there ({reason})") from error


def _digest(features: object) -> str:
    """SHA-256 of a dense or SciPy sparse feature matrix's values (and layout)."""
    digest = hashlib.sha256()
    if hasattr(features, "tocsr"):
        csr = features.tocsr()  # type: ignore[attr-defined]
        parts = (csr.data, csr.indices, csr.indptr, np.asarray(csr.shape))
    else:
        array = np.ascontiguousarray(features)
        parts = (array, np.asarray(array.shape))
    for part in parts:
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


def _cache_key(training: TrainingSet, exemplar: str, keys: tuple[str, ...], query: str, *numbers: int) -> str:
    digest = hashlib.sha256(training.fingerprint().encode())
    digest.update(json.dumps([exemplar, list(keys), query, list(numbers), FORMAT]).encode())
    return digest.hexdigest()[:32]


def _read_cache(cache_dir: Path | None, key: str) -> DataTrace | None:
    if cache_dir is None:
        return None
    path = Path(cache_dir) / f"data-trace-{key}.json"
    try:
        found = DataTrace.from_json(path.read_text())
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # no file, or one from another version: recompute
    return DataTrace(**{**found.__dict__, "cached": True, "seconds": 0.0})


def _write_cache(cache_dir: Path | None, key: str, result: DataTrace) -> None:
    if cache_dir is None:
        return
    folder = Path(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".data-trace-{key}.json.tmp"
        temporary.write_text(result.to_json())
        temporary.replace(folder / f"data-trace-{key}.json")
    except OSError as error:  # the result stands; only the cache is lost
        log.warning("data trace: not cached in %s: %s", folder, error)
