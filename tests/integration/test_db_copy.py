"""`worpen db copy`: an installation populated through a real `worpen serve` on SQLite moves to a fresh
PostgreSQL database with the real command; every row arrives, a second run copies nothing, and `worpen serve`
on PostgreSQL, given the SQLite installation's secrets key, answers as the old server did: its keys
authenticate, its agents, events, logs, incidents, automation and pipelines are there, and its sealed
secrets open. Bad invocations end with a clear error and a failing exit status."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Executable, func, select, update

from tests.integration.support import (
    SECRET,
    WorpenServer,
    base_env,
    free_port,
    heartbeat,
    start_server,
    worpen_command,
)
from tests.postgres_support import create_database_sync
from worpen_infra.sql.database import create_engine
from worpen_infra.sql.tables import agents, metadata

pytestmark = pytest.mark.integration

COMMAND_DEADLINE = 300.0
"""Upper bound for one `worpen db copy` (its imports alone take seconds on a busy machine)."""
LIVE_STATE = {"leases", "agent_streams", "auth_failures", "session_slots", "pipeline_requests"}
"""Tables of running replicas, which a copy leaves out (see worpen_infra.sql.copy)."""
COPIED = sorted(table.name for table in metadata.sorted_tables if table.name not in LIVE_STATE)
SETTINGS = {
    "WORPEN_FLUSH_INTERVAL": "0.2",
    "WORPEN_TELEMETRY_ROLLUP_INTERVAL": "0.2",
    "WORPEN_AGENT_TTL": "3600",
    "WORPEN_DOCKER_HOSTS": "none",
}
PUBLIC_URL = "https://93.184.215.14/services/T0000/B0000/copied"
WEBHOOK_SECRET = "copied-webhook-secret-0123"
REPOSITORY = "https://git.example.invalid/team/copied.git"
MARKER = "zqcopiedlines"
"""A word in the shipped log lines, to find them by full-text search on either database."""
READS = (
    "/api/v1/agents/copy-bee-1",
    "/api/v1/agents/copy-bee-2",
    f"/api/v1/logs?q={MARKER}",
    "/api/v1/incidents",
    "/api/v1/automation/rules",
    "/api/v1/automation/runs",
    "/api/v1/automation/channels",
    "/api/v1/pipelines/definitions/copied",
    "/api/v1/pipelines/runs?pipeline=copied",
    "/api/v1/pipelines/secrets",
)
"""What the old server answered and the new one must answer the same."""


@dataclass(frozen=True)
class Installation:
    """The SQLite installation, stopped, and what its server answered before it stopped."""

    directory: Path
    url: str
    admin_key: str
    viewer_key: str
    answers: dict[str, Any]
    events: list[dict[str, Any]]
    audit: list[dict[str, Any]]

    @property
    def key_file(self) -> Path:
        return self.directory / "worpen-secrets.key"


def copy_commands(*invocations: Sequence[str], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """`worpen db copy` with each of `invocations`' arguments, side by side, with no WORPEN_* variable set,
    as an operator runs it beside the old database."""
    processes = [
        subprocess.Popen(
            [*worpen_command(), "db", "copy", *args],
            env=base_env(),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in invocations
    ]
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=COMMAND_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def table_lines(output: str) -> dict[str, tuple[int, int, int]]:
    """The per-table lines of the copy's output: {table: (in the source, copied, already there)}."""
    found = re.findall(r"^([a-z_]+)\s+(\d+)\s+(\d+)\s+(\d+)$", output, re.MULTILINE)
    return {name: (int(source), int(copied), int(there)) for name, source, copied, there in found}


def succeeded(answer: httpx.Response, *statuses: int) -> Any:
    assert answer.status_code in (statuses or (200,)), answer.text
    return answer.json()


def signed(body: bytes) -> str:
    return hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


def push() -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "after": "0123456789abcdef0123456789abcdef01234567",
            "repository": {"clone_url": REPOSITORY, "html_url": REPOSITORY.removesuffix(".git")},
            "pusher": {"name": "ada", "email": "ada@example.org"},
        }
    ).encode()


def sqlite_rows(database: Path, sql: str) -> int:
    with closing(sqlite3.connect(database)) as connection:
        return int(connection.execute(sql).fetchone()[0])


