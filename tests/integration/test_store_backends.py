"""The store suite on BOTH backends: SQLite and a real PostgreSQL 15 started by the tests.

Same calls, same answers: migrations (also from a version-1 database), key-tuple lookups, windows, baselines
and reports, scopes (fleet rows never reach pod reads), a fleet window stored exactly once, retention, text
TTL, the strongest-terms rule, all-or-nothing purges, NUL characters, concurrent writers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.monitor import InteractionMap
from spex_monitor.monitor.store import FLEET, SCHEMA_VERSION, ExplanationRecord, FleetWindow, SQLStore
from spex_monitor.monitor.store_postgres import PostgresStore
from spex_monitor.monitor.store_schema import MIGRATIONS, migration_statements
from spex_monitor.monitor.store_sqlite import SQLiteStore

from .postgres_harness import PASSWORD, pg_url, postgres  # noqa: F401 - fixtures

SECRET = "zanzibar"


def _record(i: int, ts: float, pair_coef: float, text: str | None = None, model: str = "sentiment"):
    return ExplanationRecord(
        request_id=f"r{i}",
        model=model,
        version="v1",
        keys=["the", "not", "good"],
        terms={(0,): 0.1, (1, 2): pair_coef, (0, 1): 0.01},
        faithfulness=0.97,
        inferences=500,
        ts=ts,
        trace_id=f"t{i}",
        text=text,
    )


def _map(n: int = 20, coef: float = 2.0, seed: int = 0) -> InteractionMap:
    m = InteractionMap()
    rng = np.random.default_rng(seed)
    for i in range(n):
        m.add(Interactions({(0, 1): float(rng.normal(coef, 0.1)), (0,): 0.3}, 2), ["not", "good"], f"r{i}")
    return m


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def open_store(
    backend: str, tmp_path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., SQLStore]]:
    """``open_store(**kwargs)`` opens the test's store (same file / database on every call)."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    opened: list[SQLStore] = []

    def open_(**kwargs: object) -> SQLStore:
        if url is None:
            store: SQLStore = SQLiteStore(tmp_path / "s.db", **kwargs)  # type: ignore[arg-type]
        else:
            store = PostgresStore(url, password=PASSWORD, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()  # closing twice is harmless on both


def _raw(store: SQLStore, sql: str) -> None:
    """Run ``sql`` outside the store's API (a test's sabotage)."""
    if isinstance(store, SQLiteStore):
        store._conn.execute(sql)
    else:
        with psycopg.connect(store._conninfo, autocommit=True) as conn:
            conn.execute(sql)


def test_migrations_apply_once_and_reopen(open_store):
    store = open_store()
    assert store.schema_version == SCHEMA_VERSION
    store.close()
    assert open_store().schema_version == SCHEMA_VERSION  # nothing applied twice


def test_a_version_1_database_is_migrated_keeping_its_rows(backend, open_store, tmp_path, request):
    """Migration 2 rebuilds the baselines table and adds columns: existing rows survive as scope 'pod'."""
    m = _map()
    statements = [
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version VALUES (1)",
    ]
    statements += migration_statements(MIGRATIONS[0][1], backend)
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(tmp_path / "s.db")
        for sql in statements:
            conn.execute(sql)
        conn.execute("INSERT INTO baselines VALUES ('m', 'v1', 1.0, 'file', ?)", (m.to_bytes(),))
        conn.execute("INSERT INTO windows (model, version, start_ts, end_ts, requests, map) VALUES"
                     " ('m', 'v1', 0, 60, 20, ?)", (m.to_bytes(),))  # fmt: skip
        conn.commit()
        conn.close()
    else:
        with psycopg.connect(request.getfixturevalue("pg_url"), password=PASSWORD, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)
            conn.execute("INSERT INTO baselines VALUES ('m', 'v1', 1.0, 'file', %s)", (m.to_bytes(),))
            conn.execute("INSERT INTO windows (model, version, start_ts, end_ts, requests, map) VALUES"
                         " ('m', 'v1', 0, 60, 20, %s)", (m.to_bytes(),))  # fmt: skip
    store = open_store()
    assert store.schema_version == SCHEMA_VERSION
    assert store.baseline_with_source("m", "v1")[1] == "file"
    assert store.baseline("m", "v1").stats[("good", "not")].count == 20
    assert store.baseline("m", "v1", scope=FLEET) is None
    assert [w[3].requests for w in store.windows("m", "v1")] == [20]
    assert store.pod_windows_ending("m", 0.0, 100.0)[0].instance == ""


def test_explanations_filter_by_key_tuple_and_time(open_store):
    store = open_store()
    for i in range(10):
        store.add_explanation(_record(i, ts=1000.0 + i, pair_coef=2.0 if i % 2 else 0.0))
    store.add_explanation(_record(99, ts=1005.5, pair_coef=2.0, model="other"))
    hits = store.explanations("sentiment", key=("not", "good"))
    assert sorted(r.request_id for r in hits) == ["r1", "r3", "r5", "r7", "r9"]
    assert hits[0].request_id == "r9"  # newest first
    assert store.explanations("sentiment", since=1008.0)[0].terms[(1, 2)] == 2.0
    assert store.explanations("sentiment", key=("good", "not"), limit=2)[1].request_id == "r7"
    assert [r.request_id for r in store.explanations("sentiment", since=1002.0, until=1003.0)] == ["r3", "r2"]
    assert store.explanations("other")[0].keys == ["the", "not", "good"]


def test_one_explanation_is_found_by_request_id_on_either_store(open_store):
    """GetExplanation / trace --request: the lookup runs through the store's own transaction shell."""
    from spex_monitor.monitor.store_lookup import find_explanation

    store = open_store()
    store.add_explanation(_record(1, ts=1000.0, pair_coef=2.0))
    store.add_explanation(_record(1, ts=1001.0, pair_coef=3.0))  # the same id again: the newest wins
    store.add_explanation(_record(1, ts=1002.0, pair_coef=4.0, model="other"))
    found = find_explanation(store, "sentiment", "r1")
    assert found is not None and found.ts == 1001.0 and found.terms[(1, 2)] == 3.0
    assert found.trace_id == "t1" and found.keys[1:] == ["not", "good"]
    assert find_explanation(store, "sentiment", "missing") is None


def test_text_is_not_stored_unless_enabled_and_expires(open_store):
    store = open_store(text_ttl_s=10, retention_s=1000)
    store.add_explanation(_record(0, 100.0, 1.0, text="my email is a@b.c"))
    assert store.explanations("sentiment")[0].text is None
    store.close()
    store = open_store(store_text=True, text_ttl_s=10, retention_s=1000)
    store.add_explanation(_record(1, 150.0, 1.0, text="kept for a while"))
    assert store.explanations("sentiment", since=150.0)[0].text == "kept for a while"
    store.purge(now=200.0)
    assert [r.text for r in store.explanations("sentiment")] == [None, None]  # text expired, rows kept
    assert store.purge(now=2000.0) == 2 and store.explanations("sentiment") == []


def test_only_the_strongest_terms_words_are_kept_and_erased_after_the_ttl(open_store):
    store = open_store(text_ttl_s=60, terms_per_explanation=3)
    words = [f"w{i}" for i in range(12)]
    words[7] = SECRET
    terms = {(i,): 0.01 * (i + 1) for i in range(12)}
    terms[(2, 7)] = 3.0
    store.add_explanation(ExplanationRecord("r1", "m", "v1", words, terms, 0.9, 100, ts=1000.0))
    (record,) = store.explanations("m")
    assert len(record.terms) == 3 and record.terms[(2, 7)] == 3.0  # the 3 strongest
    assert record.keys[7] == SECRET and record.keys[0] == ""  # only the named features' words
    assert [r.request_id for r in store.explanations("m", key=("w2", SECRET))] == ["r1"]
    store.purge(now=1000.0 + 61)
    (record,) = store.explanations("m")
    assert SECRET not in record.keys and record.terms[(2, 7)] == 3.0  # coefficients stay, words go
    assert store.explanations("m", key=("w2", SECRET)) == []


def test_windows_baselines_and_reports_roundtrip_and_scopes(open_store):
    m = _map()
    store = open_store(instance="pod-a")
    wid = store.save_window("sentiment", "v1", 0.0, 60.0, m)
    store.save_window("sentiment", "v2", 60.0, 120.0, m)
    windows = store.windows("sentiment", "v1")
    assert [w[0] for w in windows] == [wid] and windows[0][3].requests == 20
    assert store.baseline("sentiment", "v1") is None
    store.set_baseline("sentiment", "v1", m, source="window:1")
    store.set_baseline("sentiment", "v1", m, source="file")  # replacing keeps one row
    store.set_baseline("sentiment", "v1", _map(5), source="first 2 fleet windows", scope=FLEET)
    assert store.baseline("sentiment", "v1").stats[("good", "not")].count == 20
    assert store.baseline("sentiment", "v1", scope=FLEET).requests == 5
    assert [b[3] for b in store.baselines()] == ["file"]
    rid = store.save_report("sentiment", "v1", wid, 0.4, 0.001, {"top": [["good", "not"]]})
    # a fleet window and its report: invisible to every pod read
    fleet_window = FleetWindow("v1", 0.0, 60.0, _map(40), (0.9, 0.5, {"n": 1}))
    stored = store.save_fleet_windows("sentiment", [fleet_window])
    assert len(stored) == 1
    report = store.reports("sentiment")[0]
    assert (report["id"], report["window_id"], report["top"]) == (rid, wid, [["good", "not"]])
    assert report["score"] == pytest.approx(0.4) and report["p_value"] == pytest.approx(0.001)
    assert len(store.reports("sentiment")) == 1 and [w[0] for w in store.windows("sentiment", "v1")] == [wid]
    (fleet,) = store.reports("sentiment", scope=FLEET)
    assert (fleet["scope"], fleet["start_ts"], fleet["end_ts"], fleet["n"]) == (FLEET, 0.0, 60.0, 1)
    assert store.windows("sentiment", "v1", scope=FLEET)[0][3].requests == 40
    (pod,) = [w for w in store.pod_windows_ending("sentiment", 0.0, 61.0)]
    assert (pod.id, pod.instance, pod.version) == (wid, "pod-a", "v1")


def test_a_fleet_window_range_is_stored_once(open_store):
    store = open_store()
    first = store.save_fleet_windows(
        "m",
        [FleetWindow("v1", 0.0, 60.0, _map(), (1.0, 0.001, {"a": 1})), FleetWindow("v2", 0.0, 60.0, _map())],
    )
    assert [r is not None for _, r in first] == [True, False]
    again = store.save_fleet_windows("m", [FleetWindow("v1", 0.0, 60.0, _map(), (2.0, 0.5, {"a": 2}))])
    assert again == [None]  # the earlier holder's result stands
    assert [r["a"] for r in store.reports("m", scope=FLEET)] == [1]
    assert len(store.windows("m", "v1", scope=FLEET)) == 1
    assert store.window_end_bound("m", FLEET, latest=True) == 60.0


def test_window_lookups_filter_in_sql(open_store):
    store = open_store()
    ids = [store.save_window("m", "v1", float(t), float(t + 1), InteractionMap()) for t in range(5)]
    store.save_window("m", "v2", 10.0, 11.0, InteractionMap())
    assert [w[0] for w in store.windows("m", "v1", window_id=ids[2])] == [ids[2]]
    assert [w[0] for w in store.windows("m", "v1", latest=True)] == [ids[-1]]
    assert [w[0] for w in store.windows("m", "v1", since=2.5, until=3.5)] == ids[2:4]
    for i, window in enumerate(ids):
        store.save_report("m", "v1" if i % 2 == 0 else "v2", window, 0.1, 0.5, {"n": i})
    assert [r["n"] for r in store.reports("m", version="v1")] == [0, 2, 4]
    assert [r["n"] for r in store.reports("m", version="v1", limit=2)] == [2, 4]
    assert [r["n"] for r in store.reports("m", window_id=ids[3])] == [3]
    assert store.window_end_bound("m", "pod", latest=False, end_after=3.0) == 4.0  # strictly after
    assert store.window_end_bound("m", "pod", latest=False) == 1.0
    assert [w.end_ts for w in store.pod_windows_ending("m", 2.0, 5.0)] == [3.0, 4.0, 5.0]  # (2, 5]


def test_purge_is_all_or_nothing(backend, open_store):
    store = open_store(retention_s=10)
    store.add_explanation(_record(1, ts=0.0, pair_coef=1.0))
    store.save_report("m", "v1", None, 1.0, 0.5, {})
    if backend == "sqlite":
        _raw(store, "CREATE TRIGGER fail BEFORE DELETE ON reports BEGIN SELECT RAISE(ABORT, 'x'); END")
    else:
        _raw(store, "CREATE FUNCTION fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'x'; END $$"
                    " LANGUAGE plpgsql")  # fmt: skip
        _raw(store, "CREATE TRIGGER fail BEFORE DELETE ON reports FOR EACH ROW EXECUTE FUNCTION fail()")
    with pytest.raises(Exception, match="x"):
        store.purge(now=1e12)
    assert len(store.explanations("sentiment")) == 1  # the explanations' delete was rolled back too
    _raw(store, "DROP TRIGGER fail" + ("" if backend == "sqlite" else " ON reports"))
    assert store.purge(now=1e12) == 1  # and the store is usable: no transaction left open


def test_nul_characters_never_fail_a_write(backend, open_store):
    store = open_store(store_text=True)
    record = _record(1, 10.0, 1.0, text="a\x00b")
    record.request_id = "id\x00"
    assert store.add_explanation(record) > 0
    (back,) = store.explanations("sentiment")
    expected = ("id\x00", "a\x00b") if backend == "sqlite" else ("id\ufffd", "a\ufffdb")
    assert (back.request_id, back.text) == expected


def test_concurrent_writers_lose_nothing(open_store):
    store = open_store()
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(40):
                store.add_explanation(_record(worker * 1000 + i, float(i), 1.0))
                if i % 10 == 0:
                    store.save_window("sentiment", "v1", float(i), float(i + 1), _map(3, seed=i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(store.explanations("sentiment", limit=1000)) == 160
    assert len(store.windows("sentiment", "v1")) == 16
