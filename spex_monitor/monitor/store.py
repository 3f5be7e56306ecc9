"""Durable store: explanations, windows, baselines and shift reports in SQLite (WAL), behind the small
:class:`Store` protocol; the schema's migrations are in :mod:`.store_schema`. What is kept
(docs/security.md): raw request text only with ``store_text=True``; per explanation only its strongest terms
(``terms_per_explanation``) and the words of the features those terms name — never the whole word sequence —
and both text and words expire after ``text_ttl_s`` (the coefficients stay, without words, for the retention
window). Deleted content is overwritten (``secure_delete``) and the WAL is truncated after each purge, so an
expired word is in no database page.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .maps import InteractionMap, KeyTuple, key_tuple_coefficients
from .store_schema import MIGRATIONS


def key_text(key: KeyTuple) -> str:
    """A key tuple as stored: its JSON list (non-ASCII kept as is)."""
    return json.dumps(list(key), ensure_ascii=False)


def _keys_list(stored: list | dict) -> list[str]:
    """Feature keys by index: stored as ``{index: key}`` for the features the kept terms name ("" for the
    others, and for all of them once the words expired); older rows hold the whole list."""
    if isinstance(stored, list):
        return [str(k) for k in stored]
    size = 1 + max((int(i) for i in stored), default=-1)
    out = [""] * size
    for index, key in stored.items():
        out[int(index)] = str(key)
    return out


@dataclass
class ExplanationRecord:
    """One explanation as the store keeps it: request and trace ids, model and version, feature keys (``""``
    for features whose words were not kept or have expired), Fourier terms by feature indices, faithfulness
    (R²), inferences used, time (Unix seconds) and the request text (only with ``store_text``).
    """

    request_id: str
    model: str
    version: str
    keys: list[str]
    terms: dict[tuple[int, ...], float]
    faithfulness: float
    inferences: int
    ts: float = field(default_factory=time.time)
    trace_id: str | None = None
    text: str | None = None


class Store(Protocol):
    """What the monitor needs from a durable store (:class:`SQLiteStore` is the one implementation).

    Times are Unix seconds.
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


