"""The embedded store: one SQLite file in WAL mode (the default for a single pod).

Deleted content is overwritten (``secure_delete``) and the WAL is truncated after each purge, so an
expired word is in no database page. ``max_bytes`` caps the file: writes beyond it fail with
``SQLITE_FULL`` like a full disk would, and the monitor degrades to running without persistence.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .store import SQLStore, Tx
from .store_schema import T


class SQLiteStore(SQLStore):
    """SQLite in WAL mode; one connection guarded by a lock (the sidecar's writes are small and few)."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        store_text: bool = False,
        text_ttl_s: float = 86_400.0,
        retention_s: float = 30 * 86_400.0,
        interaction_keys_per_explanation: int = 20,
        max_bytes: int | None = None,
        terms_per_explanation: int = 20,
        instance: str = "",
    ) -> None:
        super().__init__(
            store_text,
            text_ttl_s,
            retention_s,
            interaction_keys_per_explanation,
            terms_per_explanation,
            instance,
        )
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA secure_delete=ON")  # deleted or updated content is overwritten
        self._run(self._migrate)
        if max_bytes is not None:
            with self._lock:
                page = self._conn.execute("PRAGMA page_size").fetchone()[0]
                self._conn.execute(f"PRAGMA max_page_count = {max(1, int(max_bytes) // page)}")

    def _run(self, work: Callable[[Tx], T]) -> T:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                value = work(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return value

    def _insert(self, tx: Tx, sql: str, args: Sequence[Any]) -> int | None:
        cursor = tx.execute(sql, args)
        return int(cursor.lastrowid) if cursor.rowcount else None

    def _after_purge(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()
