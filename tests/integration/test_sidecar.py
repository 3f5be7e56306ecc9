"""The sidecar on loopback: gRPC API and status codes, health, reflection, client, metrics, JSON endpoint."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from spex_monitor.client import MonitorClient
from spex_monitor.config import Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc
from spex_monitor.server.app import Sidecar

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sidecar")
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "version": "v1",
                    "sampling_rate": 1.0,
                    "backend": {"kind": "local", "path": str(model_path("sentiment-base"))},
                }
            ],
            "engine": {"budget": 256, "max_order": 3},
            "budget": {"inferences_per_second": 1e7, "burst": 1e7},
            "windows": {"seconds": None, "requests": 30},
            "baseline": {"windows": 1, "min_window_requests": 20, "n_permutations": 200},
            "store": {"path": str(folder / "spex.db")},
            "server": {
                "host": "127.0.0.1",
                "grpc_port": 0,
                "metrics_port": 0,
                "workers": 2,
                "tick_s": 0.2,
                "queue_per_label": 500,
                "max_message_bytes": 65536,
                "admin_token": "s3cret",
                "reader_tokens": ["r3ader"],
                "explain_rate_per_minute": 1e6,  # the rate limit has its own test (test_limits)
                "explain_burst": 1000,
            },
        }
    )
    app = Sidecar(settings).start()
    yield app
    app.stop()


class _Bearer(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    def intercept_unary_unary(self, continuation, details, request):  # noqa: ANN001, ANN201
        metadata = [*(details.metadata or []), ("authorization", f"Bearer {self.token}")]
        return continuation(details._replace(metadata=metadata), request)


@pytest.fixture(scope="module")
def bare(sidecar):
    """No credentials: Observe only (auth is configured, so every role is default-deny)."""
    channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    yield pb_grpc.MonitorServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def stub(sidecar):
    """An admin caller (admins hold every role)."""
    plain = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    channel = grpc.intercept_channel(plain, _Bearer("s3cret"))
    yield pb_grpc.MonitorServiceStub(channel)
    channel.close()


def _code(call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code(), info.value.details()


def test_health_and_reflection(sidecar):
    channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    services = {s.name for r in responses for s in r.list_services_response.service}
    assert "spex_monitor.v1.MonitorService" in services
    channel.close()


def test_bad_input_gets_clear_status_codes(stub):
    code, details = _code(stub.Observe, pb.ObserveRequest(model="sentiment", label="x", text="hi"), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("request_id")
    code, details = _code(stub.Observe, pb.ObserveRequest(request_id="r", model="nope", text="x"), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "model" in details
    code, details = _code(stub.Observe, pb.ObserveRequest(request_id="r", model="sentiment"), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("input")
    code, _ = _code(
        stub.Observe, pb.ObserveRequest(request_id="r", model="sentiment", text="w " * 40_000), timeout=5
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    code, details = _code(stub.Explain, pb.ExplainRequest(model="sentiment", text="  "), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("text")
    code, _ = _code(stub.GetShiftReport, pb.GetShiftReportRequest(model="sentiment", version="v9"), timeout=5)
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_explain_on_demand_finds_negation(stub):
    reply = stub.Explain(pb.ExplainRequest(model="sentiment", text="the plot was not good"), timeout=60)
    assert reply.predicted_label == "negative" and reply.faithfulness > 0.95
    pairs = [tuple(i.keys) for i in reply.interactions if len(i.keys) == 2]
    assert pairs[0] == ("not", "good")


def test_traffic_windows_reports_lookups_and_metrics(sidecar, stub):
    texts, _ = generate_corpus(400, seed=3)
    texts = [t for t in texts if len(t.split()) <= 8][:120]
    with MonitorClient(f"127.0.0.1:{sidecar.grpc_port}") as client:
        for i, text in enumerate(texts):
            trace = f"{i:032x}"
            assert client.observe(f"r{i}", "sentiment", "positive", text=text, confidence=0.8, trace_id=trace)
        client.flush()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (
        sidecar.monitor.sampler.pending() or sidecar.monitor.counters["explanations:ok"] < len(texts)
    ):
        time.sleep(0.2)
    assert sidecar.monitor.counters["explanations:ok"] >= len(texts)
    sidecar.monitor.tick(force=True)
    report = stub.GetShiftReport(pb.GetShiftReportRequest(model="sentiment"), timeout=10)
    assert 0 < report.p_value <= 1 and report.top_contributors
    hits = stub.ListExplanations(
        pb.ListExplanationsRequest(model="sentiment", key_tuple=["good", "not"]), timeout=10
    ).explanations
    assert hits, "('good', 'not') is the strongest pair of this traffic"
    assert all(any(set(t.keys) == {"good", "not"} for t in e.top) for e in hits)
    base = f"http://127.0.0.1:{sidecar.metrics_port}"
    body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
    assert 'spex_monitor_requests_observed_total{model="sentiment",version="v1"}' in body
    assert "spex_monitor_explanation_duration_seconds_bucket" in body
    assert "spex_monitor_interaction_shift_pvalue" in body
    # Exemplars (OpenMetrics only) tie latency/faithfulness buckets to the caller's trace ids.
    openmetrics = urllib.request.Request(
        f"{base}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    body = urllib.request.urlopen(openmetrics, timeout=5).read().decode()
    exemplar_lines = [line for line in body.splitlines() if ' # {trace_id="' in line]
    assert any(line.startswith("spex_monitor_explanation_duration_seconds_bucket") for line in exemplar_lines)
    assert any(line.startswith("spex_monitor_explanation_faithfulness_r2_bucket") for line in exemplar_lines)
    traces = {line.split('trace_id="')[1].split('"')[0] for line in exemplar_lines}
    assert traces <= {f"{i:032x}" for i in range(len(texts))}
    with pytest.raises(urllib.error.HTTPError) as forbidden:  # readers role, like the read RPCs
        urllib.request.urlopen(f"{base}/api/top-interactions", timeout=5)
    assert forbidden.value.code == 403
    authorization = {"Authorization": "Bearer r3ader"}
    reader = urllib.request.Request(f"{base}/api/top-interactions", headers=authorization)
    rows = json.loads(urllib.request.urlopen(reader, timeout=5).read())
    assert rows and {"interaction", "delta", "exemplars"} <= set(rows[0])
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(f"{base}/metrics", data=b"x", method="POST"), timeout=5)
    assert info.value.code == 405


def test_set_baseline_needs_the_admin_token(sidecar, stub, bare):
    current = stub.GetInteractionMap(
        pb.GetInteractionMapRequest(model="sentiment", baseline=True), timeout=10
    )
    request = pb.SetBaselineRequest(model="sentiment", map=current.map)
    code, details = _code(bare.SetBaseline, request, timeout=10)
    assert code == grpc.StatusCode.PERMISSION_DENIED and details.startswith("authorization")
    reader = [("authorization", "Bearer r3ader")]
    code, details = _code(bare.SetBaseline, request, metadata=reader, timeout=10)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "admin role" in details
    reply = bare.SetBaseline(request, metadata=[("authorization", "Bearer s3cret")], timeout=10)
    assert reply.source == "uploaded map" and reply.requests == current.requests
    garbage = pb.SetBaselineRequest(model="sentiment", map=b"garbage")
    code, details = _code(stub.SetBaseline, garbage, timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("map")


def test_cli_explain_trace_and_baseline_commands(sidecar, tmp_path, capsys, monkeypatch):
    from spex_monitor.cli import main as cli

    target = ["--target", f"127.0.0.1:{sidecar.grpc_port}"]
    admin = tmp_path / "admin.token"
    admin.write_text("s3cret\n")
    as_admin = ["--token-file", str(admin)]
    html = tmp_path / "x.html"
    explain = ["explain", "the plot was not good", "--model", "sentiment", *target]
    assert cli([*explain, "--html", str(html)]) == 1  # no credentials: the explain role is needed
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    assert cli([*explain, "--html", str(html), *as_admin]) == 0
    out = capsys.readouterr().out
    assert "not × good" in out and "negative" in out and "<svg" in html.read_text()
    assert "joint (möbius): the effect of keeping these features together" in out  # the columns explained
    png = tmp_path / "x.png"
    explain = ["explain", "i did not hate it", "--model", "sentiment", *target, *as_admin]
    code = cli([*explain, "--png", str(png)])
    try:
        import matplotlib  # noqa: F401 - optional (the bench extra)

        assert code == 0 and png.read_bytes().startswith(b"\x89PNG")
    except ImportError:
        assert code == 2 and "needs matplotlib" in capsys.readouterr().err
    monkeypatch.setenv("SPEX_MONITOR_TOKEN", "r3ader")  # readers may show, export and trace
    assert cli(["baseline", "show", "--model", "sentiment", *target]) == 0
    assert "key tuples" in capsys.readouterr().out
    exported = tmp_path / "b.spxm"
    assert cli(["baseline", "export", "--model", "sentiment", *target, "--file", str(exported)]) == 0
    assert cli(["baseline", "import", "--model", "sentiment", *target, "--file", str(exported)]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    monkeypatch.delenv("SPEX_MONITOR_TOKEN")
    imported = ["baseline", "import", "--model", "sentiment", *target, "--file", str(exported)]
    assert cli([*imported, "--token", "s3cret"]) == 0  # deprecated, still works, and says why not
    assert "--token-file" in capsys.readouterr().err
    monkeypatch.setenv("SPEX_MONITOR_TOKEN", "r3ader")
    report = tmp_path / "trace.html"
    assert cli(["trace", "--model", "sentiment", *target, "--report", str(report)]) == 0
    assert "interaction" in capsys.readouterr().out
    history = sidecar.store.reports("sentiment")
    page = report.read_text()
    assert "Shift over time" in page and page.count("<polyline") >= 2
    latest = history[-1]
    assert latest["top"], "the traffic test's windows moved interactions"
    assert " × ".join(latest["top"][0][0]) in page
    # --since lists every window of the range with its own verdict (issue 19 item 1), never one pooled verdict
    assert cli(["trace", "--model", "sentiment", *target, "--since", "1h"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if " quiet " in line or " ALARM " in line]
    assert len(rows) == len(history) and f"{len(history)} windows" in out.splitlines()[0]
    assert "co-occurrence" in out and "strength when present" in out
    with pytest.raises(SystemExit):
        cli(["trace", "--model", "sentiment", *target, "--since", "soon"])
    assert "give a duration like" in capsys.readouterr().err
    assert cli(["explain", "x", "--model", "nope", *target, *as_admin]) == 1


def test_list_shift_reports_returns_history_in_time_order(sidecar, stub):
    reply = stub.ListShiftReports(pb.ListShiftReportsRequest(model="sentiment"), timeout=10)
    stored = sidecar.store.reports("sentiment")
    assert [r.window_id for r in reply.reports] == [r["window_id"] or 0 for r in stored]
    times = [r.time_unix for r in reply.reports]
    assert times == sorted(times) and all(t > 0 for t in times)
    last = stub.ListShiftReports(pb.ListShiftReportsRequest(model="sentiment", limit=1), timeout=10)
    assert [r.window_id for r in last.reports] == [r.window_id for r in reply.reports[-1:]]
    code, details = _code(
        stub.ListShiftReports, pb.ListShiftReportsRequest(model="sentiment", limit=10**6), timeout=10
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("limit")


def test_get_explanation_and_trace_request_lead_from_an_exemplar_to_its_explanation(
    sidecar, stub, bare, capsys, monkeypatch
):
    """Issue 19 item 5: exemplar ids lead somewhere — GetExplanation and `trace --request`."""
    from spex_monitor.cli import main as cli

    report = stub.GetShiftReport(pb.GetShiftReportRequest(model="sentiment"), timeout=10)
    top = report.top_contributors[0]
    request_id = top.exemplar_request_ids[0]
    asked = pb.GetExplanationRequest(model="sentiment", request_id=request_id)
    found = stub.GetExplanation(asked, timeout=10)
    assert found.request_id == request_id and found.model == "sentiment" and found.version == "v1"
    assert 0 < len(found.top) <= 10 and found.inferences > 0 and found.trace_id
    strengths = [abs(t.fourier) for t in found.top]
    assert strengths == sorted(strengths, reverse=True)  # strongest first
    assert all(len(t.features) == len(t.keys) for t in found.top)
    assert not found.text_stored and found.text == ""  # store.store_text is off here
    # a baseline request to set beside a window one, for contributors that occurred in the baseline too
    assert any(c.baseline_exemplar_request_ids for c in report.top_contributors)
    for bad, field in [("", "request_id"), ("x" * 300, "request_id")]:
        wrong = pb.GetExplanationRequest(model="sentiment", request_id=bad)
        code, details = _code(stub.GetExplanation, wrong)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field)
    wide = pb.GetExplanationRequest(model="sentiment", request_id=request_id, top_k=101)
    assert _code(stub.GetExplanation, wide)[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, details = _code(stub.GetExplanation, pb.GetExplanationRequest(model="sentiment", request_id="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("request_id")
    assert _code(bare.GetExplanation, asked)[0] == grpc.StatusCode.PERMISSION_DENIED

    monkeypatch.setenv("SPEX_MONITOR_TOKEN", "r3ader")
    target = ["--target", f"127.0.0.1:{sidecar.grpc_port}"]
    assert cli(["trace", "--model", "sentiment", *target, "--request", request_id]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"request {request_id}: sentiment v1") and "text: not stored" in out
    assert cli(["trace", "--model", "sentiment", *target, "--request", "nope"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert cli(["trace", "--model", "sentiment", *target]) == 0
    out = capsys.readouterr().out
    assert "one request on each side:" in out and "baseline" in out and request_id in out
