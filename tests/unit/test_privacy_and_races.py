"""Issue 23 §2 (what is kept, and for how long), §6 (uploads and empty baselines) and issue 15 item 12
(races and lost work) at the level of the monitor and the store."""

from __future__ import annotations

import sqlite3
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.explain import ExplainResult
from spex_monitor.monitor import InteractionMap
from spex_monitor.monitor.budget import Budget
from spex_monitor.monitor.maps import MapTooLargeError
from spex_monitor.monitor.sampling import StratifiedSampler
from spex_monitor.monitor.store import ExplanationRecord
from spex_monitor.monitor.store_sqlite import SQLiteStore
from spex_monitor.monitor.vocabulary import RARE, DocumentFrequency, sanitize_map
from spex_monitor.monitor.windows import TumblingWindows
from spex_monitor.monitor.worker import LockedCounter, Monitor, Observation

SECRET = "zanzibar7731"


def _bytes_of(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def _record(i: int, ts: float, words: list[str]) -> ExplanationRecord:
    terms = {(k,): 0.01 * k for k in range(len(words))}
    terms[(0, 1)] = 2.0
    return ExplanationRecord(f"r{i}", "m", "v1", words, terms, 0.9, 100, ts=ts, text=" ".join(words))


def test_the_store_keeps_only_the_strongest_terms_words_and_erases_them_after_the_ttl(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path, store_text=False, text_ttl_s=60, terms_per_explanation=3)
    words = [SECRET, "good", *[f"filler{k}" for k in range(30)]]  # (secret, good) is the strongest term
    store.add_explanation(_record(1, ts=1000.0, words=words))
    (record,) = store.explanations("m")
    kept = {record.keys[i] for term in record.terms for i in term}
    assert {SECRET, "good"} <= kept and len(record.terms) <= 4  # 3 strongest terms and the constant
    raw = _bytes_of(path)
    assert SECRET.encode() in raw  # an on-call trace may show it to readers, within the TTL
    assert b"filler3" not in raw  # never the whole word sequence (it was, for the whole retention)
    store.purge(now=1000.0 + 61)
    (record,) = store.explanations("m")
    assert record.text is None and not any(record.keys) and record.terms  # numbers stay, words go
    assert store.explanations("m", key=tuple(sorted((SECRET, "good")))) == []
    raw = _bytes_of(path)
    assert SECRET.encode() not in raw and b"good" not in raw, "erased words must leave every page"
    store.close()


def test_purge_rolls_back_on_failure(tmp_path):
    store = SQLiteStore(tmp_path / "s.db", retention_s=10)
    store.add_explanation(_record(1, ts=0.0, words=["a", "b"]))
    store._conn.execute("CREATE TRIGGER fail BEFORE DELETE ON reports BEGIN SELECT RAISE(ABORT, 'x'); END")
    store.save_report("m", "v1", None, 1.0, 0.5, {})
    with pytest.raises(sqlite3.DatabaseError):
        store.purge(now=1e12)
    assert len(store.explanations("m")) == 1  # the explanations' delete was rolled back too
    store._conn.execute("DROP TRIGGER fail")
    assert store.purge(now=1e12) == 1  # and the connection is usable: no transaction left open
    store.close()


def test_window_and_report_lookups_filter_in_sql(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    ids = [store.save_window("m", "v1", float(t), float(t + 1), InteractionMap()) for t in range(5)]
    store.save_window("m", "v2", 10.0, 11.0, InteractionMap())
    assert [w[0] for w in store.windows("m", "v1", window_id=ids[2])] == [ids[2]]
    assert [w[0] for w in store.windows("m", "v1", latest=True)] == [ids[-1]]
    for i, window in enumerate(ids):
        store.save_report("m", "v1" if i % 2 == 0 else "v2", window, 0.1, 0.5, {"n": i})
    assert [r["n"] for r in store.reports("m", version="v1")] == [0, 2, 4]
    assert [r["n"] for r in store.reports("m", version="v1", limit=2)] == [2, 4]
    assert [r["n"] for r in store.reports("m", window_id=ids[3])] == [3]
    store.close()


def test_rare_words_are_replaced_in_exported_maps():
    frequency = DocumentFrequency(min_df=2)
    for request in (["not", "good", SECRET], ["not", "good"], ["good", "plot"]):
        frequency.add(request)
    m = InteractionMap()
    terms = {(0,): 0.5, (0, 1): 1.0, (0, 2): 0.7, (1, 2): 0.3}
    m.add(Interactions(terms, 3, faithfulness=1.0, inferences_used=8), ["not", "good", SECRET], "r1")
    m.observe(["not", "good", SECRET], "pos", 0.9)
    public = sanitize_map(m, frequency.common)
    encoded = public.to_bytes()
    assert SECRET.encode() not in zlib.decompress(encoded[6:])
    assert ("good", "not") in public.stats and (RARE, "not") in public.stats and (RARE,) not in public.stats
    assert public.requests == m.requests and public.energy == m.energy
    assert public.drift.tokens[RARE] == 1.0 and "good" in public.drift.tokens
    assert (RARE, "good") in public.stats  # (good, secret) kept its mass under the placeholder


def test_uploaded_maps_are_bounded_when_decoded():
    bomb = b"SPXM" + (1).to_bytes(2, "big") + zlib.compress(b" " * (80 * 1024 * 1024), 9)
    assert len(bomb) < 200_000
    with pytest.raises(MapTooLargeError, match="decompresses to more than"):
        InteractionMap.from_bytes(bomb)
    payload = InteractionMap().to_bytes()
    huge_limits = zlib.decompress(payload[6:]).replace(b'"limits":[10000,5,2000]', b'"limits":[1e12,5,2000]')
    with pytest.raises(ValueError, match="limits"):
        InteractionMap.from_bytes(payload[:6] + zlib.compress(huge_limits))
    with pytest.raises(ValueError, match="corrupt"):
        InteractionMap.from_bytes(payload[:6] + zlib.compress(b'{"limits": "x"}'))


def _explainer(observation: Observation):  # noqa: ANN202
    words = observation.text.split()
    rng = np.random.default_rng(zlib.crc32(observation.request_id.encode()))
    terms = {(i,): float(rng.normal(0, 0.3)) for i in range(len(words))}
    terms[(0, 1)] = 2.0
    return ExplainResult(Interactions(terms, len(words), faithfulness=0.9, inferences_used=10), words, 0, "")


def _monitor(tmp_path, **kwargs) -> Monitor:
    return Monitor(
        explainer=_explainer,
        sampler=StratifiedSampler(rate=1.0, reservoir_per_label=100, seed=0),
        budget=Budget(inferences_per_second=1e9, burst=1e9),
        windows=TumblingWindows(window_s=None, window_requests=10_000),
        store=SQLiteStore(tmp_path / "m.db"),
        inferences_per_explanation=10,
        min_window_requests=5,
        baseline_windows=1,
        n_permutations=99,
        **kwargs,
    )


def _fill(monitor: Monitor, model: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        monitor.observe(Observation(f"{model}-{i}", model, "v1", "pos", text="not good at all"))
    monitor.drain()


def test_a_pinned_baseline_is_not_rolled(tmp_path):
    monitor = _monitor(tmp_path, rolling_decay=0.5)
    _fill(monitor, "m", 10)
    monitor.tick(force=True)  # the automatic baseline (10 requests): rolled from now on
    _fill(monitor, "m", 10, start=100)
    monitor.tick(force=True)
    assert monitor.baseline("m", "v1").requests == pytest.approx(0.5 * 10 + 10)
    pinned = InteractionMap.merged([monitor.baseline("m", "v1")])
    monitor.set_baseline("m", "v1", pinned, source="api")
    _fill(monitor, "m", 10, start=200)
    monitor.tick(force=True)
    assert monitor.baseline("m", "v1") is pinned and pinned.requests == pytest.approx(15)  # as set


def test_a_failing_window_hook_does_not_lose_the_other_windows(tmp_path):
    seen = []

    def hook(result) -> None:  # noqa: ANN001
        seen.append(result.window.model)
        if result.window.model == "a":
            raise RuntimeError("exporter down")

    monitor = _monitor(tmp_path, on_window=hook)
    for model in ("a", "b", "c"):
        _fill(monitor, model, 6)
    results = monitor.tick(force=True)
    assert sorted(r.window.model for r in results) == ["a", "b", "c"] and sorted(seen) == ["a", "b", "c"]
    assert monitor.counters["windows:hook_failed"] == 1
    assert len(monitor.store.windows("c", "v1")) == 1


def test_counters_are_exact_under_concurrent_increments():
    counters = LockedCounter()

    def bump() -> None:
        for _ in range(20_000):
            counters.add("observed")

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters["observed"] == 160_000
