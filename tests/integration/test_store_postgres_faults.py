"""PostgreSQL store faults: refused or rejected at start (a clear error naming store.url, no password
anywhere), the database restarted mid-run (every write retried or counted, monitoring never stops), a full
disk (a tiny tablespace: the store degrades, monitoring goes on, writes resume once there is room)."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.config_store import StoreConfig
from spex_monitor.explain import ExplainResult
from spex_monitor.monitor import InteractionMap
from spex_monitor.monitor.budget import Budget
from spex_monitor.monitor.sampling import StratifiedSampler
from spex_monitor.monitor.store_factory import make_store
from spex_monitor.monitor.store_postgres import PostgresStore, StoreUnavailableError
from spex_monitor.monitor.windows import TumblingWindows
from spex_monitor.monitor.worker import Monitor, Observation

from .postgres_harness import PASSWORD, PostgresCluster, TinyTablespace, free_port, unique_name


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: these tests stop and restart it."""
    try:
        cluster = PostgresCluster()
    except Exception as exc:  # noqa: BLE001 - the reason is the failure
        pytest.fail(f"PostgreSQL could not start: {type(exc).__name__}: {exc}", pytrace=False)
    yield cluster
    cluster.destroy()


@pytest.fixture(autouse=True)
def _running(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").ensure_running()


def _explainer(observation: Observation):
    words = observation.text.split()
    rng = np.random.default_rng(zlib.crc32(observation.request_id.encode()))
    terms = {(i,): float(rng.normal(0, 0.3)) for i in range(len(words))}
    terms[(0, 1)] = 2.0 + float(rng.normal(0, 0.1))
    return ExplainResult(Interactions(terms, len(words), faithfulness=0.9, inferences_used=100), words, 0, "")


def _monitor(store: PostgresStore, window_requests: int = 50) -> Monitor:
    return Monitor(
        explainer=_explainer,
        sampler=StratifiedSampler(rate=1.0, reservoir_per_label=10_000, seed=0),
        budget=Budget(inferences_per_second=1e9, burst=1e9),
        windows=TumblingWindows(window_s=None, window_requests=window_requests),
        store=store,
        inferences_per_explanation=100,
        min_window_requests=10,
        n_permutations=99,
    )


def _observe(monitor: Monitor, prefix: str, n: int, text: str = "not good at all today") -> None:
    for i in range(n):
        monitor.observe(Observation(f"{prefix}-{i}", "m", "v1", "pos", 0.9, text=text))


def _stored(store: PostgresStore) -> int:
    return len(store.explanations("m", limit=1_000_000))


def test_connection_refused_at_start_names_store_url(tmp_path):
    config = StoreConfig(url=f"postgresql://spex@127.0.0.1:{free_port()}/spex", timeout_s=2)
    began = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        make_store(config)
    message = str(info.value)
    assert message.startswith("store.url: cannot open postgresql://spex@127.0.0.1:")
    assert "refused" in message.lower()
    assert time.monotonic() - began < 30  # a clear error, not a hang


def test_credentials_come_from_the_file_or_pgpassword_and_are_never_shown(
    cluster, tmp_path, monkeypatch, caplog
):
    url = cluster.create_database(unique_name("creds"))
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreUnavailableError) as info:
        make_store(StoreConfig(url=url, password_file=wrong))
    assert "store.url" in str(info.value) and "password authentication failed" in str(info.value)
    assert "not-the-password" not in str(info.value) + caplog.text
    right = tmp_path / "right"
    right.write_text(PASSWORD + "\n")
    store = make_store(StoreConfig(url=url, password_file=right))
    assert store.schema_version >= 2 and PASSWORD not in repr(vars(store)).replace(store._conninfo, "")
    store.close()
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    store = make_store(StoreConfig(url=url))  # libpq reads PGPASSWORD
    assert store.schema_version >= 2
    store.close()
    assert PASSWORD not in caplog.text


