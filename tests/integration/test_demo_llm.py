"""The LLM part of ``make demo`` end to end (issue 18 §4): the embedded grounded LM behind the example
OpenAI-compatible server, the sidecar's OpenAI proxy in front of it, the openai backend scoring on the same
server; baseline windows stay quiet, the silent rollout of the context-ignoring variant raises the alarm, and
the trace names (doc:1 × question) as the interaction that moved most. Smaller windows than the demo's keep
it short."""

from __future__ import annotations

import re

import pytest

from spex_monitor.demo import main
from spex_monitor.demo_llm import ranked_call, run_llm_story
from spex_monitor.examples.grounded import make_examples

pytestmark = pytest.mark.integration


def test_ranked_calls_put_the_fact_document_first_with_exact_spans():
    for example in make_examples(30, seed=2):
        call = ranked_call(example)
        user = call.messages[1]["content"]
        fact = example.messages[1]["content"][slice(*example.segments[example.fact_doc][1:])]
        assert user[slice(*call.segments["doc:1"][1:])] == fact
        question = example.messages[1]["content"][slice(*example.segments["question"][1:])]
        assert user[slice(*call.segments["question"][1:])] == question
        docs = sorted(k for k in example.segments if k.startswith("doc:"))
        assert sorted(k for k in call.segments if k.startswith("doc:")) == docs
        assert call.segments["system"] == [0, 0, len(call.messages[0]["content"])]


def test_the_llm_demo_raises_the_alarm_and_traces_doc_x_question(capsys):
    assert main(["--only-llm", "--llm-window", "16"]) == 0
    out = capsys.readouterr().out
    windows = re.findall(r"\[(baseline|steady  |incident)\] window \d+: +(\d+)/16 answers right, (.*)", out)
    assert [phase.strip() for phase, _, _ in windows] == ["baseline"] * 2 + ["steady"] + ["incident"] * 2
    steady = [rest for phase, _, rest in windows if phase.strip() == "steady"]
    assert all("quiet" in rest for rest in steady)
    incident = [rest for phase, _, rest in windows if phase == "incident"]
    assert any("ALARM" in rest for rest in incident)
    # the base variant answers from the documents; the rolled-out one mostly does not
    assert all(int(right) == 16 for phase, right, _ in windows if phase != "incident")
    assert all(int(right) < 16 for phase, right, _ in windows if phase == "incident")
    assert re.search(r"^  1 +doc:1 × question ", out, re.MULTILINE), (
        "the trace's top row is not doc:1 × question"
    )
    assert "requests where doc:1 × question mattered: llm-" in out
    assert 'spex_monitor_generation_context_share_ratio_count{model="grounded-lm"} 80.0' in out
    before, after = map(
        float, re.search(r"document: ([\d.]+) before the rollout.*, ([\d.]+) after", out).groups()
    )
    assert before > 0.3 and after < before / 2
    assert (
        "RESULT (LLM): the silent rollout was detected and traced to the doc:1 × question interaction." in out
    )
    assert "80 chat completions through the proxy (26 streamed), 80 observed, 80 explained" in out


def test_run_llm_story_refuses_a_window_too_small_for_a_baseline():
    with pytest.raises(ValueError, match="at least 8"):
        run_llm_story(window=4)
