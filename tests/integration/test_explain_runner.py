"""Explanations in worker processes: same answers as in-process, lower CPU priority, survive kill -9."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from spex_monitor.config import Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.explain import ExplainRequest
from spex_monitor.explain.runner import ExplainWorkerLostError, ProcessRunner, ThreadRunner

pytestmark = pytest.mark.integration

LONG = " and ".join(["the plot was not good but the music was great"] * 6)


def _settings(path: str) -> Settings:
    return Settings.model_validate(
        {
            "models": [{"name": "sentiment", "backend": {"kind": "local", "path": path}}],
            "engine": {"budget": 128, "max_order": 2},
            "server": {"workers": 1},
        }
    )


@pytest.fixture(scope="module")
def runner():
    process = ProcessRunner(_settings(str(model_path("sentiment-base"))), workers=1, nice=5).start()
    yield process
    process.close()


def test_process_runner_matches_the_thread_runner(runner):
    settings = _settings(str(model_path("sentiment-base")))
    here = ThreadRunner(settings).explain(ExplainRequest("sentiment", text="the plot was not good"))
    there = runner.explain(ExplainRequest("sentiment", text="the plot was not good"))
    assert there.keys == here.keys and there.label == here.label == "negative"
    assert there.interactions.fourier.keys() == here.interactions.fourier.keys()
    for term, coef in here.interactions.fourier.items():
        assert there.interactions.fourier[term] == pytest.approx(coef, rel=1e-4, abs=1e-5)
    # every ablation row, plus the one unmasked forward that picks the class to explain
    assert sum(b.rows for b in there.batches) == there.interactions.inferences_used + 1
    assert there.health == {"local": True}


def test_a_budget_below_the_minimum_fails_that_call_and_keeps_the_pool(runner):
    """BudgetTooSmallError once could not be unpickled in the parent, which broke the pool: every later
    call answered 'an explain worker process died' and the workers were restarted."""
    from spex_monitor.attribution import BudgetTooSmallError

    pids = list(runner.worker_pids)
    with pytest.raises(BudgetTooSmallError, match="budget is too small; the minimum is 40"):
        runner.explain(ExplainRequest("sentiment", text="the plot was not very good", budget=16))
    again = runner.explain(ExplainRequest("sentiment", text="the plot was not good"))
    assert again.label == "negative" and runner.worker_pids == pids
    assert runner._pool is not None and not runner._pool._broken


def test_thread_runner_returns_each_batch_once_even_from_concurrent_explanations():
    """Both runners hand batches back in the outcome; the thread runner's come from backend threads."""
    here = ThreadRunner(_settings(str(model_path("sentiment-base"))))
    outcomes = []
    threads = [
        threading.Thread(
            target=lambda t=text: outcomes.append(here.explain(ExplainRequest("sentiment", text=t)))
        )
        for text in ("the plot was not good", "i did not hate the movie", "not bad at all")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(outcomes) == 3
    batches = [batch for outcome in outcomes for batch in outcome.batches]
    assert sum(b.rows for b in batches) == sum(o.interactions.inferences_used + 1 for o in outcomes)
    assert len({id(b) for b in batches}) == len(batches)
    # nothing left over from before
    assert here.explain(ExplainRequest("sentiment", text="a dull film")).batches
    assert here._drain() == []


def test_workers_run_at_lower_cpu_priority(runner):
    (pid,) = runner.worker_pids
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 5


def test_a_killed_worker_fails_one_explanation_and_the_pool_recovers(runner):
    (pid,) = runner.worker_pids
    errors: list[BaseException] = []

    def explain() -> None:
        try:
            runner.explain(ExplainRequest("sentiment", text=LONG, budget=4000, max_order=3))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    thread = threading.Thread(target=explain)
    thread.start()
    time.sleep(1.0)  # the worker is busy with the long explanation
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ExplainWorkerLostError)
    again = runner.explain(ExplainRequest("sentiment", text="i did not hate the movie"))
    assert again.keys == ["i", "did", "not", "hate", "the", "movie"]


def test_bad_model_path_fails_the_start_not_the_first_explanation(tmp_path):
    runner = ProcessRunner(_settings(str(tmp_path / "missing")), workers=1)
    with pytest.raises(Exception, match="does not exist"):
        runner.start()
