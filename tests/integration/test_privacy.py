"""Issue 23 §2: a secret planted in one request appears in no RPC reply, endpoint, log line or database page
after the text TTL, and never without the readers role."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import grpc
import pytest

from spex_monitor.config import Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc
from spex_monitor.server.app import Sidecar

pytestmark = pytest.mark.integration

SECRET = "zanzibar7731"
READER = [("authorization", "Bearer r3ader-token")]
TTL_S = 2.0


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "sampling_rate": 1.0,
                    "backend": {"kind": "local", "path": str(model_path("sentiment-base"))},
                }
            ],
            "engine": {"budget": 64, "max_order": 2},
            "budget": {"inferences_per_second": 1e7, "burst": 1e7},
            "windows": {"seconds": None, "requests": 10_000},
            "baseline": {"windows": 1, "min_window_requests": 10, "n_permutations": 99},
            "store": {
                "path": str(tmp_path_factory.mktemp("privacy") / "spex.db"),
                "text_ttl_s": TTL_S,
                "min_document_frequency": 2,
            },
            "server": {
                "grpc_port": 0,
                "metrics_port": 0,
                "explain_in": "thread",
                "queue_per_label": 1000,
                "reader_tokens": ["r3ader-token"],
            },
        }
    )
    app = Sidecar(settings).start()
    yield app
    app.stop()


def _database_bytes(app: Sidecar) -> bytes:
    path = Path(app.store.path)
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def _map_text(reply: pb.InteractionMapResponse) -> str:
    return zlib.decompress(reply.map[6:]).decode()


def test_a_planted_secret_leaves_through_no_reply_log_or_page(sidecar, caplog):
    caplog.set_level(logging.DEBUG)
    texts, _ = generate_corpus(200, seed=11)
    texts = [t for t in texts if len(t.split()) <= 8][:40]
    channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    stub = pb_grpc.MonitorServiceStub(channel)
    for i, text in enumerate(texts):
        stub.Observe(
            pb.ObserveRequest(request_id=f"r{i}", model="sentiment", label="x", text=text), timeout=10
        )
    stub.Observe(
        pb.ObserveRequest(
            request_id="planted", model="sentiment", label="x", text=f"the plot was not good {SECRET}"
        ),
        timeout=10,
    )
    sidecar.monitor.drain()
    sidecar.monitor.tick(force=True)  # the baseline window
    for i, text in enumerate(texts):
        stub.Observe(
            pb.ObserveRequest(request_id=f"s{i}", model="sentiment", label="x", text=text), timeout=10
        )
    sidecar.monitor.drain()
    sidecar.monitor.tick(force=True)  # a compared window: a report, the JSON rows
    for call, request in (
        (stub.ListExplanations, pb.ListExplanationsRequest(model="sentiment", limit=100)),
        (stub.GetInteractionMap, pb.GetInteractionMapRequest(model="sentiment", baseline=True)),
        (stub.GetShiftReport, pb.GetShiftReportRequest(model="sentiment")),
    ):
        with pytest.raises(grpc.RpcError) as denied:  # never without the readers role
            call(request, timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    base = f"http://127.0.0.1:{sidecar.metrics_port}"
    with pytest.raises(urllib.error.HTTPError) as forbidden:
        urllib.request.urlopen(f"{base}/api/top-interactions", timeout=5)
    assert forbidden.value.code == 403

    # Aggregates (maps, reports, the JSON rows) never carry a word seen in one request only.
    first = sidecar.store.windows("sentiment", "v1")[0][0]
    for request in (
        pb.GetInteractionMapRequest(model="sentiment", baseline=True),
        pb.GetInteractionMapRequest(model="sentiment", window_id=first),
        pb.GetInteractionMapRequest(model="sentiment"),
    ):
        text = _map_text(stub.GetInteractionMap(request, metadata=READER, timeout=10))
        assert SECRET not in text and '"good"' in text
    report = stub.GetShiftReport(pb.GetShiftReportRequest(model="sentiment"), metadata=READER, timeout=10)
    assert report.top_contributors and SECRET not in str(report)
    rows = urllib.request.urlopen(
        urllib.request.Request(f"{base}/api/top-interactions", headers={"Authorization": READER[0][1]}),
        timeout=5,
    ).read()
    assert json.loads(rows) and SECRET.encode() not in rows
    # Within the TTL an on-call reader sees a request's strongest words, but a word seen once is <rare> there
    # too, as in GetExplanation (ListExplanations once returned the stored words unfiltered) ...
    listed = stub.ListExplanations(
        pb.ListExplanationsRequest(model="sentiment", limit=200), metadata=READER, timeout=10
    )
    assert any(e.request_id == "planted" for e in listed.explanations)
    assert SECRET not in str(listed) and "<rare>" in str(listed)
    # ... and after it, nothing: not in replies, not in any page of the database files.
    time.sleep(TTL_S + 0.5)
    sidecar.monitor.persist(sidecar.store.purge)
    listed = stub.ListExplanations(
        pb.ListExplanationsRequest(model="sentiment", limit=200), metadata=READER, timeout=10
    )
    assert listed.explanations and SECRET not in str(listed)
    assert all(not t.keys or not any(t.keys) for e in listed.explanations for t in e.top)
    assert SECRET.encode() not in _database_bytes(sidecar)
    assert not [r for r in caplog.records if SECRET in r.getMessage()]
    channel.close()