class SQLiteStore:
    """SQLite in WAL mode; one connection guarded by a lock (the sidecar's writes are small and few)."""

    def __init__(
        self,
        path: str | Path,
        store_text: bool = False,
        text_ttl_s: float = 86_400.0,
        retention_s: float = 30 * 86_400.0,
        interaction_keys_per_explanation: int = 20,
        max_bytes: int | None = None,
        terms_per_explanation: int = 20,
    ) -> None:
        self.path = str(path)
        self.store_text = store_text
        self.text_ttl_s = text_ttl_s
        self.retention_s = retention_s
        self.keys_per_explanation = interaction_keys_per_explanation
        self.terms_per_explanation = terms_per_explanation
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA secure_delete=ON")  # deleted or updated content is overwritten
            self._migrate()
            if max_bytes is not None:
                # a hard cap on the file: writes beyond it fail with SQLITE_FULL, like a full disk would
                page = self._conn.execute("PRAGMA page_size").fetchone()[0]
                self._conn.execute(f"PRAGMA max_page_count = {max(1, int(max_bytes) // page)}")

    # ----------------------------------------------------------------------------------------- schema
    def _migrate(self) -> None:
        self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for version, sql in MIGRATIONS:
            if version <= current:
                continue
            self._conn.execute("BEGIN")
            try:
                for statement in filter(str.strip, sql.split(";")):
                    self._conn.execute(statement)
                self._conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
                self._conn.execute("COMMIT")
            except Exception:
                self._conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The highest migration applied to the database."""
        with self._lock:
            return self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]

    # ----------------------------------------------------------------------------------- explanations
    def add_explanation(self, record: ExplanationRecord) -> int:
        """Store the strongest terms and the words of their features only (see the module docstring)."""
        ranked = sorted((t for t in record.terms if t), key=lambda t: -abs(record.terms[t]))
        kept = ranked[: self.terms_per_explanation]
        if () in record.terms:
            kept.append(())
        terms = [[list(k), record.terms[k]] for k in kept]
        named = sorted({i for term in kept for i in term})
        keys = {str(i): record.keys[i] for i in named if i < len(record.keys)}
        text = record.text if self.store_text else None
        per_key = key_tuple_coefficients(record.terms, record.keys, min_order=2)
        nonzero = [(k, c) for k, c in per_key.items() if abs(c) > 1e-12]
        strongest = sorted(nonzero, key=lambda kv: -abs(kv[1]))[: self.keys_per_explanation]
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                cursor = self._conn.execute(
                    "INSERT INTO explanations (request_id, ts, model, version, keys, terms, faithfulness,"
                    " inferences, trace_id, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.request_id,
                        record.ts,
                        record.model,
                        record.version,
                        json.dumps(keys, ensure_ascii=False),
                        json.dumps(terms),
                        record.faithfulness,
                        record.inferences,
                        record.trace_id,
                        text,
                    ),
                )
                row_id = int(cursor.lastrowid or 0)
                self._conn.executemany(
                    "INSERT INTO explanation_keys (explanation_id, key_tuple, coef) VALUES (?, ?, ?)",
                    [(row_id, key_text(k), c) for k, c in strongest],
                )
                self._conn.execute("COMMIT")
            except Exception:
                self._conn.execute("ROLLBACK")
                raise
        return row_id

    def explanations(
        self,
        model: str,
        since: float = 0.0,
        until: float = float("inf"),
        key: KeyTuple | None = None,
        limit: int = 100,
    ) -> list[ExplanationRecord]:
        """Newest first; with ``key``, only explanations where that key tuple was among the strongest."""
        sql = (
            "SELECT e.request_id, e.model, e.version, e.keys, e.terms, e.faithfulness, e.inferences, e.ts,"
            " e.trace_id, e.text FROM explanations e"
        )
        args: list[object] = []
        if key is not None:
            sql += " JOIN explanation_keys k ON k.explanation_id = e.id AND k.key_tuple = ?"
            args.append(key_text(tuple(sorted(key))))
        sql += " WHERE e.model = ? AND e.ts >= ? AND e.ts <= ? ORDER BY e.ts DESC LIMIT ?"
        args += [model, since, until if until != float("inf") else 1e300, limit]
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [
            ExplanationRecord(
                r[0],
                r[1],
                r[2],
                _keys_list(json.loads(r[3])),
                {tuple(k): v for k, v in json.loads(r[4])},
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
            )
            for r in rows
        ]

    # ------------------------------------------------------------------------------ windows & baselines
    def save_window(self, model: str, version: str, start_ts: float, end_ts: float, m: InteractionMap) -> int:
        """Insert a closed window's encoded map; returns the window id."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO windows (model, version, start_ts, end_ts, requests, map)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (model, version, start_ts, end_ts, m.requests, m.to_bytes()),
            )
            return int(cursor.lastrowid or 0)

    def windows(
        self,
        model: str,
        version: str,
        since: float = 0.0,
        until: float = float("inf"),
        window_id: int | None = None,
        latest: bool = False,
    ) -> list[tuple[int, float, float, InteractionMap]]:
        """Stored windows in time order, filtered in SQL: by time range, one ``window_id``, or only the
        ``latest`` (only the maps returned are decoded)."""
        sql = "SELECT id, start_ts, end_ts, map FROM windows WHERE model = ? AND version = ?"
        args: list[object] = [model, version]
        if window_id is not None:
            sql += " AND id = ?"
            args.append(window_id)
        if since > 0 or until != float("inf"):
            sql += " AND end_ts >= ? AND start_ts <= ?"
            args += [since, until if until != float("inf") else 1e300]
        sql += " ORDER BY end_ts DESC, id DESC LIMIT 1" if latest else " ORDER BY end_ts, id"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [(r[0], r[1], r[2], InteractionMap.from_bytes(r[3])) for r in rows]

    def set_baseline(self, model: str, version: str, m: InteractionMap, source: str) -> None:
        """Store the encoded baseline of (model, version) with ``source`` and the current time, replacing any
        earlier one.
        """
        with self._lock:
            self._conn.execute(
                "INSERT INTO baselines (model, version, created_ts, source, map) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (model, version) DO UPDATE SET created_ts = excluded.created_ts,"
                " source = excluded.source, map = excluded.map",
                (model, version, time.time(), source, m.to_bytes()),
            )

    def baseline(self, model: str, version: str) -> InteractionMap | None:
        """The stored baseline map of (model, version), or ``None``."""
        found = self.baseline_with_source(model, version)
        return found[0] if found else None

    def baseline_with_source(self, model: str, version: str) -> tuple[InteractionMap, str] | None:
        """The stored baseline of (model, version) with its ``source``, or ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT map, source FROM baselines WHERE model = ? AND version = ?", (model, version)
            ).fetchone()
        return (InteractionMap.from_bytes(row[0]), str(row[1])) if row else None

    def baselines(self) -> list[tuple[str, str, float, str]]:
        """Every stored baseline as ``(model, version, created_ts, source)``, maps not decoded."""
        with self._lock:
            return list(self._conn.execute("SELECT model, version, created_ts, source FROM baselines"))

    # ------------------------------------------------------------------------------------------ reports
    def save_report(
        self, model: str, version: str, window_id: int | None, score: float, p_value: float, body: dict
    ) -> int:
        """Insert a shift report stamped with the current time; ``body`` (contributors, drift, alarm...) is
        stored as JSON. Returns its id.
        """
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO reports (model, version, ts, window_id, score, p_value, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, version, time.time(), window_id, score, p_value, json.dumps(body)),
            )
            return int(cursor.lastrowid or 0)

    def reports(
        self,
        model: str,
        since: float = 0.0,
        version: str | None = None,
        window_id: int | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """Stored reports in time order, filtered in SQL; with ``limit``, the newest ``limit`` of them."""
        sql = "SELECT id, version, ts, window_id, score, p_value, body FROM reports"
        sql += " WHERE model = ? AND ts >= ?"
        args: list[object] = [model, since]
        if version is not None:
            sql += " AND version = ?"
            args.append(version)
        if window_id is not None:
            sql += " AND window_id = ?"
            args.append(window_id)
        sql += " ORDER BY ts DESC, id DESC" + (" LIMIT ?" if limit is not None else "")
        if limit is not None:
            args.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()[::-1]
        return [
            {
                "id": r[0],
                "version": r[1],
                "ts": r[2],
                "window_id": r[3],
                "score": r[4],
                "p_value": r[5],
                **json.loads(r[6]),
            }
            for r in rows
        ]

    # ---------------------------------------------------------------------------------------- retention
    def purge(self, now: float | None = None) -> int:
        """Delete explanations, windows and reports older than the retention; past ``text_ttl_s`` erase
        stored text and each explanation's words (its keys and key tuples). All or nothing: a failure rolls
        back. Then the WAL is checkpointed and truncated, so erased content leaves the files too."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_s
        expired = now - self.text_ttl_s
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                deleted = self._conn.execute("DELETE FROM explanations WHERE ts < ?", (cutoff,)).rowcount
                self._conn.execute("DELETE FROM windows WHERE end_ts < ?", (cutoff,))
                self._conn.execute("DELETE FROM reports WHERE ts < ?", (cutoff,))
                self._conn.execute(
                    "DELETE FROM explanation_keys WHERE explanation_id IN"
                    " (SELECT id FROM explanations WHERE ts < ?)",
                    (expired,),
                )
                self._conn.execute(
                    "UPDATE explanations SET text = NULL, keys = '{}'"
                    " WHERE ts < ? AND (text IS NOT NULL OR keys != '{}')",
                    (expired,),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(deleted)

    def close(self) -> None:
        """Close the database connection (also on leaving a ``with`` block)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
