"""Durable store: explanations, windows, baselines and shift reports — one schema, two dialects.

:class:`SQLStore` holds every query once; :class:`~spex_monitor.monitor.store_sqlite.SQLiteStore` (the
embedded default, one pod) and :class:`~spex_monitor.monitor.store_postgres.PostgresStore` (a shared
database for a fleet) only say how a transaction runs. Schema changes are numbered migrations applied at
open, written once: the few type names the dialects spell differently are placeholders (:data:`DIALECTS`).

What is kept (docs/security.md): raw request text only with ``store_text=True``; per explanation only its
strongest terms (``terms_per_explanation``) and the words of the features those terms name — never the
whole word sequence — and both text and words expire after ``text_ttl_s`` (the coefficients stay, without
words, for the retention window).

Scopes: a sidecar's own windows, baseline and reports are ``scope='pod'`` (the default of every read, so a
pod never sees fleet rows); the fleet aggregator (:mod:`spex_monitor.monitor.fleet`) writes merged windows,
the fleet baseline and fleet reports as ``scope='fleet'``, each fleet window range exactly once (a unique
key on model, version, scope and range). Every pod window carries its writer's ``instance`` (pod name).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from .maps import InteractionMap, KeyTuple, key_tuple_coefficients
from .store_api import Store, Tx
from .store_schema import (
    FLEET,
    INF,
    MIGRATIONS,
    POD,
    SCHEMA_VERSION,
    ExplanationRecord,
    FleetWindow,
    StoredWindow,
    T,
    key_text,
    migration_statements,
)

__all__ = [
    "FLEET",
    "MIGRATIONS",
    "POD",
    "SCHEMA_VERSION",
    "ExplanationRecord",
    "FleetWindow",
    "SQLStore",
    "Store",
    "StoredWindow",
    "Tx",
    "key_text",
]


class SQLStore:
    """Every query of the store, once; subclasses run transactions (:meth:`_run`) and say how an insert
    returns its id (:meth:`_insert`). Retention, text TTL and term selection live here, so both dialects keep
    exactly the same things."""

    dialect = "sqlite"
    instance = ""

    def __init__(
        self,
        store_text: bool = False,
        text_ttl_s: float = 86_400.0,
        retention_s: float = 30 * 86_400.0,
        interaction_keys_per_explanation: int = 20,
        terms_per_explanation: int = 20,
        instance: str = "",
    ) -> None:
        self.store_text = store_text
        self.text_ttl_s = text_ttl_s
        self.retention_s = retention_s
        self.keys_per_explanation = interaction_keys_per_explanation
        self.terms_per_explanation = terms_per_explanation
        self.instance = instance

    # -------------------------------------------------------------------------------- dialect hooks
    def _run(self, work: Callable[[Tx], T]) -> T:  # pragma: no cover - abstract
        """Run ``work`` in one transaction (committed on return, rolled back on an exception)."""
        raise NotImplementedError

    def _insert(self, tx: Tx, sql: str, args: Sequence[Any]) -> int | None:  # pragma: no cover
        """Run an ``INSERT`` and return the new row's id (``None`` when ``ON CONFLICT DO NOTHING`` hit)."""
        raise NotImplementedError

    def _after_purge(self) -> None:
        """Dialect work after a committed purge (SQLite truncates its WAL)."""

    # ------------------------------------------------------------------------------------------ schema
    def _migrate(self, tx: Tx) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = tx.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        for version, sql in MIGRATIONS:
            if version <= current:
                continue
            for statement in migration_statements(sql, self.dialect):
                tx.execute(statement)
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    @property
    def schema_version(self) -> int:
        """The highest migration applied to the database."""
        return self._run(lambda tx: tx.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # ------------------------------------------------------------------------------------ explanations
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

        def work(tx: Tx) -> int:
            row_id = self._insert(
                tx,
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
            if strongest:
                tx.executemany(
                    "INSERT INTO explanation_keys (explanation_id, key_tuple, coef) VALUES (?, ?, ?)",
                    [(row_id, key_text(k), c) for k, c in strongest],
                )
            return int(row_id or 0)

        return self._run(work)

    def explanations(
        self,
        model: str,
        since: float = 0.0,
        until: float = float("inf"),
        key: KeyTuple | None = None,
        limit: int = 100,
    ) -> list[ExplanationRecord]:
        """Newest first; with ``key``, only explanations where that key tuple was among the strongest."""
        columns = ", ".join(f"e.{c.strip()}" for c in ExplanationRecord.COLUMNS.split(","))
        sql = f"SELECT {columns} FROM explanations e"
        args: list[object] = []
        if key is not None:
            sql += " JOIN explanation_keys k ON k.explanation_id = e.id AND k.key_tuple = ?"
            args.append(key_text(tuple(sorted(key))))
        sql += " WHERE e.model = ? AND e.ts >= ? AND e.ts <= ? ORDER BY e.ts DESC LIMIT ?"
        args += [model, since, min(until, INF), limit]
        rows = self._run(lambda tx: tx.execute(sql, args).fetchall())
        return [ExplanationRecord.from_row(r) for r in rows]

    # ------------------------------------------------------------------------------- windows & baselines
    def save_window(self, model: str, version: str, start_ts: float, end_ts: float, m: InteractionMap) -> int:
        """Store a pod window, tagged with this store's ``instance``."""
        args = (model, version, start_ts, end_ts, m.requests, m.to_bytes(), self.instance, POD)
        sql = (
            "INSERT INTO windows (model, version, start_ts, end_ts, requests, map, instance, scope)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        return int(self._run(lambda tx: self._insert(tx, sql, args)) or 0)

    def windows(
        self,
        model: str,
        version: str,
        since: float = 0.0,
        until: float = float("inf"),
        window_id: int | None = None,
        latest: bool = False,
        scope: str = POD,
    ) -> list[tuple[int, float, float, InteractionMap]]:
        """Stored windows of one scope in time order, filtered in SQL: by time range, one ``window_id``, or
        only the ``latest`` (only the maps returned are decoded)."""
        sql = "SELECT id, start_ts, end_ts, map FROM windows WHERE model = ? AND version = ? AND scope = ?"
        args: list[object] = [model, version, scope]
        if window_id is not None:
            sql += " AND id = ?"
            args.append(window_id)
        if since > 0 or until != float("inf"):
            sql += " AND end_ts >= ? AND start_ts <= ?"
            args += [since, min(until, INF)]
        sql += " ORDER BY end_ts DESC, id DESC LIMIT 1" if latest else " ORDER BY end_ts, id"
        rows = self._run(lambda tx: tx.execute(sql, args).fetchall())
        return [(r[0], r[1], r[2], InteractionMap.from_bytes(bytes(r[3]))) for r in rows]

    def pod_windows_ending(self, model: str, end_after: float, end_by: float) -> list[StoredWindow]:
        """Pod windows of ``model`` (every version and instance) with ``end_after < end_ts <= end_by``, in
        (end_ts, id) order: what the fleet aggregator merges for the fleet window ``(end_after, end_by]``
        (an epoch-aligned pod window ends exactly on the boundary of the fleet window it belongs to)."""
        sql = (
            "SELECT id, version, instance, start_ts, end_ts, map FROM windows"
            " WHERE model = ? AND scope = ? AND end_ts > ? AND end_ts <= ? ORDER BY end_ts, id"
        )
        rows = self._run(lambda tx: tx.execute(sql, (model, POD, end_after, end_by)).fetchall())
        return [StoredWindow(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in rows]

    def window_end_bound(
        self, model: str, scope: str, latest: bool, end_after: float | None = None
    ) -> float | None:
        """The latest (``latest=True``) or earliest window end of ``model`` in ``scope``, among the ends
        after ``end_after`` when given."""
        fn = "MAX" if latest else "MIN"
        sql = f"SELECT {fn}(end_ts) FROM windows WHERE model = ? AND scope = ?"
        args: tuple = (model, scope)
        if end_after is not None:
            sql, args = sql + " AND end_ts > ?", args + (end_after,)
        value = self._run(lambda tx: tx.execute(sql, args).fetchone()[0])
        return None if value is None else float(value)

    def set_baseline(
        self, model: str, version: str, m: InteractionMap, source: str, scope: str = POD
    ) -> None:
        """Store the encoded baseline of (model, version, scope) with ``source`` and the current time,
        replacing any earlier one."""
        sql = (
            "INSERT INTO baselines (model, version, scope, created_ts, source, map) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (model, version, scope) DO UPDATE SET created_ts = excluded.created_ts,"
            " source = excluded.source, map = excluded.map"
        )
        args = (model, version, scope, time.time(), source, m.to_bytes())
        self._run(lambda tx: tx.execute(sql, args))

    def baseline(self, model: str, version: str, scope: str = POD) -> InteractionMap | None:
        """The stored baseline map of (model, version, scope), or ``None``."""
        found = self.baseline_with_source(model, version, scope)
        return found[0] if found else None

    def baseline_with_source(
        self, model: str, version: str, scope: str = POD
    ) -> tuple[InteractionMap, str] | None:
        """The stored baseline of (model, version, scope) with its ``source``, or ``None``."""
        sql = "SELECT map, source FROM baselines WHERE model = ? AND version = ? AND scope = ?"
        row = self._run(lambda tx: tx.execute(sql, (model, version, scope)).fetchone())
        return (InteractionMap.from_bytes(bytes(row[0])), str(row[1])) if row else None

    def baseline_stamp(self, model: str, version: str, scope: str = POD) -> tuple[float, str] | None:
        """``(created_ts, source)`` of the stored baseline without decoding it (a cache's validity)."""
        sql = "SELECT created_ts, source FROM baselines WHERE model = ? AND version = ? AND scope = ?"
        row = self._run(lambda tx: tx.execute(sql, (model, version, scope)).fetchone())
        return (float(row[0]), str(row[1])) if row else None

    def baselines(self, scope: str = POD) -> list[tuple[str, str, float, str]]:
        """Every stored baseline of ``scope``: ``(model, version, created_ts, source)``, maps not decoded."""
        sql = "SELECT model, version, created_ts, source FROM baselines WHERE scope = ?"
        rows = self._run(lambda tx: tx.execute(sql + " ORDER BY model, version", (scope,)).fetchall())
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # ------------------------------------------------------------------------------------------ reports
    def save_report(
        self, model: str, version: str, window_id: int | None, score: float, p_value: float, body: dict
    ) -> int:
        """Insert a pod shift report stamped with the current time; ``body`` (contributors, drift, alarm...)
        is stored as JSON. Returns its id."""
        sql = (
            "INSERT INTO reports (model, version, ts, window_id, score, p_value, body, scope)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        args = (model, version, time.time(), window_id, score, p_value, json.dumps(body), POD)
        return int(self._run(lambda tx: self._insert(tx, sql, args)) or 0)

    def save_fleet_windows(
        self, model: str, windows: Sequence[FleetWindow]
    ) -> list[tuple[int, int | None] | None]:
        """Store merged fleet windows and their reports in ONE transaction, each range at most once.

        Returns, per window, ``(window_id, report_id)`` — or ``None`` for a range already stored (by an
        earlier holder of the aggregator lock), which is left as it was: a failover never reports a fleet
        window twice, and a crash mid-call leaves no window without its report."""

        def work(tx: Tx) -> list[tuple[int, int | None] | None]:
            out: list[tuple[int, int | None] | None] = []
            for w in windows:
                window_id = self._insert(
                    tx,
                    "INSERT INTO windows (model, version, start_ts, end_ts, requests, map, instance, scope)"
                    " VALUES (?, ?, ?, ?, ?, ?, '', ?) ON CONFLICT (model, version, scope, start_ts, end_ts)"
                    " WHERE scope = 'fleet' DO NOTHING",
                    (model, w.version, w.start_ts, w.end_ts, w.map.requests, w.map.to_bytes(), FLEET),
                )
                if window_id is None:
                    out.append(None)
                    continue
                report_id = None
                if w.report is not None:
                    score, p_value, body = w.report
                    report_id = self._insert(
                        tx,
                        "INSERT INTO reports (model, version, ts, window_id, score, p_value, body, scope,"
                        " start_ts, end_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (model, version, scope, start_ts, end_ts) WHERE scope = 'fleet'"
                        " DO NOTHING",
                        (
                            model,
                            w.version,
                            time.time(),
                            window_id,
                            score,
                            p_value,
                            json.dumps(body),
                            FLEET,
                            w.start_ts,
                            w.end_ts,
                        ),
                    )
                out.append((int(window_id), report_id))
            return out

        return self._run(work)

    def reports(
        self,
        model: str,
        since: float = 0.0,
        version: str | None = None,
        window_id: int | None = None,
        limit: int | None = None,
        scope: str = POD,
    ) -> list[dict]:
        """Stored reports of one scope in time order, filtered in SQL; with ``limit``, the newest
        ``limit`` of them. Fleet reports also carry their window range (``start_ts``, ``end_ts``)."""
        sql = "SELECT id, version, ts, window_id, score, p_value, body, start_ts, end_ts FROM reports"
        sql += " WHERE model = ? AND ts >= ? AND scope = ?"
        args: list[object] = [model, since, scope]
        if version is not None:
            sql += " AND version = ?"
            args.append(version)
        if window_id is not None:
            sql += " AND window_id = ?"
            args.append(window_id)
        sql += " ORDER BY ts DESC, id DESC" + (" LIMIT ?" if limit is not None else "")
        if limit is not None:
            args.append(int(limit))
        rows = self._run(lambda tx: tx.execute(sql, args).fetchall())[::-1]
        out = []
        for r in rows:
            report = {"id": r[0], "version": r[1], "ts": r[2], "window_id": r[3], "score": r[4]}
            report |= {"p_value": r[5], **json.loads(r[6])}
            if scope != POD:
                report |= {"scope": scope, "start_ts": r[7], "end_ts": r[8]}
            out.append(report)
        return out

    # ---------------------------------------------------------------------------------------- retention
    def purge(self, now: float | None = None) -> int:
        """Delete explanations, windows and reports older than the retention; past ``text_ttl_s`` erase
        stored text and each explanation's words (its keys and key tuples). All or nothing: a failure rolls
        back. Returns how many explanations were deleted."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_s
        expired = now - self.text_ttl_s

        def work(tx: Tx) -> int:
            deleted = tx.execute("DELETE FROM explanations WHERE ts < ?", (cutoff,)).rowcount
            tx.execute("DELETE FROM windows WHERE end_ts < ?", (cutoff,))
            tx.execute("DELETE FROM reports WHERE ts < ?", (cutoff,))
            tx.execute(
                "DELETE FROM explanation_keys WHERE explanation_id IN"
                " (SELECT id FROM explanations WHERE ts < ?)",
                (expired,),
            )
            tx.execute(
                "UPDATE explanations SET text = NULL, keys = '{}'"
                " WHERE ts < ? AND (text IS NOT NULL OR keys != '{}')",
                (expired,),
            )
            return int(deleted)

        deleted = self._run(work)
        self._after_purge()
        return deleted

    def close(self) -> None:  # pragma: no cover - abstract
        """Release the connection(s)."""
        raise NotImplementedError

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
