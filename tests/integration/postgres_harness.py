"""A throwaway PostgreSQL cluster (Debian's ``postgresql`` package) on a free loopback port, for the tests.

``initdb`` with SCRAM password authentication, then the ``postgres`` server started as our child process
(run as the ``postgres`` user when we are root: the server refuses root), listening on 127.0.0.1 only, no
Unix socket. Stopped by PID (SIGINT = fast shutdown, then SIGKILL past a deadline). If anything here cannot
start, the fixture FAILS with the reason — it never skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PASSWORD = "spex-test-s3cret"  # a throwaway cluster's superuser password


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bin_dir() -> Path:
    """Where initdb/postgres live: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise RuntimeError(
            "PostgreSQL server binaries not found (Debian: apt-get install postgresql; make system-deps)"
        )
    return Path(versions[-1]).parent


class PostgresCluster:
    """One cluster in a temporary folder. ``url(db)`` has no password; pass :data:`PASSWORD` separately."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="spex-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        fast = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}  # throwaway data
        self.settings = fast | (settings or {})
        self.user = "postgres" if os.geteuid() == 0 else None
        self.process: subprocess.Popen | None = None
        self.log_path = self.root / "server.log"
        if self.user is not None:
            entry = pwd.getpwnam(self.user)  # KeyError: no postgres user (the Debian package creates it)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user is not None:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        result = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale", "--no-sync"],
            user=self.user, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        self.start()

    # ------------------------------------------------------------------------------------------ process
    def start(self, timeout_s: float = 60.0) -> None:
        args = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                "-c", "max_connections=200"]  # fmt: skip
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server writes to it until stopped
        self.process = subprocess.Popen(args, user=self.user, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: {self.log_tail()}")
            try:
                psycopg.connect(self.url("postgres"), password=PASSWORD, connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    reason = f"postgres not accepting connections after {timeout_s}s: {exc}"
                    raise RuntimeError(reason) from exc
                time.sleep(0.05)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown by PID (SIGINT: active sessions are terminated), SIGKILL past the deadline."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)

    def ensure_running(self) -> None:
        """Start it again if a test left it stopped (so one failure does not fail the next tests)."""
        if self.process is None or self.process.poll() is not None:
            self.process = None
            self.start()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # ----------------------------------------------------------------------------------------- databases
    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url("postgres"), password=PASSWORD, autocommit=True)

    def create_database(self, name: str, tablespace: str | None = None) -> str:
        """A fresh database; returns its URL (no password)."""
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
            if tablespace is not None:  # tables the store creates land there (the catalogs do not)
                conn.execute(f'ALTER DATABASE "{name}" SET default_tablespace = "{tablespace}"')
        return self.url(name)


_counter = iter(range(1_000_000))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One cluster per test session (per xdist worker); fails the tests that use it when it cannot start."""
    try:
        cluster = PostgresCluster()
    except Exception as exc:  # noqa: BLE001 - the reason is the failure
        pytest.fail(f"PostgreSQL could not start: {type(exc).__name__}: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(postgres: PostgresCluster, request: pytest.FixtureRequest) -> str:
    """A fresh database for one test."""
    return postgres.create_database(unique_name("t"))


class TinyTablespace:
    """A tablespace on a tmpfs of ``size`` bytes: a full disk for the tables put there. Mounting needs root
    (CAP_SYS_ADMIN); when it is refused the test fails with that reason."""

    def __init__(self, cluster: PostgresCluster, name: str, size: int) -> None:
        self.cluster = cluster
        self.name = name
        self.path = cluster.root / name
        self.path.mkdir()
        owner = pwd.getpwnam(cluster.user) if cluster.user else pwd.getpwuid(os.geteuid())
        options = f"size={size},mode=0700,uid={owner.pw_uid},gid={owner.pw_gid}"
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"cannot mount a {size}-byte tmpfs (tablespace): {result.stderr.strip()}")
        with cluster.admin() as conn:
            conn.execute(f"CREATE TABLESPACE \"{name}\" LOCATION '{self.path}'")

    def resize(self, size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def drop(self, database: str) -> None:
        with self.cluster.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP TABLESPACE IF EXISTS "{self.name}"')
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
