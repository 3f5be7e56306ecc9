"""The store's interfaces: :class:`Store`, what the monitor needs of any durable store, and :class:`Tx`, what
a query of :class:`~spex_monitor.monitor.store.SQLStore` sees of a transaction. Re-exported by
:mod:`spex_monitor.monitor.store`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .maps import InteractionMap, KeyTuple
from .store_schema import ExplanationRecord


class Store(Protocol):
    """What the monitor needs from a durable store (:class:`~spex_monitor.monitor.store.SQLStore` and its
    SQLite and PostgreSQL shells implement it). Times are Unix seconds.
    """

    def add_explanation(self, record: ExplanationRecord) -> int:
        """Keep one explanation; returns its row id."""

    def explanations(
        self,
        model: str,
        since: float = 0.0,
        until: float = float("inf"),
        key: KeyTuple | None = None,
        limit: int = 100,
    ) -> list[ExplanationRecord]:
        """Stored explanations of ``model``, newest first (only those where ``key`` was strong, if given)."""

    def save_window(self, model: str, version: str, start_ts: float, end_ts: float, m: InteractionMap) -> int:
        """Keep a closed window's map; returns the window id."""

    def windows(
        self, model: str, version: str, since: float = 0.0, until: float = float("inf")
    ) -> list[tuple[int, float, float, InteractionMap]]:
        """Stored windows of (model, version) in the time range, oldest first: ``(id, start, end, map)``."""

    def set_baseline(self, model: str, version: str, m: InteractionMap, source: str) -> None:
        """Store (or replace) the baseline of (model, version); ``source`` says where it came from."""

    def baseline(self, model: str, version: str) -> InteractionMap | None:
        """The stored baseline of (model, version), or ``None``."""

    def save_report(
        self, model: str, version: str, window_id: int | None, score: float, p_value: float, body: dict
    ) -> int:
        """Keep a window's shift report (``body``: a JSON-ready dict); returns its id."""

    def purge(self, now: float | None = None) -> int:
        """Apply retention and the text TTL as of ``now``; returns how many explanations were deleted."""

    def close(self) -> None:
        """Release the store."""


class Tx(Protocol):
    """What a query sees of a transaction: ``execute`` returns a DB-API cursor; SQL uses ``?``."""

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement with ``args`` bound to its ``?`` placeholders; returns the cursor."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        """Run one statement once per row of ``rows``."""
