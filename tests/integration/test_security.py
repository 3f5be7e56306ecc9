"""Security on loopback: TLS and mutual TLS (certificates made by the test), who may mutate, redaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import numpy as np
import pytest
import trustme

from spex_monitor.client import MonitorClient
from spex_monitor.config import OIPBackendConfig, Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.examples.oip_server import SentimentServer
from spex_monitor.explain.backends import build_backend
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc
from spex_monitor.server.app import Sidecar

from .harness import issue_pki

pytestmark = pytest.mark.integration

ADMIN = "spex-admin.oncall"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    identities = {"server": ("localhost", "127.0.0.1"), "admin": (ADMIN,), "other": ("app",)}
    return issue_pki(tmp_path_factory.mktemp("pki"), identities)


def _channel(port: int, pki: dict, client: str | None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        pki["ca"].read_bytes(),
        pki[f"{client}.key"].read_bytes() if client else None,
        pki[f"{client}.crt"].read_bytes() if client else None,
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


@pytest.fixture(scope="module")
def secure_sidecar(pki, tmp_path_factory):
    folder = tmp_path_factory.mktemp("secure")
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
            "windows": {"seconds": None, "requests": 1000},
            "store": {"path": str(folder / "spex.db"), "store_text": True},
            "server": {
                "host": "127.0.0.1",
                "grpc_port": 0,
                "metrics_port": 0,
                "explain_in": "thread",
                "queue_per_label": 500,
                "admin_identities": [ADMIN],
                "tls": {"cert_file": pki["server.crt"], "key_file": pki["server.key"], "ca_file": pki["ca"]},
            },
        }
    )
    app = Sidecar(settings).start()
    yield app
    app.stop()


def _observe(channel: grpc.Channel, request_id: str = "r1", text: str = "the plot was good") -> None:
    pb_grpc.MonitorServiceStub(channel).Observe(
        pb.ObserveRequest(request_id=request_id, model="sentiment", label="positive", text=text), timeout=10
    )


def test_mutual_tls_refuses_plaintext_and_clients_without_a_certificate(secure_sidecar, pki):
    port = secure_sidecar.grpc_port
    for channel in (grpc.insecure_channel(f"localhost:{port}"), _channel(port, pki, client=None)):
        with pytest.raises(grpc.RpcError) as info:
            _observe(channel)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        channel.close()
    with _channel(port, pki, client="other") as channel:
        _observe(channel)  # any certificate from the CA may observe


def test_only_an_allowed_certificate_identity_may_set_the_baseline(secure_sidecar, pki):
    port = secure_sidecar.grpc_port
    from spex_monitor.attribution import Interactions
    from spex_monitor.monitor import InteractionMap

    filled = InteractionMap()
    for i in range(30):  # baseline.min_window_requests
        filled.add(Interactions({(0,): 1.0, (0, 1): 0.5}, 2, 1.0, 4), ["not", "good"], f"b{i}")
    request = pb.SetBaselineRequest(model="sentiment", map=filled.to_bytes())
    with _channel(port, pki, client="other") as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.MonitorServiceStub(channel).SetBaseline(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with _channel(port, pki, client="admin") as channel:
        stub = pb_grpc.MonitorServiceStub(channel)
        empty = pb.SetBaselineRequest(model="sentiment", map=InteractionMap().to_bytes())
        with pytest.raises(grpc.RpcError) as info:  # an empty baseline would silence every alarm (p = 1)
            stub.SetBaseline(empty, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith("map: the baseline holds 0 explained requests")
        reply = stub.SetBaseline(request, timeout=10)
        assert reply.source == "uploaded map" and reply.requests == 30


def test_personal_data_never_reaches_keys_vocabulary_or_stored_text(secure_sidecar, pki):
    secrets = ["jane.doe@example.com", "+1 (555) 123-4567", "4111111111111111"]
    texts = [
        "the plot was not good write to jane.doe@example.com",
        "call +1 (555) 123-4567 the music was great",
        "card 4111111111111111 was not bad",
    ]
    with _channel(secure_sidecar.grpc_port, pki, client="other") as channel:
        for i, text in enumerate(texts):
            _observe(channel, f"pii{i}", text)
    secure_sidecar.monitor.drain()
    secure_sidecar.monitor.tick(force=True)
    records = secure_sidecar.store.explanations("sentiment", limit=100)
    keys = {k for r in records for k in r.keys}
    assert {"<email>", "<digits>"} <= keys and not any("@" in k for k in keys)
    stored_texts = [r.text for r in records if r.request_id.startswith("pii")]
    assert len(stored_texts) == 3 and all("<" in t for t in stored_texts)
    database = Path(secure_sidecar.store.path)
    raw = b"".join(p.read_bytes() for p in (database, Path(f"{database}-wal")) if p.exists())
    with sqlite3.connect(database) as connection:
        stored_windows = connection.execute("SELECT count(*) FROM windows").fetchone()[0]
    assert stored_windows >= 1  # the vocabulary (drift counters) was persisted too
    for secret in (*secrets, "jane.doe", "5551234567"):
        assert secret.encode() not in raw, secret


def test_oip_backend_talks_tls_to_its_replica_and_refuses_an_unknown_ca(pki):
    server_credentials = grpc.ssl_server_credentials(
        [(pki["server.key"].read_bytes(), pki["server.crt"].read_bytes())]
    )
    replica = SentimentServer().start(credentials=server_credentials)
    try:
        config = OIPBackendConfig.model_validate(
            {
                "kind": "oip",
                "endpoints": [f"localhost:{replica.port}"],
                "model_name": "sentiment",
                "tls": {"ca_file": pki["ca"]},
                "retries": 0,
                "deadline_s": 5,
            }
        )
        backend = build_backend(config)
        scores = backend.infer_texts(["the plot was not good", "great fun"])
        assert scores.shape == (2, 2) and np.argmax(scores[0]) != np.argmax(scores[1])
        stranger = trustme.CA()
        other_ca = pki["ca"].parent / "other-ca.pem"
        stranger.cert_pem.write_to_path(str(other_ca))
        untrusting = build_backend(
            config.model_copy(update={"tls": config.tls.model_copy(update={"ca_file": other_ca})})
        )
        with pytest.raises(Exception, match="replica|UNAVAILABLE|handshake"):
            untrusting.infer_texts(["the plot was not good"])
    finally:
        replica.stop()


def test_the_loopback_rule_trusts_exactly_127_0_0_1_and_ipv6_loopback():
    """Issue 23 §6: any 127.* peer was trusted (a mesh hands remote callers over from 127.0.0.6), and IPv6
    loopback as grpcio reports it (ipv6:%5B::1%5D:port) was not recognised."""
    from spex_monitor.server.auth import is_loopback_peer

    for peer in ("ipv4:127.0.0.1:5000", "ipv6:%5B::1%5D:5000", "ipv6:[::1]:5000", "unix:/run/x.sock"):
        assert is_loopback_peer(peer), peer
    assert is_loopback_peer("ipv6:%5B::ffff:127.0.0.1%5D:5000")  # IPv4-mapped
    for peer in ("ipv4:127.0.0.6:5000", "ipv4:10.1.2.3:5000", "ipv6:%5Bfe80::1%5D:5000", "ipv4:127.1.2.3:1"):
        assert not is_loopback_peer(peer), peer


def test_client_library_connects_over_mutual_tls(secure_sidecar, pki):
    observed = secure_sidecar.monitor.counters["observed"]
    credentials = grpc.ssl_channel_credentials(
        pki["ca"].read_bytes(), pki["admin.key"].read_bytes(), pki["admin.crt"].read_bytes()
    )
    with MonitorClient(f"localhost:{secure_sidecar.grpc_port}", credentials=credentials) as client:
        assert client.observe("c1", "sentiment", "positive", text="fun")
        client.flush()
    assert secure_sidecar.monitor.counters["observed"] == observed + 1


def test_the_cli_speaks_mutual_tls_with_its_certificate_flags(secure_sidecar, pki, capsys):
    """Issue 23 §5: the CLI opened plaintext channels only; with --tls-ca/--tls-cert/--tls-key it reaches
    a mutual-TLS sidecar, and the certificate's identity is its role (the admin one holds every role)."""
    from spex_monitor.cli import main as cli

    explain = ["explain", "the plot was not good", "--model", "sentiment"]
    target = ["--target", f"localhost:{secure_sidecar.grpc_port}"]
    assert cli([*explain, *target]) == 1  # plaintext to a TLS port: refused
    capsys.readouterr()
    def certificate(name: str) -> list[str]:
        files = {"--tls-ca": pki["ca"], "--tls-cert": pki[f"{name}.crt"], "--tls-key": pki[f"{name}.key"]}
        return [part for flag, path in files.items() for part in (flag, str(path))]

    assert cli([*explain, *target, *certificate("other")]) == 1  # valid, but without the explain role
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    assert cli([*explain, *target, *certificate("admin")]) == 0
    assert "not × good" in capsys.readouterr().out
