"""The explain layer (issue 16 items 3-5): one frozen request, one result, registries that cover every
configured kind, and a ModelExplainer that computes exactly what the lens + backend + engine pipeline
computes when assembled by hand (the ground truth here)."""

from __future__ import annotations

import dataclasses
import pickle
import typing

import numpy as np
import pytest

from spex_monitor.attribution import SPEX, Engine, ProxySPEX
from spex_monitor.config import EngineConfig, ModelConfig, Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.explain import ExplainDeadlineError, ExplainRequest, ExplainResult
from spex_monitor.explain.backends import BACKENDS, build_backend
from spex_monitor.explain.engines import ENGINES, make_engine
from spex_monitor.explain.explainer import ModelExplainer
from spex_monitor.explain.values import VALUE_BUILDERS
from spex_monitor.lenses import classifier_value_function, text_masker


def _kinds(union: object) -> set[str]:
    """The ``kind`` literals of a config class or a union of them."""
    members = typing.get_args(union) or (union,)
    return {typing.get_args(m.model_fields["kind"].annotation)[0] for m in members}


def test_every_configurable_kind_has_exactly_one_registration():
    assert set(ENGINES) == set(typing.get_args(EngineConfig.model_fields["kind"].annotation))
    backends = _kinds(ModelConfig.model_fields["backend"].annotation)
    assert set(BACKENDS) == backends == {"local", "oip", "causal", "openai"}
    lenses = _kinds(ModelConfig.model_fields["lens"].annotation)
    assert set(VALUE_BUILDERS) == lenses == {"text", "fields", "prompt"}


@pytest.mark.parametrize("kind", ["proxyspex", "spex"])
def test_both_engines_satisfy_the_engine_protocol(kind):
    engine = make_engine(EngineConfig(kind=kind, budget=2000), n_features=40)
    assert isinstance(engine, Engine) and isinstance(engine, (ProxySPEX, SPEX))
    assert engine.budget == 2000
    assert make_engine(EngineConfig(kind=kind, budget=2000), n_features=5).budget == 32  # every mask


def test_the_request_is_frozen_and_crosses_a_process_boundary():
    request = ExplainRequest("m", text="not good", budget=64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.budget = 10  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(request)) == request
    later = dataclasses.replace(request, deadline=1.0)
    assert later.deadline == 1.0 and request.deadline is None


@pytest.fixture(scope="module")
def explainer():
    settings = Settings.model_validate(
        {
            "models": [
                {"name": "sentiment", "backend": {"kind": "local", "path": str(model_path("sentiment-base"))}}
            ],
            "engine": {"budget": 128, "max_order": 2},
        }
    )
    model = settings.models[0]
    return ModelExplainer(model, settings.engine, build_backend(model.backend), seed=3)


def test_model_explainer_equals_the_pipeline_assembled_by_hand(explainer):
    text = "the plot was not good"
    result = explainer.explain(ExplainRequest("sentiment", text=text))
    assert isinstance(result, ExplainResult)
    backend = explainer.backend
    masker = text_masker(text, backend.tokenizer, "words", 64, "mask", max_length=backend.max_length)
    value_fn, target = classifier_value_function(masker, backend)
    by_hand = ProxySPEX(budget=32, max_order=2, seed=3).explain(value_fn, masker.n_features)  # 2^5 masks
    assert result.keys == [f.key for f in masker.features] == text.split()
    assert (result.target, result.label) == (target, "negative")
    assert result.interactions.fourier.keys() == by_hand.fourier.keys()
    for term, coef in by_hand.fourier.items():
        assert result.interactions.fourier[term] == pytest.approx(coef, abs=1e-9)
    assert result.batches == [] and result.health == {}  # the runner fills them


def test_missing_input_and_a_passed_deadline_are_named(explainer):
    with pytest.raises(ValueError, match="input: give text, fields or a generation"):
        explainer.explain(ExplainRequest("sentiment"))
    with pytest.raises(ValueError, match="text: model 'sentiment' takes text"):
        explainer.explain(ExplainRequest("sentiment", fields={"age": 1.0}))
    with pytest.raises(ExplainDeadlineError):
        explainer.explain(ExplainRequest("sentiment", text="not good", deadline=1.0))


def test_a_deadline_stops_the_engine_after_a_batch():
    calls = []
    engine = make_engine(EngineConfig(budget=2000), 40, deadline=0.0)

    def value_fn(masks: np.ndarray) -> np.ndarray:
        calls.append(len(masks))
        return masks.sum(axis=1).astype(float)

    with pytest.raises(ExplainDeadlineError):
        engine.explain(value_fn, 40)
    assert calls == [256]  # one batch of DEADLINE_BATCH_ROWS, then the clock check


def test_a_remote_backend_names_its_classes_from_its_configured_labels():
    """Issue 19 item 6: against an OIP backend (the demo stack) explain printed the class index."""
    from types import SimpleNamespace

    from spex_monitor.config import OIPBackendConfig
    from spex_monitor.explain.backends import build_oip, class_labels, label_name

    config = OIPBackendConfig(
        kind="oip", endpoints=["127.0.0.1:1"], model_name="sentiment", labels=["negative", "positive"]
    )
    assert class_labels(config) == {0: "negative", 1: "positive"}
    backend = build_oip(config)
    try:
        assert label_name(backend, 0) == "negative" and label_name(backend, 1) == "positive"
        assert label_name(backend, 7) == "7"  # an index past the names stays a number
    finally:
        getattr(backend, "close", lambda: None)()
    unnamed = OIPBackendConfig(kind="oip", endpoints=["127.0.0.1:1"], model_name="sentiment")
    assert class_labels(unnamed) is None and label_name(SimpleNamespace(), 1) == "1"
