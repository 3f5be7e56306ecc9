"""The fleet view on a real PostgreSQL: three pods (Monitor instances, each with its own store on one
database) and aggregators elected by an advisory lock.

Figures (asserted below): with 12 explained requests per pod per window no pod ever compares a window (a
pod needs ``min_window_requests`` = 30), while the fleet window (36) detects the incident at p < 0.01 and
stays quiet on the normal window. Killing the leading aggregator process (SIGKILL) hands the lock to
another within one fleet window; every fleet window is stored once and holds every pod window of its range.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import psycopg
import yaml

from spex_monitor.attribution import Interactions
from spex_monitor.explain import ExplainResult
from spex_monitor.monitor import InteractionMap
from spex_monitor.monitor.budget import Budget
from spex_monitor.monitor.fleet import FleetAggregator
from spex_monitor.monitor.fleet_lock import AdvisoryLock
from spex_monitor.monitor.sampling import StratifiedSampler
from spex_monitor.monitor.store import FLEET
from spex_monitor.monitor.store_postgres import PostgresStore
from spex_monitor.monitor.windows import TumblingWindows
from spex_monitor.monitor.worker import Monitor, Observation

from .harness import wait_until
from .postgres_harness import PASSWORD, pg_url, postgres  # noqa: F401 - fixtures

W = 60.0
PER_POD = 12


def _explainer(observation: Observation):
    """Normal traffic leans on ('not', 'good'); in the incident that pair weakens and ('at', 'all') rises."""
    words = observation.text.split()
    rng = np.random.default_rng(zlib.crc32(observation.request_id.encode()))
    incident = observation.request_id.startswith("inc")
    terms = {(i,): float(rng.normal(0, 0.3)) for i in range(len(words))}
    terms[(0, 1)] = float(rng.normal(0.3 if incident else 2.0, 0.5))
    if incident:
        terms[(2, 3)] = float(rng.normal(1.5, 0.5))
    return ExplainResult(Interactions(terms, len(words), faithfulness=0.9, inferences_used=100), words, 0, "")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _pod(url: str, name: str, clock: Clock) -> Monitor:
    return Monitor(
        explainer=_explainer,
        sampler=StratifiedSampler(rate=1.0, reservoir_per_label=1000, seed=0),
        budget=Budget(inferences_per_second=1e9, burst=1e9),
        windows=TumblingWindows(window_s=W, clock=clock),
        store=PostgresStore(url, password=PASSWORD, instance=name),
        inferences_per_explanation=100,
        baseline_windows=2,
        min_window_requests=30,
        n_permutations=999,
    )


def test_three_pods_detect_an_incident_together_that_none_can_see_alone(pg_url):  # noqa: F811
    base = 1_700_000_000 // W * W
    clock = Clock(base)
    pods = [_pod(pg_url, f"pod-{p}", clock) for p in range(3)]
    for slot in range(4):  # two baseline windows, one normal, one incident
        clock.t = base + slot * W + 1 + slot
        for p, pod in enumerate(pods):
            for i in range(PER_POD):
                kind = "inc" if slot == 3 else "ok"
                request = Observation(f"{kind}-{slot}-{p}-{i}", "m", "v1", "pos", 0.9, text="not good at all")
                pod.observe(request)
            pod.drain(60)
        clock.t = base + slot * W + 50
        for pod in pods:
            pod.tick(force=True)
    for pod in pods:
        # 12 < 30: never compared (pods 1 and 2 found pod 0's stored baseline a window earlier: pod-scope
        # baselines are shared by the pods of a shared store)
        assert pod.counters["windows:too_small"] >= 2
        assert pod.store.reports("m") == [] and pod.store_error is None
    aggregator_store = PostgresStore(pg_url, password=PASSWORD)
    aggregator = FleetAggregator(
        aggregator_store, "m", W, AdvisoryLock(aggregator_store.connect, "m"), grace_s=5,
        baseline_windows=2, min_window_requests=30, n_permutations=999,
    )  # fmt: skip
    results = aggregator.tick(now=base + 4 * W + 6)
    assert [(r.pods, r.requests) for r in results] == [(3, 3 * PER_POD)] * 4
    assert [r.report is not None for r in results] == [False, False, True, True]
    normal, incident = results[2], results[3]
    assert not normal.alarm and normal.report.p_value > 0.01
    assert incident.alarm and incident.report.p_value < 0.01
    print(f"\nfleet detection: {PER_POD} explained requests/pod/window, {3 * PER_POD} in the fleet window;"
          f" normal p={normal.report.p_value:.3f}, incident p={incident.report.p_value:.4f}")
    top = [c.key for c in incident.report.top_contributors(2)]
    assert ("all", "at") in top or ("good", "not") in top
    # a second candidate cannot lead while the first holds the lock; once released, it has nothing to redo
    other = FleetAggregator(aggregator_store, "m", W, AdvisoryLock(aggregator_store.connect, "m"), grace_s=5)
    assert other.tick(now=base + 4 * W + 6) == [] and not other.leader
    aggregator.close()
    assert other.tick(now=base + 5 * W) == [] and other.leader
    assert len(aggregator_store.reports("m", scope=FLEET)) == 2
    other.close()
    aggregator_store.close()
    for pod in pods:
        pod.store.close()


def _lock_holder(url: str) -> int | None:
    """The backend pid holding this database's advisory lock (one model, so one lock)."""
    with psycopg.connect(url, password=PASSWORD, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
        ).fetchone()
    return None if row is None else int(row[0])


