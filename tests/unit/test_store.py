"""SQLite store: migrations, WAL, key-tuple lookups, windows, baselines, reports, retention, no text."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.monitor import InteractionMap
from spex_monitor.monitor.store import SCHEMA_VERSION, ExplanationRecord
from spex_monitor.monitor.store_sqlite import SQLiteStore


def _record(i: int, ts: float, pair_coef: float, text: str | None = None) -> ExplanationRecord:
    return ExplanationRecord(
        request_id=f"r{i}",
        model="sentiment",
        version="v1",
        keys=["the", "not", "good"],
        terms={(0,): 0.1, (1, 2): pair_coef, (0, 1): 0.01},
        faithfulness=0.97,
        inferences=500,
        ts=ts,
        trace_id=f"t{i}",
        text=text,
    )


def test_wal_migrations_and_reopen(tmp_path):
    path = tmp_path / "s.db"
    with SQLiteStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
    with SQLiteStore(path) as store:  # reopening applies nothing twice
        assert store.schema_version == SCHEMA_VERSION
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_explanations_filter_by_key_tuple_and_time(tmp_path):
    with SQLiteStore(tmp_path / "s.db") as store:
        for i in range(10):
            store.add_explanation(_record(i, ts=1000.0 + i, pair_coef=2.0 if i % 2 else 0.0))
        hits = store.explanations("sentiment", key=("not", "good"))
        assert sorted(r.request_id for r in hits) == ["r1", "r3", "r5", "r7", "r9"]
        assert hits[0].request_id == "r9"  # newest first
        assert store.explanations("sentiment", since=1008.0)[0].terms[(1, 2)] == 2.0
        assert store.explanations("sentiment", key=("good", "not"), limit=2)[1].request_id == "r7"


def test_text_is_not_stored_unless_enabled_and_expires(tmp_path):
    with SQLiteStore(tmp_path / "a.db") as store:
        store.add_explanation(_record(0, 1.0, 1.0, text="my email is a@b.c"))
        assert store.explanations("sentiment")[0].text is None
    with SQLiteStore(tmp_path / "b.db", store_text=True, text_ttl_s=10, retention_s=1000) as store:
        store.add_explanation(_record(0, 100.0, 1.0, text="kept for a while"))
        assert store.explanations("sentiment")[0].text == "kept for a while"
        store.purge(now=200.0)
        assert store.explanations("sentiment")[0].text is None  # text expired, explanation kept
        assert store.purge(now=2000.0) == 1 and store.explanations("sentiment") == []
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("a.db*"))
    assert raw and b"a@b.c" not in raw


def test_windows_baselines_and_reports_roundtrip(tmp_path):
    m = InteractionMap()
    rng = np.random.default_rng(0)
    for i in range(20):
        m.add(Interactions({(0, 1): float(rng.normal(2, 0.1)), (0,): 0.3}, 2), ["not", "good"], f"r{i}")
    with SQLiteStore(tmp_path / "s.db") as store:
        wid = store.save_window("sentiment", "v1", 0.0, 60.0, m)
        store.save_window("sentiment", "v2", 60.0, 120.0, m)
        windows = store.windows("sentiment", "v1")
        assert [w[0] for w in windows] == [wid] and windows[0][3].requests == 20
        assert store.baseline("sentiment", "v1") is None
        store.set_baseline("sentiment", "v1", m, source="window:1")
        store.set_baseline("sentiment", "v1", m, source="file")  # replacing keeps one row
        assert store.baseline("sentiment", "v1").stats[("good", "not")].count == 20
        assert [b[3] for b in store.baselines()] == ["file"]
        rid = store.save_report("sentiment", "v1", wid, 0.4, 0.001, {"top": [["good", "not"]]})
        report = store.reports("sentiment")[0]
        assert (report["id"], report["window_id"], report["top"]) == (rid, wid, [["good", "not"]])
        assert report["score"] == pytest.approx(0.4) and report["p_value"] == pytest.approx(0.001)
