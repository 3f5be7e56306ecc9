"""One fleet aggregator per model: a session-level PostgreSQL advisory lock on a dedicated connection.

Whoever holds ``pg_advisory_lock(key(model))`` aggregates; when its process dies, the kernel closes its
socket, PostgreSQL ends the session and with it the lock, and the next candidate's ``pg_try_advisory_lock``
succeeds. A holder cut off by the network is dropped by the server's TCP keepalives (set per session below,
~25 s); meanwhile the unique key on fleet window ranges keeps two holders from storing a window twice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import psycopg

from .store_postgres import advisory_key

log = logging.getLogger(__name__)


class Lock(Protocol):
    """The aggregator lock of one model, as :class:`~spex_monitor.monitor.fleet.FleetAggregator` uses it."""

    def hold(self) -> bool:
        """True while this process holds the lock (acquiring it when free); never raises."""
        ...

    def release(self) -> None:
        """Give the lock up (a no-op when not held); never raises."""


class HeldLock:
    """Always held: one aggregator over a store nobody else aggregates (SQLite, tests, a pinned leader)."""

    def hold(self) -> bool:
        """Always ``True``."""
        return True

    def release(self) -> None:
        """Nothing to release."""
        return None


class AdvisoryLock:
    """``pg_try_advisory_lock`` on a connection of its own (``connect()`` returns an autocommit one)."""

    def __init__(self, connect: Callable[[], psycopg.Connection], name: str) -> None:
        self.connect = connect
        self.name = name
        self.key = advisory_key(f"spex-monitor/fleet/{name}")
        self._conn: psycopg.Connection | None = None
        self._held = False

    def hold(self) -> bool:
        """True while this process holds the lock: checks the held session is alive, else tries
        ``pg_try_advisory_lock`` (reconnecting when needed); a database error counts as not held."""
        if self._held and self._alive():
            return True
        if self._held:
            log.warning("lost the aggregator lock for %s (its session ended)", self.name)
            self._held = False
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._close()
                self._conn = self.connect()
                for setting, value in (("idle", 10), ("interval", 5), ("count", 3)):
                    self._conn.execute(f"SET tcp_keepalives_{setting} = {value}")
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            log.debug("aggregator lock for %s not reachable: %s", self.name, type(exc).__name__)
            self._close()
            return False
        self._held = bool(row and row[0])
        if self._held:
            log.info("holding the aggregator lock for %s", self.name)
        return self._held

    def _alive(self) -> bool:
        try:
            return self._conn is not None and self._conn.execute("SELECT 1").fetchone() is not None
        except psycopg.Error:
            self._close()
            return False

    def release(self) -> None:
        """Unlock now (``pg_advisory_unlock``: the next candidate may lead at once), then end the session;
        closing alone would free the lock only once the server notices the session ended."""
        if self._held and self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self._held = False
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
