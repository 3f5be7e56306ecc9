"""A shared PostgreSQL store (psycopg 3 with a psycopg_pool connection pool) for a fleet of sidecars.

Same schema, migrations, retention, text TTL and term selection as SQLite (:class:`~.store.SQLStore`);
only transactions differ. Several sidecars may open one database at once: migrations run under a
transaction-level advisory lock, so exactly one of them applies each step.

Faults: a connection the server dropped (a restart, a failover) is detected when it is taken from the pool
(``check``) and the operation is retried once on a fresh one; while the server is down a call waits up to
``timeout_s`` for a connection and then raises — the monitor's ``persist`` counts that write and monitoring
goes on. A full disk (``53100 disk_full``) fails the write the same way. At start a refused or rejected
connection raises :class:`StoreUnavailableError` naming ``store.url`` (the URL shown without a password).

Erasure: the text TTL blanks words and text in live rows at once; PostgreSQL reclaims the dead row versions
by (auto)vacuum and recycles WAL segments, so byte-level erasure of old pages is the database's (use
encrypted volumes), unlike SQLite's ``secure_delete``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from .store import SQLStore, Tx
from .store_schema import T

log = logging.getLogger(__name__)
_MIGRATION_LOCK = "spex-monitor/store/migrations"


class StoreUnavailableError(RuntimeError):
    """The store could not be opened; the message names the setting (``store.url``) and the reason."""


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (BLAKE2b; same in every process)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def display_url(url: str) -> str:
    """``url`` without a password, safe to log (``postgresql://user@host:5432/db``)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://<unparseable url>"
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{params.get('host', '')}{port}/{params.get('dbname', '')}"


def _no_nul(value: Any) -> Any:
    # PostgreSQL text cannot hold U+0000 (SQLite can): a NUL in an id or a stored text becomes U+FFFD
    # instead of failing the whole write.
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


class _PgTx:
    """The :class:`~.store.Tx` face of a psycopg connection: ``?`` placeholders become ``%s``."""

    _sql: dict[str, str] = {}

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    @classmethod
    def sql(cls, text: str) -> str:
        out = cls._sql.get(text)
        if out is None:  # the store's SQL has no literal '?' or '%'
            out = cls._sql[text] = text.replace("?", "%s")
        return out

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor:
        # binary results: a bytea map arrives as raw bytes, not hex text (5x faster to fetch)
        return self.conn.execute(self.sql(sql), [_no_nul(a) for a in args], binary=True)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> psycopg.Cursor:
        cursor = self.conn.cursor()
        cursor.executemany(self.sql(sql), [[_no_nul(a) for a in row] for row in rows])
        return cursor


class PostgresStore(SQLStore):
    """PostgreSQL through a connection pool (thread-safe; no store-wide lock).

    Args:
        url: libpq URL or conninfo (``postgresql://user@host:5432/db``) without a password.
        password: from ``store.password_file`` (else libpq reads ``PGPASSWORD`` / ``~/.pgpass``).
        timeout_s: connect timeout, and how long a call waits for a pooled connection.
        min_connections, max_connections: pool size.
        other arguments: as :class:`~.store.SQLStore`.

    Raises:
        StoreUnavailableError: the database refused or rejected the first connection, or the migrations
            failed.
    """

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        password: str | None = None,
        store_text: bool = False,
        text_ttl_s: float = 86_400.0,
        retention_s: float = 30 * 86_400.0,
        interaction_keys_per_explanation: int = 20,
        terms_per_explanation: int = 20,
        instance: str = "",
        timeout_s: float = 5.0,
        min_connections: int = 1,
        max_connections: int = 4,
    ) -> None:
        super().__init__(
            store_text,
            text_ttl_s,
            retention_s,
            interaction_keys_per_explanation,
            terms_per_explanation,
            instance,
        )
        self.url = display_url(url)
        self.timeout_s = timeout_s
        params: dict[str, Any] = {
            "connect_timeout": max(1, round(timeout_s)),
            "application_name": "spex-monitor",
            # a dead peer is noticed in ~30 s rather than the kernel's 2 h default
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        if password is not None:
            params["password"] = password
        try:
            self._conninfo = make_conninfo(url, **params)
        except psycopg.ProgrammingError as exc:
            raise StoreUnavailableError(f"store.url: not a PostgreSQL URL: {exc}") from None
        try:
            with psycopg.connect(self._conninfo) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(_MIGRATION_LOCK),))
                self._migrate(_PgTx(conn))
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailableError(f"store.url: cannot open {self.url}: {reason}") from None
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=min_connections,
            max_size=max(min_connections, max_connections),
            timeout=timeout_s,
            check=ConnectionPool.check_connection,
            name="spex-monitor-store",
            open=False,
        )
        self._pool.open(wait=False)

    def connect(self, autocommit: bool = True) -> psycopg.Connection:
        """A dedicated connection outside the pool (the fleet aggregator's advisory-lock session)."""
        return psycopg.connect(self._conninfo, autocommit=autocommit)

    def _run(self, work: Callable[[Tx], T]) -> T:
        for attempt in range(2):
            conn = None
            try:
                with self._pool.connection() as conn, conn.transaction():
                    return work(_PgTx(conn))
            except psycopg.OperationalError as exc:
                # retry once when the connection itself broke (the server restarted or closed it);
                # a full disk, a timeout waiting for the pool or a broken retry is raised to the caller
                if attempt or conn is None or not conn.broken:
                    raise
                log.warning("store connection lost (%s); retrying on a fresh connection", type(exc).__name__)
        raise AssertionError("unreachable")  # pragma: no cover

    def _insert(self, tx: Tx, sql: str, args: Sequence[Any]) -> int | None:
        row = tx.execute(sql + " RETURNING id", args).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()
