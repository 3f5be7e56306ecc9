"""The store's schema as numbered migrations, applied in order at open (see :class:`.store.SQLiteStore`).

A schema change is a new ``(number, sql)`` entry at the end; an applied migration is never edited.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE explanations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL, ts REAL NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
            keys TEXT NOT NULL, terms TEXT NOT NULL, faithfulness REAL, inferences INTEGER NOT NULL,
            trace_id TEXT, text TEXT
        );
        CREATE INDEX explanations_model_ts ON explanations (model, version, ts);
        CREATE TABLE explanation_keys (
            explanation_id INTEGER NOT NULL REFERENCES explanations (id) ON DELETE CASCADE,
            key_tuple TEXT NOT NULL, coef REAL NOT NULL
        );
        CREATE INDEX explanation_keys_key ON explanation_keys (key_tuple);
        CREATE TABLE windows (
            id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version TEXT NOT NULL,
            start_ts REAL NOT NULL, end_ts REAL NOT NULL, requests REAL NOT NULL, map BLOB NOT NULL
        );
        CREATE INDEX windows_model_ts ON windows (model, version, end_ts);
        CREATE TABLE baselines (
            model TEXT NOT NULL, version TEXT NOT NULL, created_ts REAL NOT NULL, source TEXT NOT NULL,
            map BLOB NOT NULL, PRIMARY KEY (model, version)
        );
        CREATE TABLE reports (
            id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version TEXT NOT NULL,
            ts REAL NOT NULL, window_id INTEGER, score REAL NOT NULL, p_value REAL NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX reports_model_ts ON reports (model, version, ts);
        """,
    ),
]
