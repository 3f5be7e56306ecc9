"""Explained request pools: each (variant, traffic profile, budget) explained once, then resampled.

Explanations are the expensive part of the benchmark, and they are deterministic (fixed engine seed, one
torch thread, exact same value function), so each request of a pool is explained once — through the
sidecar's own path, :class:`~spex_monitor.explain.explainer.ModelExplainer` with the local backend — and
windows are built by resampling pooled requests with replacement. Results are kept in memory and, when a
cache folder is given, on disk (pickles keyed by everything that changes the result).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..attribution import Interactions
from ..backends import LocalBackend
from ..config import EngineConfig, LocalBackendConfig, ModelConfig
from ..examples.embedded import model_path
from ..explain import ExplainRequest
from ..explain.explainer import ModelExplainer
from .traffic import TrafficProfile, generate_traffic
from .variants import Variant

CACHE_VERSION = 1


@dataclass(frozen=True)
class Explained:
    """One explained request: its feature keys and the engine's sparse Fourier coefficients."""

    keys: tuple[str, ...]
    fourier: dict[tuple[int, ...], float]
    faithfulness: float
    inferences: int

    def interactions(self) -> Interactions:
        """The stored explanation as :class:`Interactions` (one feature per key); its value is the text
        lens's log-odds, whose decision boundary is 0 (what the decisive-interaction test reads). One
        object per request, so its Möbius transform is computed once however often it is resampled."""
        return self._interactions

    @cached_property
    def _interactions(self) -> Interactions:
        details = {"decision_boundary": 0.0}
        return Interactions(self.fourier, len(self.keys), self.faithfulness, self.inferences, details=details)


@dataclass
class Pool:
    """Observed traffic of one (variant, profile) with its predictions; the first ``len(explained)``
    requests are explained at ``budget`` inferences each."""

    variant: str
    profile: str
    budget: int
    texts: list[str]
    tokens: list[list[str]]
    labels: list[str]
    confidence: np.ndarray
    explained: list[Explained]
    explain_seconds: float  # wall time spent explaining (0 when everything came from the cache)


def predict(backend: LocalBackend, texts: list[str], batch: int = 256) -> tuple[list[str], np.ndarray]:
    """Served label and confidence (max class probability) of every text, as the sidecar observes them."""
    id2label = backend.model.config.id2label
    labels: list[str] = []
    confidence = []
    for start in range(0, len(texts), batch):
        encoded = backend.tokenizer(texts[start : start + batch], padding=True, return_tensors="np")
        logits = backend.logits(encoded["input_ids"], encoded["attention_mask"])
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        labels += [str(id2label[int(c)]) for c in p.argmax(axis=1)]
        confidence.append(p.max(axis=1))
    return labels, np.concatenate(confidence) if confidence else np.zeros(0)


def _fingerprint(variant: Variant) -> str:
    folder = model_path(variant.folder)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes())
    calibration = folder / "calibration.json"  # a served calibrator changes every output too
    if calibration.exists():
        digest.update(calibration.read_bytes())
    return digest.hexdigest()[:16]


class PoolBuilder:
    """Builds pools for one benchmark configuration, reusing work across variants and runs.

    Args:
        n_observed: requests of observed traffic per (variant, profile) (cheap: one forward each).
        n_explained: how many of them are explained (the expensive part).
        max_order: engine ``max_order`` (the sidecar's default is 3).
        cache_dir: optional folder for pickled pools (never committed).
        log: progress lines go here.
    """

    def __init__(
        self,
        n_observed: int,
        n_explained: int,
        max_order: int = 3,
        cache_dir: Path | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        if not 1 <= n_explained <= n_observed:
            raise ValueError("need 1 <= n_explained <= n_observed")
        self.n_observed = n_observed
        self.n_explained = n_explained
        self.max_order = max_order
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.log = log
        self._backends: dict[str, LocalBackend] = {}
        self._pools: dict[tuple[str, str, int, int], Pool] = {}

    def _backend(self, variant: Variant) -> LocalBackend:
        if variant.name not in self._backends:
            self._backends[variant.name] = variant.backend()
        return self._backends[variant.name]

    def _cache_file(self, variant: Variant, profile: TrafficProfile, seed: int, budget: int) -> Path | None:
        if self.cache_dir is None:
            return None
        key = json.dumps(
            [
                CACHE_VERSION,
                variant.name,
                variant.folder,
                variant.words,
                _fingerprint(variant),
                repr(profile),
                seed,
                budget,
                self.n_observed,
                self.n_explained,
                self.max_order,
            ]
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return self.cache_dir / f"{variant.name}-{profile.name}-b{budget}-s{seed}-{digest}.pkl"

    def pool(
        self, variant: Variant, profile: TrafficProfile, seed: int, budget: int, base: Variant | None = None
    ) -> Pool:
        """The pool of ``variant`` on ``profile`` traffic drawn with ``seed``.

        With ``base`` given and ``variant.affects`` set, explanations of inputs the variant provably does
        not affect are taken from ``base``'s pool (they are the same computation).
        """
        memo = (variant.name, profile.name, seed, budget)
        if memo in self._pools:
            return self._pools[memo]
        path = self._cache_file(variant, profile, seed, budget)
        if path is not None and path.exists():
            with path.open("rb") as handle:
                pool: Pool = pickle.load(handle)
            pool.explain_seconds = 0.0
            self._pools[memo] = pool
            return pool
        texts = generate_traffic(profile, self.n_observed, seed)
        backend = self._backend(variant)
        labels, confidence = predict(backend, texts)
        reuse = None
        if base is not None and variant.affects is not None:
            reuse = self.pool(base, profile, seed, budget)
        explainer = ModelExplainer(
            ModelConfig(name="bench", backend=LocalBackendConfig(path=model_path(variant.folder))),
            EngineConfig(budget=budget, max_order=self.max_order),
            backend,
        )
        began = time.perf_counter()
        explained = []
        fresh = 0
        for index, text in enumerate(texts[: self.n_explained]):
            if reuse is not None and variant.affects is not None and not variant.affects(text):
                explained.append(reuse.explained[index])
                continue
            result = explainer.explain(ExplainRequest("bench", text=text, budget=budget))
            found = result.interactions
            explained.append(
                Explained(tuple(result.keys), dict(found.fourier), found.faithfulness, found.inferences_used)
            )
            fresh += 1
        seconds = time.perf_counter() - began
        self.log(
            f"  pool {variant.name:>17} × {profile.name:<11} budget {budget:>4}: {fresh} explained "
            f"({len(explained) - fresh} reused) in {seconds:.1f}s"
        )
        pool = Pool(
            variant.name,
            profile.name,
            budget,
            texts,
            [t.lower().split() for t in texts],
            labels,
            confidence,
            explained,
            seconds,
        )
        self._pools[memo] = pool
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as handle:
                pickle.dump(pool, handle)
            tmp.replace(path)
        return pool
