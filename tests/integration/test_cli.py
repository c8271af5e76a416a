"""The `worpen` command: migrate, and the API key commands against a running server's database."""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.support import Invocation, Keys, WorpenServer, base_env, query, run_worpen

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Commands:
    """What the `worpen` commands these tests look at printed; they ran side by side (each takes
    seconds), since none depends on another."""

    empty_directory: Path
    migrate: subprocess.CompletedProcess[str]
    listing: subprocess.CompletedProcess[str]
    revoke: subprocess.CompletedProcess[str]
    revoke_unknown: subprocess.CompletedProcess[str]
    bad_docker_hosts: subprocess.CompletedProcess[str]

    def listed(self) -> dict[str, list[str]]:
        """`worpen apikey list` as {key id: [id, name, role, prefix, agents, expires, revoked]}."""
        assert self.listing.returncode == 0, self.listing.stderr
        header, *lines = self.listing.stdout.splitlines()
        assert header.split() == ["ID", "NAME", "ROLE", "PREFIX", "AGENTS", "EXPIRES", "REVOKED"]
        return {line.split()[0]: line.split() for line in lines}


@pytest.fixture(scope="module")
def commands(fleet_server: WorpenServer, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Commands:
    """`worpen migrate` in an empty directory with no WORPEN_* variable set; `worpen apikey list`,
    `worpen apikey revoke` of a key and of an id that does not exist, on the running server's database;
    `worpen serve` with an engine URL it cannot use."""
    empty = tmp_path_factory.mktemp("empty")
    bare_env = base_env()
    migrate, listing, revoke, revoke_unknown, bad_docker_hosts = run_worpen(
        Invocation(["migrate"], bare_env, cwd=empty),
        Invocation(["apikey", "list"], fleet_server.env),
        Invocation(["apikey", "revoke", keys.to_revoke_with_cli.id], fleet_server.env),
        Invocation(["apikey", "revoke", "0123456789ab"], fleet_server.env),
        Invocation(
            ["serve", "--port", "0"], {**bare_env, "WORPEN_DOCKER_HOSTS": "edge-7=ftp://10.0.0.7"}, empty
        ),
    )
    return Commands(empty, migrate, listing, revoke, revoke_unknown, bad_docker_hosts)


def test_migrate_in_an_empty_directory_creates_the_database_with_its_tables(commands: Commands) -> None:
    assert commands.migrate.returncode == 0, commands.migrate.stderr
    assert "up to date" in commands.migrate.stdout

    database = commands.empty_directory / "worpen.db"  # the default, in the working directory
    with closing(sqlite3.connect(database)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        keys = db.execute("SELECT count(*) FROM api_keys").fetchone()[0]
    assert {"agents", "agent_samples", "api_keys"} <= tables
    assert keys == 0  # migrating issues no key; the first `serve` does


def test_apikey_list_shows_every_key_but_never_a_secret(commands: Commands, keys: Keys) -> None:
    rows = commands.listed()
    issued = [keys.viewer, keys.operator, keys.agent, keys.expiring, keys.to_revoke_with_cli]

    for key in issued:
        _, name, role, prefix, agents, expires, _ = rows[key.id]
        assert (name, role) == (key.name, key.role)
        assert prefix == key.secret[:12] + "…"
        assert agents == ("bee-001" if key.role == "agent" else "-")
        if key is keys.expiring:
            assert datetime.fromisoformat(expires).tzinfo is not None
        else:
            assert expires == "never"
    assert "admin" in [row[2] for row in rows.values()]
    output = commands.listing.stdout + commands.listing.stderr
    for secret in [keys.admin, *(key.secret for key in issued)]:
        assert secret not in output
        assert secret[12:] not in output


def test_apikey_revoke_marks_the_key_revoked_and_the_running_server_refuses_it(
    commands: Commands, fleet_server: WorpenServer, keys: Keys
) -> None:
    assert commands.revoke.returncode == 0, commands.revoke.stderr
    assert keys.to_revoke_with_cli.id in commands.revoke.stdout

    revoked_at, viewer_revoked_at = (
        query(fleet_server.database_url, "SELECT revoked_at FROM api_keys WHERE id = :id", id=key_id)[0][0]
        for key_id in (keys.to_revoke_with_cli.id, keys.viewer.id)
    )
    assert revoked_at is not None
    assert viewer_revoked_at is None
    # The server never saw this key before, so nothing cached lets it through.
    with fleet_server.client(keys.to_revoke_with_cli.secret) as revoked:
        response = revoked.get("/api/v1/agents")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_apikey_revoke_of_an_unknown_id_fails_with_a_message(commands: Commands) -> None:
    assert commands.revoke_unknown.returncode != 0
    assert "not found" in commands.revoke_unknown.stderr


def test_serve_refuses_docker_hosts_it_cannot_use_and_says_why(commands: Commands) -> None:
    refused = commands.bad_docker_hosts
    assert refused.returncode != 0
    assert "WORPEN_DOCKER_HOSTS" in refused.stderr
    assert "'edge-7'" in refused.stderr
