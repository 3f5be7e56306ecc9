"""``make_store(settings.store)``: the SQLite file by default, a shared PostgreSQL when ``store.url`` is
set."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from .store import SQLStore

if TYPE_CHECKING:
    from ..config_store import StoreConfig


def read_password(config: StoreConfig) -> str | None:
    """The password from ``store.password_file`` (one trailing newline dropped); ``None`` without a file
    (libpq then reads ``PGPASSWORD`` or ``~/.pgpass``). Raises :class:`~spex_monitor.config.ConfigError`
    naming ``store.password_file`` when it cannot be read — never with its content."""
    if config.password_file is None:
        return None
    from ..config import ConfigError

    try:
        text = config.password_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError("store", [("store.password_file", f"{config.password_file}: {reason}")]) from None
    password = text[:-1] if text.endswith("\n") else text
    if not password:
        raise ConfigError("store", [("store.password_file", f"{config.password_file} is empty")])
    return password


def instance_name(config: StoreConfig) -> str:
    """This sidecar's name on the windows it writes: ``store.instance`` or the host (pod) name."""
    return config.instance or socket.gethostname()


def make_store(config: StoreConfig, instance: str | None = None) -> SQLStore:
    """The store ``config`` asks for, migrated and ready.

    Raises:
        ConfigError: ``store.password_file`` unreadable.
        StoreUnavailableError: PostgreSQL refused or rejected the connection (message names ``store.url``).
    """
    common = {
        "store_text": config.store_text,
        "text_ttl_s": config.text_ttl_s,
        "retention_s": config.retention_days * 86_400,
        "instance": instance or instance_name(config),
    }
    if config.url is None:
        from .store_sqlite import SQLiteStore

        return SQLiteStore(config.path, max_bytes=config.max_bytes, **common)  # type: ignore[arg-type]
    from .store_postgres import PostgresStore

    return PostgresStore(
        config.url,
        password=read_password(config),
        timeout_s=config.timeout_s,
        max_connections=config.pool_size,
        **common,  # type: ignore[arg-type]
    )
