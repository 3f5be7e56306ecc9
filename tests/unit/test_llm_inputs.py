"""LLM models in configuration, generation inputs from callers, the explain CLI's generation options, and the
prompt lens's value builder (issue 17 §5 wiring; issue 18 §1 validation)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from spex_monitor.config import ConfigError, Settings, load_settings
from spex_monitor.examples.tiny_lm import model_path
from spex_monitor.server.generations import (
    MAX_COMPLETION,
    MAX_MESSAGES,
    MAX_SEGMENTS,
    SegmentInput,
    build_generation,
)
from spex_monitor.server.observations import MAX_TEXT, InvalidObservation, check_input

pytestmark = pytest.mark.unit


def _config(tmp_path, lens: dict, backend: dict, **extra) -> ConfigError | Settings:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"models": [{"name": "llm", "lens": lens, "backend": backend}], **extra}))
    try:
        return load_settings(path, environ={})
    except ConfigError as exc:
        return exc


CAUSAL = {"kind": "causal", "path": "/models/lm"}
OPENAI = {
    "kind": "openai",
    "endpoints": ["127.0.0.1:8000", "https://llm.internal:8443"],
    "served_model": "tiny",
    "tokenizer_path": "/models/lm",
}


def test_llm_models_configure_with_defaults(tmp_path):
    settings = _config(tmp_path, {"kind": "prompt"}, CAUSAL)
    assert isinstance(settings, Settings)
    lens = settings.models[0].lens
    assert (lens.unit, lens.max_features, lens.filler, lens.value) == ("segments", 64, "unk", "sum")
    settings = _config(tmp_path, {"kind": "prompt", "value": "label", "labels": ["yes", "no"]}, OPENAI)
    assert isinstance(settings, Settings) and settings.models[0].backend.deadline_s == 30.0


@pytest.mark.parametrize(
    ("lens", "backend", "path", "reason"),
    [
        (
            {"kind": "prompt"},
            {"kind": "local", "path": "/m"},
            "models.0.backend.kind",
            "needs backend 'causal'",
        ),
        ({"kind": "text"}, CAUSAL, "models.0.lens.kind", "scores generations"),
        ({"kind": "prompt", "value": "label"}, CAUSAL, "models.0.lens.prompt.labels", "at least two labels"),
        (
            {"kind": "prompt", "value": "label", "labels": ["a", "a"]},
            CAUSAL,
            "models.0.lens.prompt.labels",
            "distinct",
        ),
        (
            {"kind": "prompt", "labels": ["a", "b"]},
            CAUSAL,
            "models.0.lens.prompt.labels",
            "only used with value",
        ),
        ({"kind": "prompt", "unit": "tokens"}, CAUSAL, "models.0.lens.prompt.unit", "segments"),
        ({"kind": "prompt", "filler": "mask"}, CAUSAL, "models.0.lens.prompt.filler", "unk"),
        (
            {"kind": "prompt"},
            {**OPENAI, "endpoints": []},
            "models.0.backend.openai.endpoints",
            "at least one",
        ),
        (
            {"kind": "prompt"},
            {**OPENAI, "endpoints": ["ftp://x"]},
            "models.0.backend.openai.endpoints",
            "http",
        ),
        (
            {"kind": "prompt"},
            {**OPENAI, "served_model": ""},
            "models.0.backend.openai.served_model",
            "at least 1",
        ),
        (
            {"kind": "prompt"},
            {**OPENAI, "api_key_file": "/k", "api_key_env": "K"},
            "models.0.backend.openai.api_key_file",
            "not both",
        ),
        (
            {"kind": "prompt"},
            {**OPENAI, "api_key": "plain"},
            "models.0.backend.openai.api_key",
            "not permitted",
        ),
    ],
)
def test_llm_config_errors_name_the_field(tmp_path, lens, backend, path, reason):
    error = _config(tmp_path, lens, backend)
    assert isinstance(error, ConfigError), error
    assert any(p == path and reason in r for p, r in error.errors), error.errors


def test_engine_budget_is_checked_against_the_prompt_lens_cap(tmp_path):
    error = _config(tmp_path, {"kind": "prompt", "max_features": 200}, CAUSAL, engine={"budget": 16})
    assert isinstance(error, ConfigError) and error.errors[0][0] == "engine.budget"


def test_api_key_comes_from_a_file_or_the_environment_and_is_never_shown(tmp_path, monkeypatch):
    key = tmp_path / "key"
    key.write_text("sk-secret\n")
    backend = _config(tmp_path, {"kind": "prompt"}, {**OPENAI, "api_key_file": str(key)}).models[0].backend
    assert backend.api_key() == "sk-secret"
    backend = _config(tmp_path, {"kind": "prompt"}, {**OPENAI, "api_key_env": "LLM_KEY"}).models[0].backend
    monkeypatch.setenv("LLM_KEY", "sk-env")
    assert backend.api_key() == "sk-env"
    monkeypatch.delenv("LLM_KEY")
    with pytest.raises(ValueError, match="^api_key_env: the variable LLM_KEY is unset"):
        backend.api_key()
    key.write_text("  \n")
    backend = _config(tmp_path, {"kind": "prompt"}, {**OPENAI, "api_key_file": str(key)}).models[0].backend
    with pytest.raises(ValueError, match="^api_key_file: .* is empty"):
        backend.api_key()


def test_openai_builder_needs_the_tokenizer_on_disk(tmp_path):
    from spex_monitor.explain.backends import build_backend

    backend = _config(tmp_path, {"kind": "prompt"}, {**OPENAI, "tokenizer_path": str(tmp_path / "no")})
    with pytest.raises(FileNotFoundError, match="^tokenizer_path: "):
        build_backend(backend.models[0].backend)
    config = {**OPENAI, "endpoints": ["127.0.0.1:9"], "tokenizer_path": str(model_path("base"))}
    remote = build_backend(_config(tmp_path, {"kind": "prompt"}, config).models[0].backend)
    try:
        assert remote.model == "tiny" and remote.tokenizer.chat_template
    finally:
        remote.close()


# ------------------------------------------------------------------------------------- generation inputs
def _gen(**kwargs):
    base = {"prompt": "document : a b . question : c ?", "messages": None, "completion": "5"}
    return build_generation(**{**base, **kwargs})


def test_a_valid_generation_keeps_its_segments():
    generation = _gen(segments=[SegmentInput("doc:1", None, 11, 16), SegmentInput("question", None, 28, 31)])
    assert dict(generation.segments) == {"doc:1": (11, 16), "question": (28, 31)}
    chat = build_generation(
        prompt="", messages=[("system", "be brief"), ("user", "hi there")], completion="ok",
        segments=[SegmentInput("user", 1, 0, 8)], temperature=1.3, top_p=0.9,
    )  # fmt: skip
    assert chat.messages[1] == {"role": "user", "content": "hi there"} and chat.segments["user"] == (1, 0, 8)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prompt": ""}, "generation.prompt: give a non-blank prompt or messages"),
        ({"prompt": " \n"}, "generation.prompt: give a non-blank"),
        ({"prompt": "x" * (MAX_TEXT + 1)}, "generation.prompt: longer than"),
        ({"prompt": "a\ud800"}, "generation.prompt: not valid Unicode"),
        ({"prompt": "a " + "w" * 1001}, "generation.prompt: a word of 1001 characters"),
        ({"completion": ""}, "generation.completion: empty"),
        ({"completion": "x" * (MAX_COMPLETION + 1)}, "generation.completion: longer than"),
        ({"prompt": "", "messages": [("user", "a")] * (MAX_MESSAGES + 1)}, "generation.messages: at most"),
        ({"prompt": "", "messages": [("", "a")]}, "generation.messages[0].role"),
        ({"prompt": "", "messages": [("user", "\udfff")]}, "generation.messages[0].content: not valid"),
        ({"messages": [("user", "a")]}, "generation.prompt: give a prompt or messages, not both"),
        ({"temperature": float("inf")}, "generation.temperature"),
        ({"temperature": -0.1}, "generation.temperature"),
        ({"top_p": 1.5}, "generation.top_p"),
        ({"segments": [SegmentInput("s", None, 3, 3)]}, "generation.segments[0].end: (3, 3) is empty"),
        ({"segments": [SegmentInput("s", None, 0, 999)]}, "generation.segments[0].end"),
        ({"segments": [SegmentInput("s", 0, 0, 2)]}, "generation.segments[0].message: only for chat"),
        ({"segments": [SegmentInput("a b", None, 0, 2)]}, "generation.segments[0].name"),
        ({"segments": [SegmentInput("x" * 129, None, 0, 2)]}, "generation.segments[0].name"),
        (
            {"segments": [SegmentInput("a", None, 0, 2)] * 2},
            "generation.segments[1].name: 'a' is given twice",
        ),
        (
            {"segments": [SegmentInput("a", None, 0, 5), SegmentInput("b", None, 4, 8)]},
            "generation.segments: 'a' and 'b' overlap",
        ),
        (
            {"segments": [SegmentInput(f"s{i}", None, 0, 1) for i in range(MAX_SEGMENTS + 1)]},
            "generation.segments: at most",
        ),
    ],
)
def test_bad_generations_name_the_field(kwargs, field):
    with pytest.raises(InvalidObservation) as info:
        _gen(**kwargs)
    assert str(info.value).startswith(field), str(info.value)


def test_chat_segments_need_a_message_index_inside_the_messages():
    chat = {"prompt": "", "messages": [("user", "hello there")], "completion": "hi"}
    with pytest.raises(InvalidObservation, match=r"^generation.segments\[0\].message: required"):
        build_generation(**chat, segments=[SegmentInput("s", None, 0, 2)])
    with pytest.raises(InvalidObservation, match=r"^generation.segments\[0\].message: 1 is not"):
        build_generation(**chat, segments=[SegmentInput("s", 1, 0, 2)])
    with pytest.raises(InvalidObservation, match=r"outside message 0's content of length 11"):
        build_generation(**chat, segments=[SegmentInput("s", 0, 5, 12)])


def test_every_entry_path_checks_the_input_kind():
    generation = _gen()
    check_input("llm", "prompt", None, None, generation)
    with pytest.raises(
        InvalidObservation, match=r"^generation: model 'clf' takes text \(its lens.kind is 'text'\)"
    ):
        check_input("clf", "text", None, None, generation)
    with pytest.raises(InvalidObservation, match="^input: give text, fields or a generation"):
        check_input("llm", "prompt", None, None, None)


# ---------------------------------------------------------------------------------------------- the CLI
def _cli_args(*argv: str) -> argparse.Namespace:
    from spex_monitor.cli import build_parser

    return build_parser().parse_args(["explain", "--model", "llm", *argv])


def test_cli_generation_options_make_the_protobuf(tmp_path):
    from spex_monitor.cli_generation import generation_fields, wants_generation
    from spex_monitor.protocol.v1 import monitor_pb2 as pb

    args = _cli_args("--prompt", "doc : a . q : b ?", "--completion", "5", "--segment", "doc=6:9")
    assert wants_generation(args)
    message = pb.Generation(**generation_fields(args))
    assert message.prompt.startswith("doc") and message.segments[0].end == 9
    assert not message.segments[0].HasField("message")
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "hi"}]))
    segments = tmp_path / "s.json"
    segments.write_text(json.dumps({"user": [0, 0, 2]}))
    args = _cli_args("--messages", str(messages), "--completion", "ok", "--segments", str(segments))
    message = pb.Generation(**generation_fields(args))
    assert message.messages[0].role == "user" and message.segments[0].message == 0
    assert not wants_generation(_cli_args("some text"))


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--prompt", "p"], "--completion: required"),
        (["--completion", "c"], "--prompt / --messages: give exactly one"),
        (["--prompt", "p", "--completion", "c", "--segment", "a=1"], "--segment: segment 'a' needs"),
        (["--prompt", "p", "--completion", "c", "--segment", "a=x:2"], "--segment: 'a=x:2' is not"),
        (["--messages", "/no/such.json", "--completion", "c"], "--messages: /no/such.json"),
    ],
)
def test_cli_generation_option_errors_name_the_option(argv, error):
    from spex_monitor.cli_generation import GenerationArgsError, generation_fields

    with pytest.raises(GenerationArgsError) as info:
        generation_fields(_cli_args(*argv))
    assert str(info.value).startswith(error), str(info.value)


# --------------------------------------------------------------------------------- the value builder
@pytest.fixture(scope="module")
def tiny_lm():
    from spex_monitor.backends import LocalCausalLM

    return LocalCausalLM.from_pretrained(model_path("base"), device="cpu")


def _request():
    from spex_monitor.examples.explain_generation import USER
    from spex_monitor.explain import ExplainRequest

    pieces = {"doc:acme": "the office of acme is on floor 3 .", "question": "which floor is two floors above"}
    segments = [SegmentInput(k, 1, USER.index(v), USER.index(v) + len(v)) for k, v in pieces.items()]
    generation = build_generation(
        prompt="", messages=[("system", "answer with one number ."), ("user", USER)], completion="5",
        segments=segments,
    )  # fmt: skip
    return ExplainRequest("llm", generation=generation)


def test_prompt_lens_values_are_the_completion_logprob_and_label_margins(tiny_lm):
    from spex_monitor.config import PromptLens
    from spex_monitor.explain.values import value_problem
    from spex_monitor.lenses import completion_value_function, prompt_masker

    request = _request()
    problem = value_problem(PromptLens(kind="prompt"), tiny_lm, request)
    assert problem.keys == ["doc:acme", "question"] and problem.label == "5"
    masks = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], dtype=bool)
    reference = completion_value_function(prompt_masker(request.generation, tiny_lm.tokenizer), tiny_lm)
    np.testing.assert_allclose(problem.value_fn(masks), reference(masks))
    mean = value_problem(PromptLens(kind="prompt", value="mean"), tiny_lm, request)
    np.testing.assert_allclose(
        mean.value_fn(masks),
        reference(masks) / len(tiny_lm.tokenizer("5", add_special_tokens=False)["input_ids"]),
    )
    label = value_problem(PromptLens(kind="prompt", value="label", labels=["7", "5", "3"]), tiny_lm, request)
    assert label.label == "5" and label.target == 1
    values = label.value_fn(masks)
    assert values[0] > 0 and values[0] > values[3]  # the full prompt favours "5"; nothing left favours none


def test_a_request_without_a_generation_is_refused_by_the_prompt_lens(tiny_lm):
    from spex_monitor.config import PromptLens
    from spex_monitor.explain import ExplainRequest
    from spex_monitor.explain.values import value_problem

    with pytest.raises(ValueError, match="^generation: model 'llm' takes generation"):
        value_problem(PromptLens(kind="prompt"), tiny_lm, ExplainRequest("llm", text="hello"))


# ------------------------------------------------------------------------ observations and the client
def test_a_generation_observation_counts_its_prompt_words_and_segment_keys():
    from spex_monitor.server.observations import Intake

    intake = Intake({"llm": "v1"}, {"llm": "prompt"})
    generation = build_generation(
        prompt="", messages=[("system", "Be brief"), ("user", "doc A"), ("user", "Q")], completion="5",
        segments=[SegmentInput("doc:a", 1, 0, 5)],
    )  # fmt: skip
    observation = intake.build(request_id="r", model="llm", generation=generation)
    assert observation.text == "Be brief\ndoc A\nQ" and observation.generation is generation
    assert observation.tokens() == ["be", "brief", "doc", "a", "q", "doc:a", "system", "user", "user#2"]
    with pytest.raises(InvalidObservation, match="^generation: model 'clf' takes text"):
        Intake({"clf": "v1"}, {"clf": "text"}).build(request_id="r", model="clf", generation=generation)


def test_the_client_builds_generation_messages_and_never_raises():
    from spex_monitor.client import MonitorClient, generation_message

    message = generation_message(
        "5", messages=[{"role": "user", "content": "doc q"}], segments={"doc": (0, 0, 3), "all": (0, 5)},
        temperature=0.7,
    )  # fmt: skip
    assert message.messages[0].content == "doc q" and message.temperature == pytest.approx(0.7)
    assert message.segments[0].message == 0 and not message.segments[1].HasField("message")
    client = MonitorClient("127.0.0.1:9", timeout_s=0.1)  # nothing listens: the queue takes it anyway
    try:
        assert client.observe_generation("r1", "llm", "5", prompt="p", segments={"p": (0, 1)})
        assert not client.observe_generation("r2", "llm", "5", prompt="p", segments={"p": ("x", 1)})
        assert client.dropped["invalid"] == 1
    finally:
        client.close()


def test_context_share_is_the_interaction_mass_touching_a_context_segment():
    from spex_monitor.attribution import ProxySPEX
    from spex_monitor.explain.generation_values import context_interaction_share

    def explain_exhaustively(fn, n):
        return ProxySPEX(budget=2**n, max_order=n).explain(fn, n)  # 2^n masks: exact

    def planted(masks):  # Möbius: doc x question 2.0, question 1.0, system x question 0.5, doc 1.0
        doc, question, system = masks[:, 0], masks[:, 1], masks[:, 2]
        return (2.0 * doc * question + question + 0.5 * system * question + doc + 3.0).astype(float)

    result = explain_exhaustively(planted, 3)
    keys = ["doc:refund", "question", "system"]
    assert context_interaction_share(result, keys, ["doc:", "tool"]) == pytest.approx(2.0 / 4.5)
    assert context_interaction_share(result, keys, ["tool"]) == pytest.approx(0.0)
    flat = explain_exhaustively(lambda m: np.full(len(m), 2.0), 3)
    assert context_interaction_share(flat, keys, ["doc:"]) is None


def test_observed_generations_feed_the_context_share_histogram(tiny_lm):
    from spex_monitor.explain import ExplainResult
    from spex_monitor.monitor.budget import Budget
    from spex_monitor.server.explaining import AccountedExplainer
    from spex_monitor.server.metrics import Metrics
    from spex_monitor.server.observations import Intake

    metrics = Metrics()
    metrics.model_names = frozenset({"llm"})
    explainer = AccountedExplainer(Budget(1e6, 1e6), metrics, ["local"], {"llm": ["doc:"]})
    request = _request()

    class Runner:
        def explain(self, req):
            from spex_monitor.config import EngineConfig, ModelConfig, PromptLens
            from spex_monitor.explain.explainer import ModelExplainer

            config = ModelConfig(
                name="llm", lens=PromptLens(kind="prompt"), backend={"kind": "causal", "path": "/x"}
            )
            return ModelExplainer(config, EngineConfig(budget=64), tiny_lm).explain(req)

        def close(self):
            pass

    explainer.runner = Runner()
    observation = Intake({"llm": "v1"}, {"llm": "prompt"}).build(
        request_id="r", model="llm", generation=request.generation
    )
    outcome = explainer.explain_observation(observation)
    assert isinstance(outcome, ExplainResult) and outcome.keys == ["doc:acme", "question"]
    count = metrics.registry.get_sample_value(
        "spex_monitor_generation_context_share_ratio_count", {"model": "llm"}
    )
    total = metrics.registry.get_sample_value(
        "spex_monitor_generation_context_share_ratio_sum", {"model": "llm"}
    )
    assert count == 1 and 0.5 < total <= 1.0  # the base model's answer rests on doc x question
