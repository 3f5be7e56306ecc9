"""Fleet and shared-store load on this machine (figures for docs/scaling.md and RESULTS.md).

1. Map bytes per pod window (production-like text traffic, ProxySPEX-shaped explanations).
2. Merge cost per pod: decode + merge N pod windows (the aggregator's inner loop), and one full
   aggregator tick against PostgreSQL (query, decode, merge, compare, store) at N pods.
3. Store writes per second at N simulated pods: worker processes, one PostgresStore (one connection) per
   pod, each writing explanations as fast as it can, plus its windows; PostgreSQL 15 on loopback with
   durable commits (fsync on, synchronous_commit on: the production defaults).

Run: ``python benchmarks/fleet_store.py [--quick]`` (≈ 2 min; ``--quick`` ≈ 40 s). Needs Debian's postgresql.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from integration.postgres_harness import PASSWORD, PostgresCluster  # noqa: E402

from benchmarks.harness import production_texts  # noqa: E402
from spex_monitor.attribution import Interactions  # noqa: E402
from spex_monitor.monitor import InteractionMap  # noqa: E402
from spex_monitor.monitor.fleet import FleetAggregator  # noqa: E402
from spex_monitor.monitor.store import ExplanationRecord  # noqa: E402
from spex_monitor.monitor.store_postgres import PostgresStore  # noqa: E402

W = 300.0


def explanation(words: list[str], rng: np.random.Generator) -> Interactions:
    """ProxySPEX-shaped: every first-order term, the top 20 pairs and 5 triples over up to 32 features."""
    n = min(len(words), 32)
    terms = {(i,): float(rng.normal(0, 0.5)) for i in range(n)}
    for _ in range(20):
        terms[tuple(sorted(rng.choice(n, 2, replace=False).tolist()))] = float(rng.normal(0, 0.4))
    for _ in range(5):
        terms[tuple(sorted(rng.choice(n, 3, replace=False).tolist()))] = float(rng.normal(0, 0.2))
    return Interactions(terms, n, faithfulness=0.9, inferences_used=500)


def pod_window(requests: int, seed: int) -> InteractionMap:
    rng = np.random.default_rng(seed)
    m = InteractionMap(seed=seed)
    for i, text in enumerate(production_texts(requests, seed)):
        words = text.lower().split()[:32]
        m.add(explanation(words, rng), words, f"p{seed}-{i}")
        m.observe(text.lower().split(), "pos", 0.9)
    return m


def measure_maps(sizes: list[int]) -> dict:
    out = {}
    for n in sizes:
        m = pod_window(n, seed=n)
        blob = m.to_bytes()
        began = time.perf_counter()
        for _ in range(5):
            InteractionMap.from_bytes(blob)
        decode_ms = (time.perf_counter() - began) / 5 * 1e3
        out[n] = {"bytes": len(blob), "key_tuples": len(m), "decode_ms": decode_ms}
    return out


def measure_merge(pods: int, requests: int) -> dict:
    blobs = [pod_window(requests, seed=1000 + p).to_bytes() for p in range(pods)]
    began = time.perf_counter()
    maps = [InteractionMap.from_bytes(b) for b in blobs]
    decoded = time.perf_counter()
    InteractionMap.merged(maps)
    merged = time.perf_counter()
    return {
        "pods": pods,
        "decode_ms_per_pod": (decoded - began) / pods * 1e3,
        "merge_ms_per_pod": (merged - decoded) / pods * 1e3,
    }


def measure_tick(url: str, pods: int, requests: int) -> dict:
    store = PostgresStore(url, password=PASSWORD)
    blobs = [pod_window(requests, seed=2000 + p) for p in range(min(pods, 8))]
    for slot in (1, 2):  # two fleet windows: the first becomes the baseline, the second is compared
        for p in range(pods):
            store.instance = f"pod-{p}"
            store.save_window("m", "v1", slot * W - W + p, slot * W + 1 + p * 0.01, blobs[p % len(blobs)])
    aggregator = FleetAggregator(store, "m", W, grace_s=0, baseline_windows=1, n_permutations=1000)
    aggregator.tick(now=2 * W + 1)
    began = time.perf_counter()
    (result,) = aggregator.tick(now=3 * W + 1)
    seconds = time.perf_counter() - began
    store.close()
    assert result.report is not None
    return {"pods": pods, "tick_s": seconds, "ms_per_pod": seconds / pods * 1e3}


def _pod_writer(url: str, pods: int, seconds: float, queue: mp.Queue) -> None:
    import threading

    stores = [
        PostgresStore(url, password=PASSWORD, max_connections=1, instance=f"pod-{i}") for i in range(pods)
    ]
    words = production_texts(1, 7)[0].lower().split()[:32]
    record_terms = explanation(words, np.random.default_rng(0)).fourier
    window = pod_window(60, seed=5)
    latencies: list[float] = []
    lock = threading.Lock()
    counts = {"explanations": 0, "windows": 0}
    stop_at = time.monotonic() + seconds

    def run(store: PostgresStore, index: int) -> None:
        mine = []
        i = 0
        while time.monotonic() < stop_at:
            began = time.perf_counter()
            record = ExplanationRecord(f"r{index}-{i}", "m", "v1", words, record_terms, 0.9, 500)
            store.add_explanation(record)
            mine.append(time.perf_counter() - began)
            i += 1
            if i % 200 == 0:  # a window now and then (a real pod: one per window_s)
                store.save_window("m", "v1", time.time() - W, time.time(), window)
                with lock:
                    counts["windows"] += 1
        with lock:
            latencies.extend(mine)
            counts["explanations"] += i

    threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    queue.put((counts, latencies))


def measure_writes(url: str, pods: int, seconds: float, processes: int) -> dict:
    queue: mp.Queue = mp.get_context("fork").Queue()
    per = [pods // processes + (1 if i < pods % processes else 0) for i in range(processes)]
    context = mp.get_context("fork")
    workers = [context.Process(target=_pod_writer, args=(url, n, seconds, queue)) for n in per if n]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    explanations = sum(r[0]["explanations"] for r in results)
    latencies = sorted(x for r in results for x in r[1])
    return {
        "pods": pods,
        "explanations_per_s": explanations / seconds,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "windows": sum(r[0]["windows"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    seconds = 4.0 if args.quick else 10.0
    machine = f"{platform.node()}, {mp.cpu_count()} CPUs, Python {platform.python_version()}"
    figures: dict = {"machine": machine}
    figures["maps"] = measure_maps([60, 300] if args.quick else [60, 300, 1200])
    figures["merge"] = [measure_merge(p, 300) for p in ((10,) if args.quick else (10, 50))]
    cluster = PostgresCluster(settings={"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"})
    try:
        figures["postgres"] = cluster.admin().execute("SHOW server_version").fetchone()[0]
        figures["tick"] = [
            measure_tick(cluster.create_database(f"tick{p}"), p, 300)
            for p in ((10,) if args.quick else (10, 100))
        ]
        figures["writes"] = [
            measure_writes(cluster.create_database(f"w{p}"), p, seconds, min(p, 4))
            for p in ((1, 16) if args.quick else (1, 4, 16, 64))
        ]
    finally:
        cluster.destroy()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