def wait_until(condition: Any, what: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def populate(server: WorpenServer, admin: httpx.Client) -> str:
    """API keys, agents and their telemetry, events and logs, a notification channel, a rule run by hand
    that opened an incident and asked for a notification, a pipeline with a webhook secret and a stage
    secret, and a queued run; the audit log of all that. The viewer key's secret."""
    viewer = succeeded(admin.post("/api/v1/apikeys", json={"name": "copied-viewer", "role": "viewer"}), 201)
    for beat in range(3):
        for agent in ("copy-bee-1", "copy-bee-2"):
            succeeded(heartbeat(admin, agent, cpu=10.0 + beat, ram=30.0 + beat), 202)
    lines = [
        {"message": f"{MARKER} started", "level": "INFO"},
        {"message": f"{MARKER} slow upstream", "level": "WARN", "fields": {"attempt": 2, "ok": True}},
        {"message": f"{MARKER} binary\x00output", "fields": {"raw": "\x00"}},
    ]
    succeeded(admin.post("/api/v1/internal/logs", json={"agentId": "copy-bee-1", "lines": lines}), 201)
    succeeded(
        admin.post(
            "/api/v1/automation/channels",
            json={"name": "#copy-alerts", "kind": "slack", "url": PUBLIC_URL, "secret": "signing-0123456789"},
        ),
        201,
    )
    script = (
        "log.info('checked ' + service + ' on ' + node); "
        "incident.open('disk full', {severity: 'high'}); "
        "notify.slack('#copy-alerts', 'disk full on ' + node)"
    )
    rule = succeeded(
        admin.post(
            "/api/v1/automation/rules",
            json={
                "name": "copied rule",
                "trigger": "MANUAL",
                "targetService": "shop",
                "script": script,
                "active": True,
            },
        ),
        201,
    )
    run = succeeded(
        admin.post(f"/api/v1/automation/rules/{rule['id']}/run", json={"context": {"node": "edge-7"}})
    )
    assert run["status"] == "SUCCEEDED", json.dumps(run, indent=1)
    succeeded(
        admin.post("/api/v1/pipelines/secrets", json={"name": "API_TOKEN", "value": "t0ken-value"}), 201
    )
    stage = {
        "name": "wait",
        "image": "worpen-test/busybox:1",
        "commands": ["echo $API_TOKEN"],
        "secrets": ["API_TOKEN"],
        "nodeSelector": {"pool": "nowhere"},
    }
    definition = {
        "id": "copied",
        "name": "copied CI",
        "repository": REPOSITORY,
        "branch": "main",
        "stages": [stage],
        "triggers": {"webhookSecret": WEBHOOK_SECRET},
    }
    succeeded(admin.post("/api/v1/pipelines/definitions", json=definition), 201)
    succeeded(admin.post("/api/v1/pipelines/trigger", json={"pipelineId": "copied"}), 202)
    wait_until(
        lambda: (
            sqlite_rows(server.database, "SELECT count(*) FROM telemetry_rollups") > 0
            and sqlite_rows(server.database, "SELECT count(*) FROM agent_samples") >= 6
            and sqlite_rows(server.database, "SELECT count(*) FROM incident_timeline") > 0
        ),
        "the samples flushed and rolled up",
    )
    secret: str = viewer["key"]
    return secret


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    directory = tmp_path_factory.mktemp("sqlite-installation")
    database = directory / "worpen.db"
    url = f"sqlite+aiosqlite:///{database}"
    server = start_server(database, {"WORPEN_DATABASE_URL": url, **SETTINGS})
    try:
        admin_key = server.initial_admin_key()
        with server.client(admin_key) as admin:
            viewer_key = populate(server, admin)
            answers = {path: succeeded(admin.get(path)) for path in READS}
            events = succeeded(admin.get("/api/v1/events"))
            audit = succeeded(admin.get("/api/v1/audit"))
    finally:
        assert server.stop() == 0, server.log()
    return Installation(directory, url, admin_key, viewer_key, answers, events, audit)


@dataclass(frozen=True)
class Copied:
    url: str
    first: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]
    tampered_again: subprocess.CompletedProcess[str]
    """A second run onto another copy, where an agent's name was changed in between."""


@pytest.fixture(scope="module")
def copied(installation: Installation) -> Copied:
    """The installation copied to a fresh PostgreSQL database, then copied again; beside it, the same onto
    a second database tampered with between the two runs."""
    target, tampered = create_database_sync("copy"), create_database_sync("tampered")
    arguments = [("--from", installation.url, "--to", url) for url in (target, tampered)]
    first, tampered_first = copy_commands(*arguments, cwd=installation.directory)
    assert tampered_first.returncode == 0, tampered_first.stdout + tampered_first.stderr
    execute(tampered, update(agents).where(agents.c.id == "copy-bee-1").values(name="tampered"))
    again, tampered_again = copy_commands(*arguments, cwd=installation.directory)
    return Copied(target, first, again, tampered_again)


