"""The fleet view through the sidecar (issue 20 §3): two real sidecars share one throwaway PostgreSQL
(``store.url``), both run the fleet aggregator (``fleet.aggregate: true``, one holds the advisory lock), and
the fleet report is readable through EITHER sidecar's ``GetShiftReport(scope="fleet")``,
``ListShiftReports(scope="fleet")``, ``MonitorClient.shift_report(scope="fleet")`` and
``spex-monitor trace --scope fleet``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import threading

import grpc
import psycopg
import pytest

from spex_monitor.cli import main as cli_main
from spex_monitor.client import MonitorClient
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc

from .harness import rpc_status, sentiment_settings, wait_until
from .postgres_harness import PASSWORD, pg_url, postgres  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

W = 3.0  # pod and fleet window seconds (fleet windows are epoch-aligned)
TEXTS = [
    "the food was not good at all",
    "not good and not fresh",
    "really good service and good food",
    "the staff was good but the room was not clean",
]


def _settings(folder, url: str, instance: str):  # noqa: ANN001, ANN202
    password = folder / f"{instance}.pw"
    password.write_text(PASSWORD + "\n")
    return sentiment_settings(
        folder,
        model={"sampling_rate": 1.0},
        server={"tick_s": 0.2},
        engine={"budget": 64, "max_order": 2},
        windows={"seconds": W},
        baseline={"windows": 1, "min_window_requests": 2, "n_permutations": 99},
        store={"url": url, "password_file": str(password), "instance": instance, "min_document_frequency": 1},
        fleet={
            "aggregate": True,
            "grace_s": 1.5,  # a pod writes its window on its next tick, later under a loaded CI machine
            "tick_s": 0.2,
            "baseline_windows": 1,
            "backfill_windows": 0,
        },
    )


def _stub(sidecar) -> pb_grpc.MonitorServiceStub:  # noqa: ANN001
    return pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}"))


def _fleet_report(stub: pb_grpc.MonitorServiceStub) -> pb.ShiftReport | None:
    try:
        return stub.GetShiftReport(pb.GetShiftReportRequest(model="sentiment", scope="fleet"), timeout=10)
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return None
        raise


def _store_state(url: str) -> dict:
    """Rows per table and scope, for a failure message."""
    with psycopg.connect(url, password=PASSWORD) as conn:
        return {
            table: conn.execute(f"SELECT scope, COUNT(*) FROM {table} GROUP BY scope").fetchall()
            for table in ("windows", "reports", "baselines")
        } | {"explanations": conn.execute("SELECT COUNT(*) FROM explanations").fetchone()[0]}


def test_two_sidecars_share_a_fleet_report(tmp_path, pg_url, start_sidecar):  # noqa: F811
    pods = [start_sidecar(_settings(tmp_path, pg_url, name)) for name in ("pod-a", "pod-b")]
    stubs = [_stub(pod) for pod in pods]
    stop = threading.Event()
    failures: list[BaseException] = []

    def traffic() -> None:  # a few explained requests per pod per window, until the test has its report
        try:
            for n in itertools.count():
                if stop.wait(0.25):
                    return
                for p, stub in enumerate(stubs):
                    request = pb.ObserveRequest(
                        request_id=f"r{p}-{n}",
                        model="sentiment",
                        text=TEXTS[n % len(TEXTS)],
                        label="POSITIVE",
                    )
                    stub.Observe(request, timeout=10)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            failures.append(exc)

    feeder = threading.Thread(target=traffic, daemon=True)
    feeder.start()
    try:
        # first fleet window -> the fleet baseline; the next one is compared and reported
        found = wait_until(
            lambda: _fleet_report(stubs[0]) is not None or failures, timeout_s=90, interval_s=0.5
        )
        assert found, f"no fleet report in 90 s; store: {_store_state(pg_url)}"
    finally:
        stop.set()
        feeder.join(15)
    assert not failures, failures
    report = _fleet_report(stubs[0])
    assert report is not None
    assert report.scope == "fleet"
    assert report.pods == 2, "the fleet window merges both pods' windows"
    assert report.window_end_unix - report.window_start_unix == pytest.approx(W)
    assert report.window_start_unix % W == pytest.approx(0.0, abs=1e-6)  # epoch-aligned
    assert report.window_requests >= 2
    # the sidecar holding the lock exports the fleet window (spex_monitor_fleet_*, scope="fleet")
    from prometheus_client import generate_latest

    def exported() -> bool:  # recorded just after the aggregator commits the window: wait for it
        series = 'spex_monitor_fleet_window_pods{model="sentiment",scope="fleet"'
        return any(series in generate_latest(pod.metrics.registry).decode() for pod in pods)

    assert wait_until(exported, timeout_s=10), "no sidecar exported the fleet window"

    # the same stored fleet report through the other sidecar, the client library and the list RPC
    other = stubs[1].GetShiftReport(
        pb.GetShiftReportRequest(model="sentiment", scope="fleet", window_id=report.window_id), timeout=10
    )
    assert (other.window_id, other.score, other.p_value, other.pods) == (
        report.window_id,
        report.score,
        report.p_value,
        report.pods,
    )
    with MonitorClient(f"127.0.0.1:{pods[1].grpc_port}") as client:
        assert client.shift_report("sentiment", scope="fleet").window_id >= report.window_id
    listed = (
        stubs[1]
        .ListShiftReports(pb.ListShiftReportsRequest(model="sentiment", scope="fleet"), timeout=10)
        .reports
    )
    assert report.window_id in [r.window_id for r in listed]
    assert all(r.scope == "fleet" and r.pods >= 1 for r in listed)
    pod_reports = stubs[1].ListShiftReports(pb.ListShiftReportsRequest(model="sentiment"), timeout=10).reports
    assert report.window_id not in [r.window_id for r in pod_reports], "pod scope never shows fleet rows"

    # a range comparison over the fleet windows, against the fleet baseline
    ranged = stubs[1].GetShiftReport(
        pb.GetShiftReportRequest(
            model="sentiment",
            scope="fleet",
            since_unix=report.window_start_unix,
            until_unix=report.window_end_unix,
        ),
        timeout=30,
    )
    assert ranged.scope == "fleet" and ranged.window_requests >= report.window_requests
    assert 0.0 < ranged.p_value <= 1.0

    # every fleet window stored once, written by one aggregator though both sidecars compete
    with psycopg.connect(pg_url, password=PASSWORD) as conn:
        twice = conn.execute(
            "SELECT start_ts, COUNT(*) FROM windows WHERE scope = 'fleet' GROUP BY version, start_ts"
            " HAVING COUNT(*) > 1"
        ).fetchall()
        instances = {
            row[0] for row in conn.execute("SELECT DISTINCT instance FROM windows WHERE scope = 'pod'")
        }
    assert twice == []
    assert instances == {"pod-a", "pod-b"}

    # `spex-monitor trace --scope fleet` through either sidecar
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(
            [
                "trace",
                "--model",
                "sentiment",
                "--scope",
                "fleet",
                "--target",
                f"127.0.0.1:{pods[0].grpc_port}",
            ]
        )
    assert code == 0
    assert "fleet window" in out.getvalue() and "(2 pods)" in out.getvalue()

    # a scope that does not exist is refused, naming the field
    code, details = rpc_status(
        stubs[0].GetShiftReport, pb.GetShiftReportRequest(model="sentiment", scope="galaxy"), timeout=10
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("scope:")


def test_fleet_scope_needs_a_shared_store(tmp_path, start_sidecar):
    sidecar = start_sidecar(sentiment_settings(tmp_path))
    stub = _stub(sidecar)
    for call, request in (
        (stub.GetShiftReport, pb.GetShiftReportRequest(model="sentiment", scope="fleet")),
        (stub.ListShiftReports, pb.ListShiftReportsRequest(model="sentiment", scope="fleet")),
    ):
        code, details = rpc_status(call, request, timeout=10)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "store.url" in details
