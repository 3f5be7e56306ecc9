"""Looking one stored explanation up by its request id (``GetExplanation``, ``trace --request``).

It lives beside :mod:`.store` rather than in it only because that module is at the house limit of 400
lines; it runs through the store's own transaction shell, so it works on SQLite and PostgreSQL alike. The
lookup filters on ``(model, request_id)``: the ``explanations_model_ts`` index narrows it to the model, the
rest is a scan of that model's retained rows (``store.retention_s``) — fine for an interactive lookup, not
for a hot path.
"""

from __future__ import annotations

from .store import ExplanationRecord, SQLStore


def find_explanation(store: SQLStore, model: str, request_id: str) -> ExplanationRecord | None:
    """The newest stored explanation of ``request_id`` for ``model``; ``None`` when there is none (never
    sampled, dropped by the budget, past retention, or unknown)."""
    sql = (
        f"SELECT {ExplanationRecord.COLUMNS} FROM explanations"
        " WHERE model = ? AND request_id = ? ORDER BY ts DESC LIMIT 1"
    )
    row = store._run(lambda tx: tx.execute(sql, (model, request_id)).fetchone())
    return None if row is None else ExplanationRecord.from_row(row)
