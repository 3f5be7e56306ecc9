"""Sampler (rate, determinism, stratification, bounded reservoirs) and budget (bucket, caps, backpressure)."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.monitor.budget import Budget
from spex_monitor.monitor.sampling import Candidate, StratifiedSampler, unit_hash


def test_rate_is_respected_and_deterministic_across_instances():
    a = StratifiedSampler(rate=0.1, reservoir_per_label=10_000, seed=3)
    b = StratifiedSampler(rate=0.1, reservoir_per_label=10_000, seed=3)
    ids = [f"req-{i}" for i in range(20_000)]
    taken_a = [a.offer(Candidate(i, "m", "pos")) for i in ids]
    taken_b = [b.offer(Candidate(i, "m", "pos")) for i in ids]
    assert taken_a == taken_b
    assert np.mean(taken_a) == pytest.approx(0.1, abs=0.01)
    assert a.dropped["sampled_out"] == len(ids) - sum(taken_a)
    assert StratifiedSampler(rate={"other": 1.0}).offer(Candidate("x", "m", "pos")) is False


def test_unit_hash_is_uniform():
    values = np.array([unit_hash(f"r{i}", 0) for i in range(20_000)])
    assert values.min() >= 0 and values.max() < 1
    assert np.histogram(values, bins=10)[0].min() > 1800


def test_reservoirs_are_bounded_uniform_and_stratified():
    sampler = StratifiedSampler(rate=1.0, reservoir_per_label=20, seed=1)
    for i in range(1000):
        sampler.offer(Candidate(f"a{i}", "m", "positive"))
    for i in range(30):
        sampler.offer(Candidate(f"b{i}", "m", "negative"))
    assert sampler.pending() == 40
    taken = [sampler.take() for _ in range(10)]
    labels = [c.label for c in taken]
    assert labels.count("negative") == 5  # round-robin: the rare label is not starved
    kept = [c for c in taken if c.label == "positive"]
    assert any(int(c.request_id[1:]) >= 20 for c in kept)  # later arrivals replace earlier ones
    offered = 1030
    accounted = (
        sampler.pending() + 10 + sampler.dropped["reservoir_full"] + sampler.dropped["reservoir_replaced"]
    )
    assert accounted == offered
    assert sampler.new_window() == 30 and sampler.take() is None
    assert sampler.dropped["window_closed"] == 30


def test_reservoir_keeps_a_uniform_sample():
    hits = np.zeros(200)
    for seed in range(300):
        sampler = StratifiedSampler(rate=1.0, reservoir_per_label=20, seed=seed)
        for i in range(200):
            sampler.offer(Candidate(f"{i}", "m", "x"))
        while (c := sampler.take()) is not None:
            hits[int(c.request_id)] += 1
    # Each of 200 items should be kept with probability 20/200: 30 times in 300 runs (sd ~5.2).
    assert abs(hits[:100].mean() - 30) < 3 and abs(hits[100:].mean() - 30) < 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_token_bucket_rate_and_waiting():
    clock = FakeClock()
    budget = Budget(inferences_per_second=100, burst=200, clock=clock, sleep=clock.sleep)
    assert budget.acquire(200)
    assert not budget.acquire(100)  # empty bucket, no waiting allowed
    assert budget.blocked_reason(100) == "rate"
    assert budget.acquire(100, max_wait_s=2.0)  # refills in 1 s of fake time
    assert 0.9 <= clock.now <= 1.2
    assert not budget.acquire(500, max_wait_s=100)  # never fits the burst: refused at once
    assert budget.blocked_reason(500) == "larger_than_burst"


def test_backend_seconds_cap_and_backpressure():
    clock = FakeClock()
    budget = Budget(
        inferences_per_second=1e6,
        burst=1e6,
        backend_seconds_per_hour=10,
        max_latency_s=0.5,
        max_queue_depth=8,
        clock=clock,
        sleep=clock.sleep,
    )
    budget.record(backend_seconds=9.0)
    assert budget.acquire(10)
    budget.record(backend_seconds=2.0)
    assert budget.blocked_reason(10) == "backend_seconds" and budget.utilization() == 1.0
    clock.now += 3601
    assert budget.blocked_reason(10) is None
    budget.record(0.1, latency_s=2.0)
    assert budget.blocked_reason(10) == "backpressure_latency"
    for _ in range(20):
        budget.record(0.1, latency_s=0.01)
    assert budget.blocked_reason(10) is None
    budget.record(0.1, queue_depth=20)
    assert budget.blocked_reason(10) == "backpressure_queue"


def test_invalid_settings():
    with pytest.raises(ValueError, match="rate"):
        StratifiedSampler(rate=1.5)
    with pytest.raises(ValueError, match="inferences_per_second"):
        Budget(inferences_per_second=0)


def test_a_stale_latency_signal_reopens_the_gate_for_one_measurement():
    """A gate closed by latency never sees a new measurement unless the signal expires."""
    now = [0.0]
    budget = Budget(inferences_per_second=1e6, burst=1e6, max_latency_s=0.5, clock=lambda: now[0])
    budget.signal(latency_s=2.0)
    assert budget.blocked_reason(10) == "backpressure_latency"
    now[0] += budget.signal_ttl_s + 1
    assert budget.blocked_reason(10) is None
    budget.signal(latency_s=0.1)  # the new measurement replaces the stale one (no EWMA with old data)
    assert budget._latency == 0.1 and budget.blocked_reason(10) is None
