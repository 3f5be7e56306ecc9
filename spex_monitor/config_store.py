"""Store and fleet settings (``store:``, ``fleet:``): the SQLite file or a shared PostgreSQL, what is kept and
for how long, and the fleet aggregator. Re-exported by :mod:`spex_monitor.config`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .config_paths import default_store_path
from .config_server import Strict
from .patterns import PatternError, compile_linear


class StoreConfig(Strict):
    """The ``store`` section: the SQLite file or a shared PostgreSQL (``url``), redaction, retention and the
    ``<rare>`` word filter."""

    path: Path = Field(
        default_factory=lambda: default_store_path(),
        description="the SQLite file (the default store, one pod); default "
        "$XDG_DATA_HOME/spex-monitor/spex-monitor.db (~/.local/share/...)",
    )
    url: str | None = Field(
        None,
        description="a shared PostgreSQL store instead of the SQLite file: postgresql://user@host:5432/db "
        "(libpq URL; ?sslmode=verify-full etc. allowed). No password here: it comes from password_file or "
        "the PGPASSWORD environment variable, and is never logged",
    )
    password_file: Path | None = Field(
        None, description="file holding the PostgreSQL password (a mounted Secret); trailing newline ignored"
    )
    instance: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="this sidecar's name on the windows it writes to a shared store (the fleet view tells "
        "pods apart by it); default: the host name, which is the pod name in Kubernetes",
    )
    pool_size: int = Field(4, ge=1, le=100, description="PostgreSQL: most pooled connections")
    timeout_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="PostgreSQL: connect timeout, and how long a write waits for a connection while the "
        "database is unreachable before it is counted as failed (the store degrades, monitoring goes on)",
    )
    store_text: bool = False
    redact: list[Literal["email", "phone", "digits"]] = Field(
        default_factory=lambda: ["email", "phone", "digits"],
        description="presets replaced by <email>/<phone>/<digits> in keys, vocabulary and stored text",
    )
    redact_patterns: list[str] = Field(
        default_factory=list,
        description="extra regular expressions replaced by <redacted>; RE2 syntax (linear time: no "
        "backreferences or lookaround)",
    )
    redact_hook: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'module:function' (str -> str) applied after the regexes, for in-house rules",
    )
    text_ttl_s: float = Field(
        86_400.0,
        gt=0,
        description="stored text (store_text) and each explanation's words (its strongest key tuples) are "
        "erased after this; aggregate window maps keep only words of min_document_frequency",
    )
    retention_days: float = Field(30.0, gt=0, description="explanations, windows, reports older are deleted")
    max_bytes: int | None = Field(
        None,
        ge=65_536,
        description="cap on the database file; beyond it writes fail and the store is degraded",
    )
    purge_interval_s: float = Field(300.0, gt=0, description="how often retention and text TTL are applied")

    min_document_frequency: int = Field(
        2,
        ge=1,
        description="a word seen in fewer requests than this is replaced by <rare> in every map, report and "
        "reply that leaves the process or reaches the store (a name seen once is personal data; a word "
        "seen in thousands of requests is vocabulary); 1: off",
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql://user@host:port/database URL")
        if parts.password is not None or "password=" in parts.query.lower():
            raise ValueError("must not carry a password: use store.password_file or PGPASSWORD")
        return value

    @model_validator(mode="after")
    def _sqlite_only_knobs(self) -> StoreConfig:
        if self.url is not None and self.max_bytes is not None:
            raise ValueError(
                "max_bytes: caps the SQLite file only; size a PostgreSQL store with its own disk or "
                "tablespace"
            )
        return self

    @field_validator("redact_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for index, pattern in enumerate(value):
            try:
                compile_linear(pattern)
            except PatternError as exc:
                raise ValueError(f"[{index}] {pattern!r}: {exc}") from exc
        return value


class FleetConfig(Strict):
    """The fleet view (a shared PostgreSQL store): one aggregator per model merges every pod's windows."""

    aggregate: bool = Field(
        False,
        description="this sidecar competes for each model's aggregator lock (a PostgreSQL advisory lock) "
        "and, while it holds one, merges the fleet's windows; a standalone `spex-monitor aggregate` "
        "process aggregates whatever this says",
    )
    window_s: float | None = Field(
        None,
        gt=0,
        description="fleet window length, aligned to the epoch (a pod window belongs to the fleet window "
        "its end falls in); default: windows.seconds",
    )
    grace_s: float = Field(
        30.0,
        ge=0,
        description="how long after a fleet window ends the aggregator waits for late pod windows before "
        "merging it (pods write a window on their next tick)",
    )
    tick_s: float = Field(5.0, gt=0, description="how often an aggregator (or a candidate) runs")
    baseline_windows: int | None = Field(
        None,
        ge=1,
        description="first fleet windows merged into the fleet baseline; default: baseline.windows",
    )
    min_window_requests: int | None = Field(
        None,
        ge=1,
        description="explained requests (all pods together) a fleet window needs to be compared; default: "
        "baseline.min_window_requests",
    )
    baseline_file: Path | None = Field(
        None,
        description="InteractionMap bytes to pin as the fleet baseline of models[0] (its configured "
        "version) instead of learning it from the first fleet windows",
    )
    backfill_windows: int = Field(
        12,
        ge=0,
        le=100_000,
        description="on a first start (no fleet window stored yet), how many past fleet windows to merge",
    )
