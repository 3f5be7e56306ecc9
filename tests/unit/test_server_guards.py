"""Server guards the hardening and security issues asked for, checked without starting a server: the loopback
rule with ``server.trust_loopback`` off (issue 23 §6), the gRPC thread pool sized against the caps
(issue 23 §4), and the report board read by the HTTP thread while the ticker posts (issue 15 item 12)."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from spex_monitor.config_server import RESERVED_THREADS, ServerConfig
from spex_monitor.server.auth import ROLES, Authorizer
from spex_monitor.server.reports import LatestReport, ReportBoard

pytestmark = pytest.mark.unit


def test_loopback_callers_hold_every_role_only_while_no_credential_is_configured_and_loopback_is_trusted():
    trusted = Authorizer(ServerConfig())
    assert trusted.resolve("", (), "127.0.0.1", loopback=True).roles == frozenset(ROLES)
    assert trusted.resolve("", (), "10.0.0.5", loopback=False).roles == frozenset()

    mesh = Authorizer(ServerConfig(trust_loopback=False))  # a mesh hands remote callers over from loopback
    caller = mesh.resolve("", (), "127.0.0.1", loopback=True)
    assert caller.roles == frozenset()
    assert "server.trust_loopback is off" in mesh.denial("readers")

    tokens = Authorizer(ServerConfig(trust_loopback=False, reader_tokens=["r3ader"]))
    assert tokens.resolve("Bearer r3ader", (), "127.0.0.1", loopback=True).roles == frozenset({"readers"})
    assert tokens.resolve("Bearer wrong", (), "127.0.0.1", loopback=True).roles == frozenset()


def test_grpc_threads_must_cover_streams_explain_and_reads_with_room_for_observe():
    caps = {"max_streams": 8, "explain_concurrency": 2, "max_concurrent_reads": 4}
    needed = sum(caps.values()) + RESERVED_THREADS
    assert ServerConfig(grpc_threads=needed, **caps).grpc_threads == needed
    with pytest.raises(ValidationError, match=rf"grpc_threads: {needed - 1} cannot serve .* = {needed}"):
        ServerConfig(grpc_threads=needed - 1, **caps)


def test_the_report_board_is_read_whole_while_reports_are_posted():
    board = ReportBoard()
    models = [f"m{i}" for i in range(20)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def post() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            for model in models:
                board.post(LatestReport(model, "v1", n, 0.1, 0.5, False, []))

    def read() -> None:
        try:
            for _ in range(2000):
                rows = board.latest()
                assert len({(r.model, r.version) for r in rows}) == len(rows)  # one per (model, version)
                board.rows()
        except BaseException as exc:  # a "dict changed size during iteration" would land here
            errors.append(exc)

    writers = [threading.Thread(target=post) for _ in range(2)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in readers:
        thread.join(60)
    stop.set()
    for thread in writers:
        thread.join(60)
    assert not errors, errors
    assert sorted(r.model for r in board.latest()) == sorted(models)


def test_a_sidecar_that_fails_to_assemble_closes_the_store_it_opened(tmp_path, monkeypatch):
    """The store (a PostgreSQL pool with its threads, or a SQLite file) was left open when a later part of
    the constructor failed, e.g. a baseline file that cannot be read."""
    from spex_monitor.config import Settings
    from spex_monitor.server import app

    opened = []
    real_open = app.open_store

    def recording_open(settings):  # noqa: ANN001, ANN202
        opened.append(real_open(settings))
        return opened[-1]

    monkeypatch.setattr(app, "open_store", recording_open)
    settings = Settings.model_validate(
        {
            "models": [{"name": "m", "backend": {"kind": "local", "path": str(tmp_path)}}],
            "store": {"path": str(tmp_path / "spex.db")},
            "baseline": {"file": str(tmp_path / "missing.spxm")},
        }
    )
    with pytest.raises(OSError):
        app.Sidecar(settings)
    assert len(opened) == 1
    with pytest.raises(Exception, match="closed"):
        opened[0].windows("m", "v1")  # a closed SQLite connection refuses work
