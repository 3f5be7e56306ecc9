"""store.url / store.password_file / fleet settings: validation names the field, secrets never surface."""

from __future__ import annotations

import socket

import pytest
import yaml

from spex_monitor.config import ConfigError, Settings, load_settings
from spex_monitor.monitor import InteractionMap
from spex_monitor.monitor.store_factory import make_store, read_password
from spex_monitor.monitor.store_postgres import display_url
from spex_monitor.monitor.store_sqlite import SQLiteStore

MODEL = {"name": "m", "backend": {"kind": "local", "path": "/nonexistent"}}


def _settings(tmp_path, **sections) -> Settings:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"models": [MODEL], **sections}))
    return load_settings(path, environ={})


def _errors(tmp_path, **sections) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, **sections)
    return dict(info.value.errors)


def test_a_postgres_url_is_accepted_without_a_password(tmp_path):
    settings = _settings(tmp_path, store={"url": "postgresql://spex@db.example:5432/spex?sslmode=verify-full"})
    assert settings.store.url.startswith("postgresql://spex@db.example")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://spex:hunter2@db:5432/spex", "must not carry a password"),
        ("postgresql://spex@db/spex?password=hunter2", "must not carry a password"),
        ("mysql://spex@db/spex", "postgresql://"),
    ],
)
def test_bad_store_urls_name_the_field_and_never_echo_the_password(tmp_path, url, reason):
    errors = _errors(tmp_path, store={"url": url})
    assert reason in errors["store.url"]
    assert "hunter2" not in str(errors)


def test_sqlite_only_and_fleet_knobs_are_checked(tmp_path):
    errors = _errors(tmp_path, store={"url": "postgresql://s@db/s", "max_bytes": 1_000_000})
    assert "SQLite file only" in errors["store.max_bytes"]
    errors = _errors(tmp_path, fleet={"aggregate": True})
    assert "store.url" in errors["fleet.aggregate"]
    errors = _errors(
        tmp_path,
        store={"url": "postgresql://s@db/s"},
        fleet={"aggregate": True},
        windows={"seconds": None, "requests": 50},
    )
    assert "windows.seconds" in errors["fleet.window_s"]


def test_make_store_defaults_to_sqlite_named_after_the_host(tmp_path):
    settings = _settings(tmp_path, store={"path": str(tmp_path / "x.db"), "max_bytes": 1_000_000})
    store = make_store(settings.store)
    try:
        assert isinstance(store, SQLiteStore) and store.instance == socket.gethostname()
        wid = store.save_window("m", "v1", 0.0, 1.0, InteractionMap())
        assert store.pod_windows_ending("m", 0.0, 2.0)[0].id == wid
    finally:
        store.close()
    named = make_store(settings.store, instance="pod-7")
    assert named.instance == "pod-7"
    named.close()


def test_password_file_is_read_and_its_errors_name_the_field(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\n")
    settings = _settings(tmp_path, store={"url": "postgresql://s@db/s", "password_file": str(secret)})
    assert read_password(settings.store) == "s3cret-value"
    missing = str(tmp_path / "none")
    settings = _settings(tmp_path, store={"url": "postgresql://s@db/s", "password_file": missing})
    with pytest.raises(ConfigError) as info:
        read_password(settings.store)
    assert info.value.errors[0][0] == "store.password_file"


def test_display_url_drops_the_password():
    assert display_url("postgresql://u:pw@h:5433/d?sslmode=require") == "postgresql://u@h:5433/d"
    assert "pw" not in display_url("host=h user=u password=pw dbname=d")
