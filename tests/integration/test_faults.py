"""Faults the sidecar must survive: a full store, kill -9 during writes, a worker thread's failure."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spex_monitor.config import Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.monitor import InteractionMap
from spex_monitor.monitor.store import ExplanationRecord
from spex_monitor.monitor.store_sqlite import SQLiteStore
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc
from spex_monitor.server.app import STORE_HEALTH_SERVICE, Sidecar

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_a_full_store_degrades_persistence_but_never_observe(tmp_path):
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "sampling_rate": 1.0,
                    "backend": {"kind": "local", "path": str(model_path("sentiment-base"))},
                }
            ],
            "engine": {"budget": 128, "max_order": 2},
            "budget": {"inferences_per_second": 1e7, "burst": 1e7},
            "windows": {"seconds": None, "requests": 40},
            "baseline": {"windows": 1, "min_window_requests": 10, "n_permutations": 99},
            "store": {"path": str(tmp_path / "spex.db"), "max_bytes": 65_536, "store_text": True},
            "server": {"grpc_port": 0, "metrics_port": 0, "explain_in": "thread", "queue_per_label": 1000},
        }
    )
    sidecar = Sidecar(settings).start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
        stub = pb_grpc.MonitorServiceStub(channel)
        texts, _ = generate_corpus(200, seed=5)
        padding = " and the rest goes on about the music"
        for i, text in enumerate(texts):
            reply = stub.Observe(
                pb.ObserveRequest(
                    request_id=f"r{i}", model="sentiment", label="positive", text=text + padding
                ),
                timeout=5,
            )
            assert reply.sampled  # rate 1.0 and room in the reservoir: every one is a candidate
        sidecar.monitor.drain()
        sidecar.monitor.tick(force=True)
        assert sidecar.monitor.counters["store_errors"] > 0
        assert sidecar.monitor.counters["explanations:ok"] >= 190  # explanation went on without the store
        # a write that cannot fit (100 kB of text) makes the state deterministic: degraded
        huge = ExplanationRecord("huge", "sentiment", "v1", ["a"], {(): 0.0}, 1.0, 1, text="x" * 100_000)
        assert sidecar.monitor.persist(sidecar.store.add_explanation, huge) is None
        sidecar.ticker.update_store_health()
        health = health_pb2_grpc.HealthStub(channel)

        def status(service: str) -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

        assert status(STORE_HEALTH_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert status("") == health_pb2.HealthCheckResponse.SERVING
        value = sidecar.metrics.registry.get_sample_value
        assert value("spex_monitor_store_degraded") == 1.0
        assert value("spex_monitor_store_write_errors_total") == sidecar.monitor.counters["store_errors"]
        # room again (an operator grew the volume): the next write succeeds and the store recovers
        sidecar.store._conn.execute("PRAGMA max_page_count = 100000")
        assert sidecar.monitor.persist(sidecar.store.add_explanation, huge)
        sidecar.ticker.update_store_health()
        assert status(STORE_HEALTH_SERVICE) == health_pb2.HealthCheckResponse.SERVING
        assert value("spex_monitor_store_degraded") == 0.0
        assert stub.Observe(
            pb.ObserveRequest(request_id="after", model="sentiment", label="positive", text="fine"), timeout=5
        )
        channel.close()
    finally:
        sidecar.stop()


WRITER = """
import sys, time
import numpy as np
from spex_monitor.attribution import Interactions
from spex_monitor.monitor import InteractionMap
from spex_monitor.monitor.store import ExplanationRecord
from spex_monitor.monitor.store_sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1], store_text=True)
rng = np.random.default_rng(int(sys.argv[2]))
i = 0
print("ready", flush=True)
while True:
    keys = ["not", "good", "plot", f"w{i % 50}"]
    result = Interactions({(): 0.1, (0, 1): float(rng.normal()), (2,): 0.3}, 4, faithfulness=0.9)
    store.add_explanation(ExplanationRecord(f"r{sys.argv[2]}-{i}", "m", "v1", keys, result.fourier, 0.9, 64,
                                            text="the plot was not good"))
    if i % 10 == 0:
        m = InteractionMap()
        m.add(result, keys, request_id=f"r{i}")
        store.save_window("m", "v1", time.time() - 1, time.time(), m)
        store.set_baseline("m", "v1", m, source=f"loop {sys.argv[2]} step {i}")
    i += 1
"""


def test_kill_9_during_writes_never_corrupts_the_store(tmp_path):
    path = tmp_path / "spex.db"
    with SQLiteStore(path) as store:
        pinned = InteractionMap()
        store.set_baseline("pinned", "v1", pinned, source="before the kills")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(0)
    counts = []
    for loop in range(20):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(loop)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))  # kill at an arbitrary point of a write
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with SQLiteStore(path) as store:  # reopens (recovers the WAL) and reads everything back
            records = store.explanations("m", limit=100_000)
            counts.append(len(records))
            assert all(r.keys and r.terms for r in records)
            assert store.baseline("pinned", "v1") is not None
            windows = store.windows("m", "v1")
            assert all(w[3].requests == 1 for w in windows)
            if loop:
                assert store.baseline("m", "v1") is not None
    # every committed explanation survived every later kill: the count never goes down
    assert counts == sorted(counts) and counts[-1] > counts[0] > 0
