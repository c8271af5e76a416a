"""The throwaway PostgreSQL cluster of a test run (scripts/postgres-server.sh starts it and exports its
admin URL as WORPEN_TEST_POSTGRES_URL): a fresh database for each store a test needs."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from worpen_infra.sql import migrations
from worpen_infra.sql.database import create_engine, upgrade_database

T = TypeVar("T")

ADMIN_URL_VARIABLE = "WORPEN_TEST_POSTGRES_URL"
BIN_VARIABLE = "WORPEN_TEST_POSTGRES_BIN"

_numbers = itertools.count(1)


def admin_url() -> str:
    """The cluster's admin URL (SQLAlchemy form). In CI a missing cluster fails the test; elsewhere it
    skips it, saying how to run it."""
    url = os.environ.get(ADMIN_URL_VARIABLE)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{ADMIN_URL_VARIABLE} is not set: scripts/test starts PostgreSQL for the tests")
    pytest.skip("no PostgreSQL: run through scripts/test, or source scripts/postgres-server.sh first")


def _driver_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


TEMPLATE_LOCK = 0x776F7270656E
"""The advisory lock under which one test process at a time builds a cluster's migrated template."""

_templates: set[str] = set()
"""The admin URLs of the clusters whose template this process has seen built."""


@functools.cache
def template_name() -> str:
    """The name of the migrated template for the migrations of this tree: it changes with them, so that a
    cluster that outlives a test run never hands out a schema an edited or added migration would not make."""
    versions = Path(migrations.__file__).parent / "versions"
    digest = hashlib.sha256()
    for path in sorted(versions.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"worpen_template_{digest.hexdigest()[:16]}"


async def _ensure_template(admin: str, connection: asyncpg.Connection) -> str:
    """The cluster's migrated template, built on first use: migrated under another name and renamed once
    complete, so that a build cut short is never taken for a template; two processes asking at once
    wait for one build."""
    name = template_name()
    if admin in _templates:
        return name
    exists = "SELECT 1 FROM pg_database WHERE datname = $1"
    if not await connection.fetchval(exists, name):
        await connection.execute("SELECT pg_advisory_lock($1)", TEMPLATE_LOCK)
        try:
            if not await connection.fetchval(exists, name):
                building = f"{name}_building"
                await connection.execute(f'DROP DATABASE IF EXISTS "{building}"')
                await connection.execute(f'CREATE DATABASE "{building}"')
                engine = create_engine(f"{admin.rsplit('/', 1)[0]}/{building}")
                try:
                    await upgrade_database(engine)
                finally:
                    await engine.dispose()
                await connection.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", TEMPLATE_LOCK)
    _templates.add(admin)
    return name


async def create_database(prefix: str = "worpen", admin: str | None = None, migrated: bool = False) -> str:
    """A new database on the cluster (or on the one whose admin URL is `admin`); its SQLAlchemy URL.
    Empty, or with `migrated` a copy of the cluster's template, at the newest migration: what a server
    that migrated it itself would have, for a fraction of the time, since every test run creates hundreds."""
    admin = admin or admin_url()
    name = f"{prefix}_{os.getpid()}_{next(_numbers)}_{uuid.uuid4().hex[:6]}".lower()
    connection = await asyncpg.connect(_driver_url(admin))
    try:
        template = f' TEMPLATE "{await _ensure_template(admin, connection)}"' if migrated else ""
        await connection.execute(f'CREATE DATABASE "{name}"{template}')
    finally:
        await connection.close()
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def run_sync(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`work()` run to its end on an event loop of its own, in a thread of its own: callable from
    synchronous code even while an event loop runs in this thread (a test's). Raises what it raised."""
    done: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(asyncio.run(work()))
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return done[0]


def create_database_sync(prefix: str = "worpen", admin: str | None = None, migrated: bool = False) -> str:
    """`create_database` from synchronous code, even while an event loop runs in this thread."""
    chosen = admin or admin_url()
    return run_sync(lambda: create_database(prefix, chosen, migrated))


@contextmanager
def writes_blocked(url: str, tables: Sequence[str] = ()) -> Iterator[None]:
    """`tables` (every table when none is named) of the database at `url` locked against writes until the
    block ends (reads go on), as a stuck transaction or a long migration would: writers wait until their
    statement timeout."""
    held = threading.Event()
    release = threading.Event()
    failed: list[BaseException] = []

    async def hold() -> None:
        connection = await asyncpg.connect(_driver_url(url))
        try:
            await connection.execute("BEGIN")
            chosen = tables or [
                row["tablename"]
                for row in await connection.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            names = ", ".join(f'"{name}"' for name in chosen)
            await connection.execute(f"LOCK TABLE {names} IN EXCLUSIVE MODE")
            held.set()
            while not release.is_set():
                await asyncio.sleep(0.01)
            await connection.execute("ROLLBACK")
        finally:
            await connection.close()

    def run() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)
        finally:
            held.set()

    thread = threading.Thread(target=run)
    thread.start()
    held.wait()
    try:
        if failed:
            raise failed[0]
        yield
    finally:
        release.set()
        thread.join()


class Cluster:
    """A PostgreSQL cluster of a test's own, to stop and start again (the shared one must never be): its
    own data directory, a port chosen once so that clients find it again after a restart, trust
    authentication on loopback, no fsync (it holds nothing but test data). As root, it runs as the
    `postgres` user, as scripts/postgres-server.sh does (initdb refuses root)."""

    def __init__(self, port: int) -> None:
        """`port`: a free loopback port outside the ephemeral range (tests.integration.support.free_port),
        so that no outgoing connection takes it while the cluster is stopped."""
        admin_url()  # skips (or fails in CI) where scripts/postgres-server.sh has not run
        self._bin = os.environ[BIN_VARIABLE]
        self._directory = tempfile.mkdtemp(prefix="worpen-cluster-")
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self._directory, "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.port = port
        self._run(
            "initdb",
            "--pgdata",
            self._data,
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )

    @property
    def _data(self) -> str:
        return os.path.join(self._directory, "data")

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [*self._as_postgres, os.path.join(self._bin, program), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self._directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = os.path.join(self._directory, "server.log")
        self._run(
            "pg_ctl",
            "--pgdata",
            self._data,
            "--log",
            log,
            "--wait",
            "--timeout",
            "60",
            "-o",
            options,
            "start",
        )

    def stop(self) -> None:
        """Stop as an operator's restart does: sessions are ended, new connections refused."""
        self._run("pg_ctl", "--pgdata", self._data, "--mode", "fast", "--wait", "stop")

    def create_database(self, prefix: str = "worpen", migrated: bool = False) -> str:
        return create_database_sync(prefix, self.admin_url, migrated)

    def close(self) -> None:
        """Stop it if it runs and remove its files."""
        subprocess.run(
            [
                *self._as_postgres,
                os.path.join(self._bin, "pg_ctl"),
                "--pgdata",
                self._data,
                "--mode",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self._directory, ignore_errors=True)