def test_killing_the_leading_aggregator_hands_over_within_a_window(pg_url, tmp_path: Path):  # noqa: F811
    window_s = 3.0
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD)
    config = {
        "models": [{"name": "m", "backend": {"kind": "local", "path": "/nonexistent"}}],
        "windows": {"seconds": window_s},
        "baseline": {"windows": 1, "min_window_requests": 1, "n_permutations": 99},
        "store": {"url": pg_url, "password_file": str(password_file)},
        "fleet": {"tick_s": 0.1, "grace_s": 0.5, "backfill_windows": 1000},
        "server": {"host": "127.0.0.1", "metrics_port": 0},  # each process's own port, named in its log
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    writer_store = PostgresStore(pg_url, password=PASSWORD)
    stop = threading.Event()
    written: dict[int, float] = {}  # fleet window index -> requests written by the three pods

    def pods_write() -> None:  # three pods closing a window every window_s, not aligned to the fleet's
        n = 0
        while not stop.wait(window_s / 3):
            now = time.time()
            m = InteractionMap()
            m.add(Interactions({(0, 1): 1.0}, 2), ["not", "good"], f"r{n}")
            writer_store.instance = f"pod-{n % 3}"
            writer_store.save_window("m", "v1", now - window_s, now, m)
            slot = int(now // window_s)
            written[slot] = written.get(slot, 0.0) + 1
            n += 1

    writer = threading.Thread(target=pods_write)
    logs = [tmp_path / f"agg{i}.log" for i in range(3)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "spex_monitor.server.aggregation",
             "--config", str(tmp_path / "config.yaml"), "--log-level", "INFO"],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )  # fmt: skip
        for log in logs
    ]
    try:
        writer.start()
        deadline = time.monotonic() + 180  # three interpreters starting on a loaded 2-core machine
        first = None
        while first is None and time.monotonic() < deadline and all(p.poll() is None for p in processes):
            time.sleep(0.05)
            first = _lock_holder(pg_url)
        assert first is not None, "no aggregator took the lock:\n" + "\n".join(
            f"[{log.name}, exit {p.poll()}] {log.read_text()[-1500:]}"
            for log, p in zip(logs, processes, strict=True)
        )
        deadline = time.monotonic() + 180
        time.sleep(4 * window_s)  # a few fleet windows under the first leader
        leaders = [i for i, log in enumerate(logs) if "holding the aggregator lock" in log.read_text()]
        assert len(leaders) == 1, f"exactly one leader expected, logs say {leaders}"
        # the leader exports the fleet windows it merged on its metrics port
        port = int(re.search(r"fleet metrics on 127\.0\.0\.1:(\d+)/metrics", logs[leaders[0]].read_text())[1])
        series = 'spex_monitor_fleet_windows_total{model="m",scope="fleet",version="v1"}'

        def exported() -> bool:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return any(line.startswith(series) and float(line.split()[-1]) >= 1 for line in body.splitlines())

        assert wait_until(exported, timeout_s=30), "the leading aggregator did not export its fleet windows"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok\n"
        os.kill(processes[leaders[0]].pid, signal.SIGKILL)
        killed = time.monotonic()
        while _lock_holder(pg_url) in (None, first) and time.monotonic() < deadline:
            time.sleep(0.02)
        handover_s = time.monotonic() - killed
        assert _lock_holder(pg_url) not in (None, first)
        assert handover_s < window_s, f"handover took {handover_s:.2f} s (window {window_s} s)"
        time.sleep(4 * window_s)  # a few fleet windows under the new leader
        stop.set()
        writer.join(30)
        last_slot = max(written)
        while time.monotonic() < deadline:  # the last written window is merged after its grace
            done = writer_store.window_end_bound("m", FLEET, latest=True)
            if done is not None and done >= (last_slot + 1) * window_s:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
    fleet = writer_store.windows("m", "v1", scope=FLEET)
    got = {int(start // window_s): m.requests for _, start, _, m in fleet}
    assert got == written, "every fleet window exactly once, holding every pod window of its range"
    reports = writer_store.reports("m", scope=FLEET, limit=10_000)
    ranges = {(r["start_ts"], r["end_ts"]) for r in reports}
    assert len(reports) == len(ranges) == len(fleet) - 1  # the first fleet window became the baseline
    writer_store.close()
    print(f"\nfleet failover: handover {handover_s:.3f} s, {len(fleet)} fleet windows, none lost or doubled")
