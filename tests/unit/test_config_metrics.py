"""Config validation (field paths in errors, env overrides) and the Prometheus exporter's names and labels."""

from __future__ import annotations

import textwrap
import urllib.request

import pytest
from prometheus_client import generate_latest, start_http_server

from spex_monitor.cli import main as cli_main
from spex_monitor.config import ConfigError, load_settings
from spex_monitor.server.metrics import Metrics

GOOD = textwrap.dedent("""
    models:
      - name: sentiment
        backend: {kind: oip, endpoints: ["127.0.0.1:8081"], model_name: sentiment}
    engine: {budget: 800}
""")


def _write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_valid_file_with_defaults_and_env_overrides(tmp_path):
    path = _write(tmp_path, GOOD)
    settings = load_settings(
        path,
        environ={
            "SPEX_MONITOR_SERVER__GRPC_PORT": "50052",
            "SPEX_MONITOR_MODELS__0__SAMPLING_RATE": "0.5",
            "UNRELATED": "x",
        },
    )
    assert settings.engine.budget == 800 and settings.engine.kind == "proxyspex"
    assert settings.server.grpc_port == 50052 and settings.models[0].sampling_rate == 0.5
    assert settings.models[0].lens.kind == "text" and settings.store.store_text is False


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        (GOOD.replace('["127.0.0.1:8081"]', "[]"), "models.0.backend.oip.endpoints", "at least one replica"),
        (GOOD.replace('["127.0.0.1:8081"]', '["nope"]'), "models.0.backend.oip.endpoints", "not host:port"),
        (GOOD.replace("budget: 800", "budget: 3"), "engine.budget", "greater than or equal to 16"),
        (GOOD + "server: {proxy_port: 9000}\n", "server", "upstream"),
        (GOOD + "surprise: 1\n", "surprise", "Extra inputs"),
        ("models: []\n", "models", "at least 1"),
        ("- just a list\n", "<root>", "mapping"),
        ("models: [\n", "c.yaml:2:", "YAML syntax"),
    ],
)
def test_errors_name_the_field(tmp_path, text, path, reason):
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, text))
    paths = [p for p, _ in info.value.errors]
    # a YAML syntax error is named by file:line:column, the rest by field path
    assert any(p.startswith(path) or p.endswith(path) or (path.endswith(":") and path in p) for p in paths), (
        info.value.errors
    )
    assert reason in str(info.value)


