"""Issue 15 items 1 and 2: every exception crossing the worker boundary survives pickling, and faithfulness
does not depend on a constant offset of the value function (and is never infinite)."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import grpc
import numpy as np
import pytest

import spex_monitor
from spex_monitor.attribution import SPEX, BudgetTooSmallError, ProxySPEX, ValueFunctionError
from spex_monitor.attribution.metrics import r2_score
from spex_monitor.attribution.oracle import BudgetExhaustedError

# One way to build each exception class the package defines. A new class without an entry fails the test.
EXAMPLES = {
    "AttributionError": ("x",),
    "BudgetTooSmallError": ("SPEX", 16, 236, "3 groups"),
    "ValueFunctionError": ("value_fn returned NaN",),
    "BudgetExhaustedError": ("engine asked for too much",),
    "InvalidObservation": ("text: empty",),
    "ExplainWorkerLostError": ("worker died",),
    "ExplainWorkerError": ("KeyError", "'x'"),
    "ExplainDeadlineError": (12.5,),
    "PayloadError": ("inputs: empty",),
    "ConfigError": ("c.yaml", [("engine.budget", "too small")]),
    "BackendUnavailableError": ("no replica",),
    "ReplicaResponseError": ("bad shape",),
    "ReplicaRequestError": ("HTTP 400 from http://127.0.0.1:8000/v1/completions: prompt too long",),
    "GenerationArgsError": ("--completion: required for a generation",),
    "NotObservable": ("answer is not JSON",),
    "_Retryable": ("HTTP 503",),
    "PatternError": ("not RE2",),
    "MapTooLargeError": ("map: too large",),
    "EnvValueError": ("models.3", "no entry 3"),
    "Refusal": (grpc.StatusCode.RESOURCE_EXHAUSTED, "explain: busy"),
    "StoreUnavailableError": ("store.url: cannot open postgresql://spex@db/spex: refused",),
    "DataTraceError": ("--data needs the model's training set",),
}


def _package_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    skip = ("spex_monitor.protocol", "spex_monitor.demo", "spex_monitor.bench", "spex_monitor.examples")
    names = [m.name for m in pkgutil.walk_packages(spex_monitor.__path__, "spex_monitor.")]
    server = importlib.import_module("spex_monitor.server")  # a namespace package: walk it by hand
    names += [m.name for m in pkgutil.iter_modules(server.__path__, "spex_monitor.server.")]
    for name in names:
        if name.startswith(skip):
            continue
        module = importlib.import_module(name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[name] = value
    return found


def test_every_package_exception_survives_a_pickle_round_trip():
    classes = _package_exceptions()
    assert {"BudgetTooSmallError", "ConfigError", "ExplainWorkerLostError"} <= set(classes)
    missing = sorted(set(classes) - set(EXAMPLES))
    assert not missing, f"add an example for {missing}"
    for name, cls in classes.items():
        original = cls(*EXAMPLES[name])
        original.health = {"local": True}  # what the worker attaches before raising
        copy = pickle.loads(pickle.dumps(original))
        assert type(copy) is cls and str(copy) == str(original), name
        assert copy.health == {"local": True}, name


def test_budget_too_small_keeps_its_fields_and_text_across_pickling():
    error = pickle.loads(pickle.dumps(BudgetTooSmallError("ProxySPEX", 16, 40, "or exact")))
    assert (error.engine, error.budget, error.minimum) == ("ProxySPEX", 16, 40)
    assert "budget is too small; the minimum is 40" in str(error)


class Odd(Exception):
    def __init__(self, a: int, b: int) -> None:  # cannot be rebuilt from its args alone
        super().__init__(f"{a}/{b}")


def test_an_unpicklable_worker_exception_becomes_a_stand_in():
    from spex_monitor.explain.runner import ExplainWorkerError, picklable

    odd = Odd(1, 2)
    odd.batches = [1]
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(odd))
    stand_in = picklable(odd)
    assert isinstance(stand_in, ExplainWorkerError) and "Odd: 1/2" in str(stand_in)
    assert pickle.loads(pickle.dumps(stand_in)).batches == [1]
    fine = ValueFunctionError("x")
    assert picklable(fine) is fine


@pytest.mark.parametrize("engine", [ProxySPEX(budget=300, seed=0), SPEX(budget=1200, seed=0)])
def test_a_constant_value_function_is_explained_exactly(engine):
    n = 20  # beyond the exhaustive path (2^20 masks > budget)
    result = engine.explain(lambda masks: np.full(len(masks), 3.0), n)
    assert result.faithfulness == 1.0
    assert result.fourier[()] == pytest.approx(3.0, abs=1e-9)
    assert all(abs(c) < 1e-9 for t, c in result.fourier.items() if t)


@pytest.mark.parametrize("make", [lambda: ProxySPEX(budget=600, seed=1), lambda: SPEX(budget=1500, seed=1)])
def test_a_constant_offset_does_not_change_faithfulness(make):
    n = 24
    weights = np.zeros(n)
    weights[[2, 5, 11, 17, 23]] = np.random.default_rng(3).normal(size=5)  # sparse: both engines' regime

    def linear(masks: np.ndarray) -> np.ndarray:
        return 1e-4 * ((2.0 * masks - 1.0) @ weights)

    plain = make().explain(linear, n)
    offset = make().explain(lambda masks: 20.0 + linear(masks), n)
    assert plain.faithfulness > 0.999
    assert offset.faithfulness == pytest.approx(plain.faithfulness, abs=1e-6)


def test_r2_is_finite_for_zero_variance_held_out_values():
    assert r2_score(np.full(10, 3.0), np.full(10, 3.0 + 1e-13)) == 1.0
    assert r2_score(np.full(10, 3.0), np.full(10, 2.0)) == 0.0
    assert r2_score(np.zeros(4), np.zeros(4)) == 1.0
    assert np.isfinite(r2_score(np.array([1.0, 1.0 + 1e-15, 1.0]), np.array([5.0, 5.0, 5.0])))
    assert r2_score(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 1.0
    assert np.isnan(r2_score(np.array([1.0]), np.array([1.0])))


def test_budget_exhausted_is_an_attribution_error():
    assert issubclass(BudgetExhaustedError, ValueError)
