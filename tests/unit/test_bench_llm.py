"""The LLM detection benchmark (``spex-monitor bench detection --llm``): traffic, serving, statistics, and a
tiny end-to-end run that must hold calibration and catch the context-ignoring rollout.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from spex_monitor.bench.calibration import calibrate
from spex_monitor.bench.detection import main as detection_main
from spex_monitor.bench.llm_detection import run
from spex_monitor.bench.llm_report import markdown
from spex_monitor.bench.llm_runs import Draw, output_values
from spex_monitor.bench.llm_scenarios import (
    DETECTORS,
    EMBEDDING,
    LENGTH,
    LOGPROB,
    OURS,
    SCENARIOS,
    TOKENS,
    LLMBenchConfig,
)
from spex_monitor.bench.llm_serving import output_embeddings, sample_completions
from spex_monitor.bench.llm_traffic import (
    FACT_KEY,
    INJECTION_KEY,
    NORMAL,
    PLAUSIBLE_INJECTIONS,
    RETRIEVER_BUG,
    TOPIC_SHIFT,
    LLMTrafficProfile,
    generate_requests,
)
from spex_monitor.examples.tiny_lm import model_path
from spex_monitor.monitor import InteractionMap

TINY = LLMBenchConfig(
    window=20,
    baseline_requests=40,
    horizon=2,
    observed_per_explained=3,
    n_observed=80,
    n_explained=40,
    null_runs=40,
    calibration_runs=40,
    incident_runs=5,
    n_permutations=200,
    target_requests=40,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lm():
    from spex_monitor.backends import LocalCausalLM

    return LocalCausalLM.from_pretrained(model_path("base"), device="cpu")


def test_segments_cover_their_document_text_and_keys_name_the_source():
    for request in generate_requests(NORMAL, 60, seed=3):
        for name, (message, start, end) in request.segments.items():
            text = request.messages[message]["content"][start:end]
            assert text and text == text.strip(), (name, text)
            if name == FACT_KEY:
                assert f"{request.company} " in text and "floor" in text
            if name == INJECTION_KEY:
                assert text.startswith(("ignore", "new instruction"))
        assert request.injected == (INJECTION_KEY in request.segments)
        assert request.fact_present and FACT_KEY in request.segments


def test_retriever_bug_cuts_the_fact_from_three_document_requests_only():
    normal = generate_requests(NORMAL, 200, seed=4)
    buggy = generate_requests(RETRIEVER_BUG, 200, seed=4)
    for before, after in zip(normal, buggy, strict=True):
        docs = [k for k in before.segments if k.startswith("doc:")]
        assert after.company == before.company  # the same request, different retrieval
        assert after.fact_present == (len(docs) == 2)
        assert len([k for k in after.segments if k.startswith("doc:")]) == 2
    assert 0.3 < np.mean([not r.fact_present for r in buggy]) < 0.7


def test_topic_shift_changes_what_is_asked_not_the_layout():
    normal = generate_requests(NORMAL, 400, seed=5)
    shifted = generate_requests(TOPIC_SHIFT, 400, seed=5)
    tech = {"hooli", "initech", "cyberdyne", "aperture", "pied"}
    assert (
        np.mean([r.company in tech for r in shifted])
        > 0.8
        > 0.4
        > np.mean([r.company in tech for r in normal])
    )
    assert all(r.fact_present for r in shifted)
    assert abs(np.mean([r.injected for r in shifted]) - np.mean([r.injected for r in normal])) < 0.1


def _injected_numbers(profile: LLMTrafficProfile) -> np.ndarray:
    requests = [r for r in generate_requests(profile, 1500, seed=7) if r.injected]
    texts = [r.messages[1]["content"][slice(*r.segments[INJECTION_KEY][1:])] for r in requests]
    return np.array([int(t.split()[-2]) for t in texts])


def test_plausible_injections_look_like_real_answers():
    uniform, plausible = _injected_numbers(NORMAL), _injected_numbers(PLAUSIBLE_INJECTIONS)
    assert set(uniform) == set(plausible) == set(range(1, 10))
    # real answers are a floor 1-5 plus an offset 0-4: 5 is five times as likely as 1 or 9
    assert np.mean(plausible == 5) > 0.15 > 0.08 > np.mean(plausible == 1)
    assert abs(np.mean(uniform == 5) - 1 / 9) < 0.04 and abs(np.mean(uniform == 1) - 1 / 9) < 0.04


def test_profile_errors_name_the_field():
    with pytest.raises(ValueError, match="injection_rate"):
        LLMTrafficProfile("x", injection_rate=1.5)
    with pytest.raises(ValueError, match="company_weights"):
        LLMTrafficProfile("x", company_weights=(1.0,))


def test_sampling_is_seeded_and_log_probs_are_the_models_own(lm):
    tok = lm.tokenizer
    requests = generate_requests(NORMAL, 6, seed=6)
    texts = [
        tok.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True)
        for r in requests
    ]
    prompts = tok(texts, add_special_tokens=False)["input_ids"]
    first = sample_completions(lm.model, tok, prompts, np.random.default_rng(1), temperature=0.7, batch=4)
    again = sample_completions(lm.model, tok, prompts, np.random.default_rng(1), temperature=0.7, batch=4)
    assert first == again
    for prompt, served in zip(prompts, first, strict=True):
        # the reported log-probs equal teacher-forced scoring of the same tokens by the causal backend
        scored = lm.token_logprobs(
            np.array([prompt]), np.ones((1, len(prompt)), dtype=np.int64), served.token_ids
        )
        np.testing.assert_allclose(served.logprobs, scored[0], atol=1e-5)
        assert served.text.isdigit() and served.token_ids[-1] == tok.eos_token_id
    with pytest.raises(ValueError, match="temperature"):
        sample_completions(lm.model, tok, prompts, np.random.default_rng(1), temperature=0.0)


def test_output_embedding_pools_the_output_positions_only(lm):
    tok = lm.tokenizer
    prompt = tok("<s> <|user|> question : which floor <|end|> <|assistant|>", add_special_tokens=False)[
        "input_ids"
    ]
    output = tok("5 <|end|>", add_special_tokens=False)["input_ids"]
    pad = int(tok.pad_token_id)
    long_prompt = prompt + prompt[1:]  # a batch mate of another length: padding must not leak in
    batched = output_embeddings(lm.model, [prompt, long_prompt], [output, output], pad)
    alone = output_embeddings(lm.model, [prompt], [output], pad)
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-5)
    with torch.inference_mode():
        hidden = lm.model(input_ids=torch.tensor([prompt + output]), output_hidden_states=True).hidden_states[
            -1
        ][0]
    np.testing.assert_allclose(alone[0], hidden[len(prompt) :].double().mean(dim=0).numpy(), atol=1e-5)


class _Pool:
    def __init__(self, lengths, tokens, logprob, embeddings):
        self.lengths = np.asarray(lengths)
        self.token_counts = np.asarray(tokens)
        self.mean_logprob = np.asarray(logprob, dtype=float)
        self.embeddings = np.asarray(embeddings, dtype=float)


def test_output_statistics_are_zero_on_identical_draws_and_move_with_the_outputs():
    pool = _Pool([1, 1, 2], [[2, 0], [0, 1], [1, 1]], [-0.1, -0.2, -0.6], [[0, 0], [1, 0], [0, 3]])
    draw = Draw(InteractionMap(), np.array([0, 1, 2]), 0)
    same = output_values(pool, draw, pool, draw)
    assert same == {LENGTH: 0.0, TOKENS: 0.0, LOGPROB: 0.0, EMBEDDING: 0.0}
    moved = output_values(pool, draw, pool, Draw(InteractionMap(), np.array([2, 2]), 0))
    assert moved[LOGPROB] == pytest.approx(0.6 - 0.3)
    assert moved[EMBEDDING] == pytest.approx(math.hypot(0 - 1 / 3, 3 - 1))
    assert moved[LENGTH] > 0.25 and moved[TOKENS] > 0


@pytest.fixture(scope="module")
def tiny_summary() -> dict:
    scenarios = tuple(s for s in SCENARIOS if s.name in ("context-ignoring", "no-incident"))
    return run(TINY, log=lambda _: None, scenarios=scenarios)


def test_tiny_run_holds_calibration_and_catches_the_context_ignoring_rollout(tiny_summary):
    analysis = tiny_summary["analysis"]
    for d in DETECTORS:
        info = analysis["detectors"][d.name]
        assert info["evaluation_windows"] == TINY.null_runs
        if d.exact:
            assert info["threshold"] == 0.01
        else:
            # the threshold allows at most 1 % of the calibration windows (here: none of 80)
            assert info["threshold_from"].endswith(f"of {TINY.calibration_runs * TINY.horizon} windows")
        assert info["false_alarm_rate"] <= 0.1, (d.name, info)  # 1 % target, 40 held-out windows
    ours = analysis["scenarios"]["context-ignoring"]
    assert ours["detectors"][OURS]["calibrated"]["detection_rate"] >= 0.8, ours
    assert ours["top3_share_at_first_alarm"] >= 0.8, ours  # (doc:directory × question) named
    pools = tiny_summary["pools"]
    assert pools["base × rag-normal"]["explained"] == TINY.n_explained
    assert 0 < pools["base × rag-normal"]["inferences_per_explanation"] <= TINY.budget
    assert "| context-ignoring |" in markdown(tiny_summary)


def test_calibrate_takes_the_most_sensitive_threshold_within_the_rate():
    detector = next(d for d in DETECTORS if d.name == LOGPROB)
    values = np.arange(200, dtype=float)
    threshold = calibrate(detector, values, 0.01)
    assert detector.alarms(values, threshold).sum() == 2


def test_cli_rejects_several_budgets_for_llm(capsys):
    assert detection_main(["--llm", "--budgets", "32", "64"]) == 2
    assert "one budget" in capsys.readouterr().err


def test_spex_monitor_cli_forwards_the_llm_flag(capsys):
    from spex_monitor.cli import main as cli_main

    # reaches the LLM benchmark's option check (which fails fast) through `spex-monitor bench detection`
    assert cli_main(["bench", "detection", "--llm", "--budgets", "32", "64"]) == 2
    assert "--llm runs one budget" in capsys.readouterr().err


def test_cli_help_documents_the_llm_flag(capsys):
    with pytest.raises(SystemExit):
        detection_main(["--help"])
    assert "--llm" in capsys.readouterr().out


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="n_explained"):
        replace(TINY, n_explained=TINY.n_observed + 1)
    assert Path(model_path("context-ignoring")).exists()