def execute(url: str, statement: Executable) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(statement)
        finally:
            await engine.dispose()

    asyncio.run(run())


def as_on_postgresql(value: Any) -> Any:
    """`value` with U+0000, which PostgreSQL's text cannot hold, as U+FFFD, the way Worpen stores it there."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {key: as_on_postgresql(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_on_postgresql(item) for item in value]
    return value


def every_row(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every copied table, by primary key, through the schema's own types."""

    async def read() -> dict[str, list[dict[str, Any]]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return {
                    table.name: [
                        row._asdict()
                        for row in await connection.execute(
                            select(table).order_by(*table.primary_key.columns)
                        )
                    ]
                    for table in metadata.sorted_tables
                    if table.name in COPIED
                }
        finally:
            await engine.dispose()

    return asyncio.run(read())


def row_counts(url: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return {
                    name: int(
                        (
                            await connection.execute(select(func.count()).select_from(metadata.tables[name]))
                        ).scalar_one()
                    )
                    for name in COPIED
                }
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_every_table_arrives_and_is_verified(installation: Installation, copied: Copied) -> None:
    first = copied.first
    assert first.returncode == 0, first.stdout + first.stderr
    lines = table_lines(first.stdout)
    assert sorted(lines) == COPIED
    source_counts = row_counts(installation.url)
    for name, (source, copied_rows, there) in lines.items():
        assert (source, copied_rows, there) == (source_counts[name], source_counts[name], 0), name
    for name in (
        "api_keys",
        "agents",
        "agent_samples",
        "telemetry_rollups",
        "telemetry_progress",
        "telemetry_counters",
        "events",
        "logs",
        "automation_rules",
        "automation_runs",
        "incidents",
        "incident_timeline",
        "notification_channels",
        "notification_deliveries",
        "pipeline_definitions",
        "pipeline_runs",
        "pipeline_stages",
        "pipeline_secrets",
        "audit_log",
    ):
        assert source_counts[name] > 0, f"the installation has no {name}: the test populates too little"
    assert "verified: every table" in first.stdout
    assert row_counts(copied.url) == source_counts
    assert every_row(copied.url) == as_on_postgresql(every_row(installation.url))


def test_the_copy_says_where_the_secrets_key_is_and_never_shows_it(
    installation: Installation, copied: Copied
) -> None:
    key = installation.key_file.read_text().strip()
    assert str(installation.key_file) in copied.first.stdout
    assert "as WORPEN_SECRETS_KEY_FILE or its contents as WORPEN_SECRETS_KEY" in copied.first.stdout
    for output in (copied.first.stdout, copied.first.stderr, copied.again.stdout, copied.again.stderr):
        assert key not in output


def test_a_target_that_differs_from_the_source_fails_the_check(copied: Copied) -> None:
    tampered = copied.tampered_again
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "  agents: row copy-bee-1 differs on the target: name" in tampered.stdout
    assert "NOT verified: agents differ from the source" in tampered.stdout
    assert "Traceback" not in tampered.stderr


def test_a_second_run_copies_nothing(installation: Installation, copied: Copied) -> None:
    again = copied.again
    assert again.returncode == 0, again.stdout + again.stderr
    lines = table_lines(again.stdout)
    assert sorted(lines) == COPIED
    for name, (source, copied_rows, there) in lines.items():
        assert (copied_rows, there) == (0, source), name
    assert "verified: every table" in again.stdout
    assert row_counts(copied.url) == row_counts(installation.url)


@pytest.fixture(scope="module")
def postgres_server(
    installation: Installation, copied: Copied, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorpenServer]:
    """`worpen serve` on the copy, with the SQLite installation's secrets key file."""
    assert copied.first.returncode == 0, copied.first.stdout + copied.first.stderr
    directory = tmp_path_factory.mktemp("postgresql-installation")
    settings = {
        **SETTINGS,
        "WORPEN_DATABASE_URL": copied.url,
        "WORPEN_SECRETS_KEY_FILE": str(installation.key_file),
    }
    server = start_server(directory / "unused.db", settings)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log()


def test_the_server_on_postgresql_answers_as_the_old_one(
    installation: Installation, postgres_server: WorpenServer
) -> None:
    assert SECRET.search(postgres_server.log()) is None, "a first start made a new admin key"
    with postgres_server.client(installation.admin_key) as admin:
        for path, before in installation.answers.items():
            assert succeeded(admin.get(path)) == as_on_postgresql(before), path
        last_event = max(event["seq"] for event in installation.events)
        events = [event for event in succeeded(admin.get("/api/v1/events")) if event["seq"] <= last_event]
        assert events == installation.events
        recorded = {entry["id"] for entry in installation.audit}
        assert [e for e in succeeded(admin.get("/api/v1/audit")) if e["id"] in recorded] == installation.audit
    with postgres_server.client(installation.viewer_key) as viewer:
        assert succeeded(viewer.get("/api/v1/agents/copy-bee-1"))["id"] == "copy-bee-1"
    with postgres_server.client("wpn_" + "x" * 40) as stranger:
        assert stranger.get("/api/v1/agents").status_code == 401
    secrets = installation.answers["/api/v1/pipelines/secrets"]
    assert [secret["name"] for secret in secrets] == ["API_TOKEN"]


def test_the_copied_secrets_open_with_the_old_key(postgres_server: WorpenServer) -> None:
    body = push()
    with postgres_server.client() as forge:
        forged = forge.post(
            "/api/v1/pipelines/webhook",
            content=body,
            headers={"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Event": "push"},
        )
        hooked = forge.post(
            "/api/v1/pipelines/webhook",
            content=body,
            headers={"X-Hub-Signature-256": "sha256=" + signed(body), "X-GitHub-Event": "push"},
        )
    assert forged.status_code == 401, forged.text
    assert hooked.status_code == 202, hooked.text
    assert [run["pipelineId"] for run in hooked.json()["runs"]] == ["copied"]


def test_new_rows_on_postgresql_take_ids_past_the_copied_ones(
    installation: Installation, postgres_server: WorpenServer
) -> None:
    word = "zqafterthecopy"
    with postgres_server.client(installation.admin_key) as admin:
        succeeded(heartbeat(admin, "copy-bee-3"), 202)
        shipped = admin.post(
            "/api/v1/internal/logs", json={"agentId": "copy-bee-3", "lines": [{"message": f"{word} line"}]}
        )
        succeeded(shipped, 201)
        wait_until(lambda: bool(succeeded(admin.get("/api/v1/logs", params={"q": word}))), "the new line")
        last_event = max(event["seq"] for event in installation.events)
        wait_until(
            lambda: any(event["seq"] > last_event for event in succeeded(admin.get("/api/v1/events"))),
            "a new event",
        )


def test_bad_invocations_fail_clearly(installation: Installation, tmp_path: Path) -> None:
    directory = installation.directory
    old_schema = tmp_path / "old.db"
    with (
        closing(sqlite3.connect(installation.url.split("///", 1)[1])) as source,
        closing(sqlite3.connect(old_schema)) as copy,
    ):
        source.backup(copy)
        copy.execute("UPDATE alembic_version SET version_num = '0006'")
        copy.commit()
    newer = tmp_path / "newer.db"
    with closing(sqlite3.connect(newer)) as made:
        made.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        made.execute("INSERT INTO alembic_version VALUES ('9999')")
        made.commit()
    password = "hunter2-not-shown"
    unreachable = f"postgresql+asyncpg://postgres:{password}@127.0.0.1:{free_port()}/nowhere"
    onto_itself, no_database, not_a_url, no_source, old, newer_target, help_text = copy_commands(
        ("--from", installation.url, "--to", installation.url),
        ("--from", installation.url, "--to", unreachable),
        ("--from", installation.url, "--to", "not a url"),
        ("--from", f"sqlite+aiosqlite:///{directory}/none.db", "--to", unreachable),
        ("--from", f"sqlite+aiosqlite:///{old_schema}", "--to", unreachable),
        ("--from", installation.url, "--to", f"sqlite+aiosqlite:///{newer}"),
        ("--help",),
        cwd=directory,
    )

    refusals = [
        (onto_itself, "same database"),
        (no_database, "the target database postgresql+asyncpg://postgres:***@127.0.0.1"),
        (no_database, "unavailable"),
        (not_a_url, "not a database URL"),
        (no_source, "does not exist"),
        (old, "is at migration 0006, not at"),
        (old, "`worpen migrate`"),
        (newer_target, "cannot be migrated by this worpen"),
    ]
    for refused, words in refusals:
        assert refused.returncode != 0, refused.stdout
        assert words in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr, refused.stderr
        assert password not in refused.stdout + refused.stderr
    assert not (directory / "none.db").exists()
    assert help_text.returncode == 0
    for words in ("--from URL", "--to URL", "secrets key", "example:"):
        assert words in help_text.stdout, help_text.stdout