def test_environment_values_are_typed_by_their_field(tmp_path):
    """Issue 15 item 10: env values were parsed as YAML, so a token 012345 became the octal int 5349 and a
    version 1.10 the float 1.1; pydantic-settings types each value by the field it sets."""
    settings = load_settings(
        _write(tmp_path, GOOD),
        environ={
            "SPEX_MONITOR_SERVER__ADMIN_TOKEN": "012345",
            "SPEX_MONITOR_MODELS__0__VERSION": "1.10",
            "SPEX_MONITOR_SERVER__READER_TOKENS": '["0xff", "true"]',
            "SPEX_MONITOR_MODELS__0__BACKEND__ENDPOINTS": '["10.0.0.7:8081", "10.0.0.8:8081"]',
            "spex_monitor_engine__budget": "900",
        },
    )
    assert settings.server.admin_token == "012345" and settings.models[0].version == "1.10"
    assert settings.server.reader_tokens == ["0xff", "true"]
    assert settings.models[0].backend.endpoints == ["10.0.0.7:8081", "10.0.0.8:8081"]
    assert settings.engine.budget == 900
    for environ, path in [
        ({"SPEX_MONITOR_MODELS__2__VERSION": "v2"}, "models.2"),
        ({"SPEX_MONITOR_ENGINE__BUDGET": "lots"}, "engine.budget"),
        ({"SPEX_MONITOR_MODELS__0__BACKEND__ENDPOINTS": "[not json"}, "models.0.backend.endpoints"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_settings(_write(tmp_path, GOOD), environ=environ)
        assert [p for p, _ in info.value.errors] == [path], info.value.errors


@pytest.mark.parametrize(
    ("engine", "minimum"), [("{kind: proxyspex, budget: 20}", 40), ("{kind: spex, budget: 100}", 236)]
)
def test_config_check_refuses_an_engine_budget_below_the_minimum_design(tmp_path, capsys, engine, minimum):
    """Issue 15 item 1: such a budget made every sampled request fail (and, before the exceptions could be
    pickled, restarted the worker pool each time)."""
    path = _write(tmp_path, GOOD.replace("engine: {budget: 800}", f"engine: {engine}"))
    assert cli_main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "engine.budget" in err and f"budget is too small; the minimum is {minimum}" in err
    # an input small enough for every mask is fine with any budget of at least 2^n
    small = GOOD.replace("engine: {budget: 800}", "engine: {kind: spex, budget: 100}")
    lens = "\n    lens: {kind: text, max_features: 6}"
    small = small.replace("model_name: sentiment}", "model_name: sentiment}" + lens)
    assert cli_main(["config", "check", str(_write(tmp_path, small))]) == 0


def test_cli_config_check_exit_codes(tmp_path, capsys):
    assert cli_main(["config", "check", str(_write(tmp_path, GOOD))]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli_main(["config", "check", str(_write(tmp_path, GOOD.replace("800", "1")))]) == 2
    assert "engine.budget" in capsys.readouterr().err
    assert cli_main(["config", "check", str(tmp_path / "missing.yaml")]) == 2


def test_metric_names_follow_conventions_and_move():
    metrics = Metrics()
    metrics.requests_observed.labels("sentiment", "v1").inc(3)
    metrics.dropped.labels("sentiment", "budget").inc()
    metrics.explanation_duration.labels("sentiment", "text").observe(0.2)
    metrics.backend_up.labels("127.0.0.1:8081").set(1)
    text = generate_latest(metrics.registry).decode()
    for name in [
        "spex_monitor_requests_observed_total",
        "spex_monitor_dropped_total",
        "spex_monitor_explanation_duration_seconds_bucket",
        "spex_monitor_backend_up",
        "spex_monitor_interaction_shift_pvalue",
        "spex_monitor_attribution_rank_ndcg",
        "spex_monitor_budget_utilization_ratio",
        "spex_monitor_explanation_faithfulness_r2_bucket",
    ]:
        assert f"# TYPE {name.removesuffix('_total').removesuffix('_bucket')}" in text or name in text, name
    assert 'spex_monitor_requests_observed_total{model="sentiment",version="v1"} 3.0' in text
    for family in metrics.registry.collect():
        assert family.name.startswith("spex_monitor_")
        for sample in family.samples:
            assert set(sample.labels) <= {
                "model",
                "version",
                "lens",
                "replica",
                "reason",
                "status",
                "order",
                "feature",
                "kind",
                "alarm",
                "le",
            }


def test_exporter_serves_on_its_own_port():
    metrics = Metrics()
    metrics.sampled.labels("m", "v1").inc()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    try:
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'spex_monitor_sampled_total{model="m",version="v1"} 1.0' in body
    finally:
        server.shutdown()
        thread.join(5)


def test_trace_exemplar_keeps_only_ids_that_fit_openmetrics():
    from spex_monitor.server.metrics import trace_exemplar

    assert trace_exemplar("4bf92f3577b34da6a3ce929d0e0e4736") == {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"
    }
    assert trace_exemplar("") is None and trace_exemplar(None) is None
    assert trace_exemplar("x" * 200) is None  # a truncated id would point at the wrong trace


def test_no_non_finite_value_reaches_a_metric():
    """Issue 15 item 2: faithfulness -inf (and NaN scores) must never be exported."""
    from types import SimpleNamespace

    metrics = Metrics()
    metrics.model_names = frozenset({"m"})
    report = SimpleNamespace(
        score=float("nan"),
        p_value=0.5,
        order_shares={1: (0.5, float("inf"))},
        first_order_ndcg=float("-inf"),
        input_drift={"tokens": 0.1},
        output_drift={"label": float("nan")},
    )
    metrics.record_report("m", "v1", report)
    import math

    values = [sample.value for family in metrics.registry.collect() for sample in family.samples]
    assert values and all(math.isfinite(v) for v in values)
    text = generate_latest(metrics.registry).decode()
    assert 'spex_monitor_interaction_shift_pvalue{model="m",version="v1"} 0.5' in text
    metrics.drop("some-caller-chosen-name", "invalid")
    assert 'model="some-caller-chosen-name"' not in generate_latest(metrics.registry).decode()


def test_the_torch_floor_is_past_the_weights_only_bypasses():
    """Issue 23 §6: torch>=2.3 admitted CVE-2025-32434 (fixed in 2.6) and CVE-2026-24747 (fixed in 2.10)."""
    import tomllib
    from pathlib import Path

    import torch
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    (torch_req,) = [Requirement(r) for r in project["dependencies"] if r.startswith("torch")]
    assert not torch_req.specifier.contains("2.9.1") and not torch_req.specifier.contains("2.5.1")
    assert torch_req.specifier.contains(Version(torch.__version__.split("+")[0]))
