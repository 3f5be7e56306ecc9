"""End to end: generated traffic through the monitor with the embedded model, then the incident model.

Baseline from the first two windows; the unchanged model raises no alarm over three windows; swapping in
the broken-negation variant (same name and version: a silent swap) raises the alarm and the negation key
tuples lead the contributors. The store ends up with windows, a baseline and reports.
"""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.attribution import ProxySPEX
from spex_monitor.backends import LocalBackend
from spex_monitor.examples.embedded import model_path
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.explain import ExplainResult
from spex_monitor.lenses import classifier_value_function, text_masker
from spex_monitor.monitor.budget import Budget
from spex_monitor.monitor.sampling import StratifiedSampler
from spex_monitor.monitor.store_sqlite import SQLiteStore
from spex_monitor.monitor.windows import TumblingWindows
from spex_monitor.monitor.worker import Monitor, Observation

pytestmark = pytest.mark.integration


class SwappableExplainer:
    def __init__(self) -> None:
        self.backends = {
            v: LocalBackend.from_pretrained(model_path(v))
            for v in ("sentiment-base", "sentiment-broken-negation")
        }
        self.active = "sentiment-base"

    @property
    def backend(self) -> LocalBackend:
        return self.backends[self.active]

    def predict(self, text: str) -> tuple[str, float]:
        encoded = self.backend.tokenizer([text], return_tensors="np")
        logits = self.backend.logits(encoded["input_ids"], encoded["attention_mask"])[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return self.backend.model.config.id2label[int(np.argmax(p))], float(p.max())

    def __call__(self, observation: Observation):
        masker = text_masker(observation.text, self.backend.tokenizer)
        value_fn, _ = classifier_value_function(masker, self.backend)
        budget = min(2**masker.n_features, 256)
        result = ProxySPEX(budget=budget, max_order=3, seed=0).explain(value_fn, masker.n_features)
        return ExplainResult(result, [f.key for f in masker.features], 0, "")


def test_incident_is_detected_and_traced(tmp_path):
    explainer = SwappableExplainer()
    store = SQLiteStore(tmp_path / "monitor.db")
    monitor = Monitor(
        explainer=explainer,
        sampler=StratifiedSampler(rate=1.0, reservoir_per_label=25, seed=0),
        budget=Budget(inferences_per_second=1e9, burst=1e9),
        windows=TumblingWindows(window_s=None, window_requests=10_000),
        store=store,
        inferences_per_explanation=256,
        baseline_windows=2,
        min_window_requests=30,
        n_permutations=500,
    )
    texts, _ = generate_corpus(1200, seed=42)
    texts = [t for t in texts if len(t.split()) <= 9]
    results = []
    for window in range(7):
        if window == 5:
            explainer.active = "sentiment-broken-negation"  # the silent swap
        for i, text in enumerate(texts[window * 80 : (window + 1) * 80]):
            label, confidence = explainer.predict(text)
            monitor.observe(Observation(f"w{window}-r{i}", "sentiment", "v1", label, confidence, text=text))
        monitor.drain()
        results += monitor.tick(force=True)

    assert [r.report is None for r in results] == [True, True, False, False, False, False, False]
    quiet = [r.report.p_value for r in results[2:5]]
    incident = [r.report for r in results[5:]]
    assert all(p >= 0.01 for p in quiet), quiet
    assert all(r.p_value < 0.01 for r in incident), [r.p_value for r in incident]
    for report in incident:
        top = report.top_contributors(3)
        assert any("not" in c.key for c in top), top
        negation = next(c for c in top if "not" in c.key)
        assert negation.delta < 0 and negation.exemplars  # the interaction weakened; examples to look at
    assert store.baseline("sentiment", "v1") is not None
    assert len(store.windows("sentiment", "v1")) == 7
    assert [r["alarm"] for r in store.reports("sentiment")] == [False, False, False, True, True]
    hits = store.explanations("sentiment", key=incident[0].top_contributors(1)[0].key, limit=5)
    assert hits  # on-call can pull requests where the moved interaction mattered
    assert monitor.counters["explanations:ok"] > 300
    store.close()
