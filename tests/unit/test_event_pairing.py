"""PairingBuffer: request/response halves pair by key in either order, within a TTL and memory bounds."""

from __future__ import annotations

import pytest

from spex_monitor.monitor.pairing import PairingBuffer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_pairs_in_either_order(clock):
    buffer = PairingBuffer(ttl_s=10, clock=clock)
    assert buffer.offer("a", "request", "req-a").status == "pending"
    offer = buffer.offer("a", "response", "resp-a")
    assert (offer.status, offer.request, offer.response) == ("paired", "req-a", "resp-a")
    assert buffer.offer("b", "response", "resp-b").status == "pending"  # out of order
    offer = buffer.offer("b", "request", "req-b")
    assert (offer.status, offer.request, offer.response) == ("paired", "req-b", "resp-b")
    assert buffer.pending == 0 and buffer.pending_bytes == 0


def test_duplicates_while_pending_and_after_pairing(clock):
    buffer = PairingBuffer(ttl_s=10, clock=clock)
    buffer.offer("a", "request", 1, size=5)
    assert buffer.offer("a", "request", 2, size=5).status == "duplicate"
    assert buffer.pending_bytes == 5  # the duplicate is not held
    assert buffer.offer("a", "response", 3).request == 1  # the first copy wins
    assert buffer.offer("a", "response", 4).status == "duplicate"
    assert buffer.offer("a", "request", 5).status == "duplicate"
    assert buffer.pending == 0


def test_expiry_reports_each_dropped_half_and_refuses_the_late_partner(clock):
    buffer = PairingBuffer(ttl_s=10, clock=clock)
    buffer.offer("a", "request", "req-a")
    clock.now += 5
    buffer.offer("b", "response", "resp-b")
    clock.now += 5.5  # "a" is 10.5 s old, "b" 5.5 s
    dropped = buffer.expire()
    assert [(d.key, d.half, d.item) for d in dropped] == [("a", "request", "req-a")]
    assert buffer.pending == 1
    assert buffer.offer("a", "response", "resp-a").status == "late"
    assert buffer.offer("a", "request", "again").status == "duplicate"  # the expired half, resent
    assert buffer.offer("b", "request", "req-b").status == "paired"
    clock.now += 1000  # tombstones are forgotten after memory_s (10 * ttl)
    buffer.expire()
    assert buffer.offer("a", "request", "new").status == "pending"


def test_expiry_happens_on_offer_too(clock):
    buffer = PairingBuffer(ttl_s=1, clock=clock)
    buffer.offer("a", "request", "x")
    clock.now += 2
    offer = buffer.offer("b", "request", "y")
    assert offer.status == "pending" and [d.key for d in offer.dropped] == ["a"]


def test_entry_and_byte_bounds_evict_the_oldest(clock):
    buffer = PairingBuffer(ttl_s=100, max_pending=3, max_bytes=100, clock=clock)
    for i in range(3):
        assert buffer.offer(i, "request", i, size=10).dropped == []
    offer = buffer.offer(3, "request", 3, size=10)
    assert [d.key for d in offer.dropped] == [0] and buffer.pending == 3
    offer = buffer.offer(4, "request", 4, size=85)  # full: drop 1; then 20 + 85 > 100 bytes: drop 2
    assert [d.key for d in offer.dropped] == [1, 2]
    assert buffer.pending == 2 and buffer.pending_bytes == 95
    assert buffer.offer(0, "response", "late").status == "late"
    assert buffer.offer(3, "response", "r3").status == "paired"


def test_memory_of_ids_is_bounded(clock):
    buffer = PairingBuffer(ttl_s=100, max_pending=4, clock=clock)
    for i in range(50):
        buffer.offer(i, "request", i)
        buffer.offer(i, "response", i)
    assert len(buffer._paired) <= 4 and buffer.pending == 0
    assert buffer.offer(0, "request", "again").status == "pending"  # forgotten: treated as new


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        PairingBuffer(ttl_s=0)
    with pytest.raises(ValueError, match="half"):
        PairingBuffer().offer("a", "reply", 1)  # type: ignore[arg-type]