def _wait(condition, what: str, timeout_s: float = 120.0) -> None:
    """Wait for ``condition`` with a deadline sized for a loaded 2-core machine."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_database_restart_mid_run_loses_no_write_uncounted(cluster):
    """Writes during the restart are retried (a fresh connection) or counted as store errors; monitoring
    never stops, and once the database is back every write is stored again."""
    url = cluster.create_database(unique_name("restart"))
    store = PostgresStore(url, password=PASSWORD, timeout_s=1.0)
    monitor = _monitor(store, window_requests=10**9)  # explanation writes only, so they can be counted
    monitor.start(workers=2, idle_sleep_s=0.01)
    stop = threading.Event()
    sent = {"n": 0}

    def traffic() -> None:
        while not stop.is_set():
            _observe(monitor, f"t{sent['n']}", 5)
            sent["n"] += 5
            time.sleep(0.01)

    feeder = threading.Thread(target=traffic)
    feeder.start()
    try:
        ok = lambda: monitor.counters["explanations:ok"]  # noqa: E731
        _wait(lambda: ok() >= 50, "50 explanations")
        cluster.restart()  # a quick restart: the pool's connections all break
        mark = ok()
        _wait(lambda: ok() >= mark + 50, "50 explanations after the restart")
        cluster.stop()  # down for longer than store.timeout_s: writes are counted as failed
        mark = ok()
        # monitoring goes on without the store: each write waits store.timeout_s, then is counted
        _wait(lambda: monitor.counters["store_errors"] >= 3 and ok() >= mark + 3, "3 counted failures")
        assert monitor.store_error is not None
        cluster.start()
        mark = ok()
        _wait(lambda: monitor.store_error is None and ok() >= mark + 50, "writes succeeding again")
        assert monitor.store_error is None, "writes must succeed again once the database is back"
        stop.set()
        feeder.join(30)
        monitor.drain(60)
        assert ok() >= 153 and monitor.counters["worker_errors"] == 0
        # every explanation is stored or counted as a failed write; none is lost silently or stored twice
        assert _stored(store) + monitor.counters["store_errors"] == ok()
    finally:
        stop.set()
        feeder.join(30)
        monitor.shutdown(30)
        store.close()


def test_a_full_disk_degrades_the_store_and_monitoring_goes_on(cluster):
    name = unique_name("full")
    try:
        space = TinyTablespace(cluster, unique_name("tiny"), 1 << 20)
    except Exception as exc:  # noqa: BLE001 - the reason is the failure
        pytest.fail(f"tiny tablespace: {exc}", pytrace=False)
    try:
        url = cluster.create_database(name, tablespace=space.name)
        store = PostgresStore(url, password=PASSWORD, store_text=True, timeout_s=2.0)
        monitor = _monitor(store)
        rng = np.random.default_rng(0)
        big = " ".join(f"{rng.integers(1 << 60):x}" for _ in range(3_000))  # ~50 kB, incompressible
        deadline = time.monotonic() + 120
        batch = 0
        while monitor.counters["store_errors"] == 0 and time.monotonic() < deadline:
            _observe(monitor, f"b{batch}", 10, text="not good " + big)
            monitor.drain(60)
            batch += 1
        assert monitor.counters["store_errors"] > 0, "the tablespace never filled"
        assert "No space left on device" in monitor.store_error or "DiskFull" in monitor.store_error
        ok = monitor.counters["explanations:ok"]
        _observe(monitor, "after", 60)
        monitor.drain(60)
        assert monitor.counters["explanations:ok"] == ok + 60  # explanation goes on without the store
        assert monitor.tick(), "windows still close and compare while the store is full"
        space.resize(64 << 20)  # an operator grew the volume
        _observe(monitor, "room", 1)
        monitor.drain(60)
        assert monitor.store_error is None
        assert store.explanations("m", limit=1)[0].request_id == "room-0"
        store.close()
    finally:
        space.drop(name)


def test_pool_connections_broken_by_the_server_are_replaced(cluster):
    """pg_terminate_backend on every pooled session: the next call still succeeds (check + one retry)."""
    url = cluster.create_database(unique_name("term"))
    store = PostgresStore(url, password=PASSWORD, min_connections=2, max_connections=2)
    store.save_window("m", "v1", 0.0, 1.0, InteractionMap())
    with psycopg.connect(url, password=PASSWORD, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'spex-monitor' AND pid <> pg_backend_pid()"
        )
    assert len(store.windows("m", "v1")) == 1
    store.close()
