"""PostgreSQL stopped and started again under load, as an operator's restart or a failover does: while it
is down every request answers 503 naming the database (never 500, never a hang beyond the connect and
statement timeouts), heartbeats of known agents keep being taken; once it is back Worpen recovers by
itself, without a restart, and every write it acknowledged before, during or after is there. A write
refused with 503 may be missing; an acknowledged one never.

The cluster is the test's own (tests.postgres_support.Cluster): the shared one is never stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.docker_support import wait_for
from tests.integration.support import WorpenServer, heartbeat, start_server
from tests.postgres_support import Cluster

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT = 2.0
STATEMENT_TIMEOUT = 5.0
LONGEST_ANSWER = CONNECT_TIMEOUT + STATEMENT_TIMEOUT + 3.0
"""No request may take longer, database down or not: the timeouts bound it, plus slack for this machine."""
OUTAGE_SECONDS = 4.0
STEADY_AGENTS = [f"steady-{number}" for number in range(3)]


@dataclass(frozen=True)
class Answer:
    kind: str
    """`register` (a heartbeat of a new agent), `key` (an API key created), `beat` (a known agent's)."""
    subject: str
    """The agent id, or the new key's id when it was acknowledged."""
    status: int
    detail: str
    seconds: float
    at: float
    """time.monotonic() when the answer arrived."""


class Load:
    """Clients in threads writing through the API until stopped, every answer recorded."""

    def __init__(self, server: WorpenServer, key: str) -> None:
        self._server = server
        self._key = key
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answers: list[Answer] = []
        self._threads = [
            threading.Thread(target=self._loop, args=(name, work), name=name)
            for name, work in [
                ("register-a", self._register),
                ("register-b", self._register),
                ("keys", self._create_key),
                ("beats", self._beat),
            ]
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self, name: str, work: Callable[[httpx.Client, int], tuple[str, str, httpx.Response]]) -> None:
        with self._server.client(self._key) as client:
            number = 0
            while not self._stop.is_set():
                number += 1
                began = time.monotonic()
                try:
                    kind, subject, response = work(client, number)
                except httpx.TransportError as exc:  # recorded as a failure, not raised in a thread
                    kind, subject, status, detail = name, f"{name}-{number}", 0, repr(exc)
                else:
                    status = response.status_code
                    detail = "" if response.is_success else response.json().get("detail", response.text)
                ended = time.monotonic()
                with self._lock:
                    self.answers.append(Answer(kind, subject, status, detail, ended - began, ended))
                time.sleep(0.02)

    def _register(self, client: httpx.Client, number: int) -> tuple[str, str, httpx.Response]:
        agent_id = f"outage-{threading.current_thread().name}-{number}"
        return "register", agent_id, heartbeat(client, agent_id)

    def _create_key(self, client: httpx.Client, number: int) -> tuple[str, str, httpx.Response]:
        response = client.post("/api/v1/apikeys", json={"name": f"outage-{number}", "role": "viewer"})
        return "key", response.json()["id"] if response.is_success else "", response

    def _beat(self, client: httpx.Client, number: int) -> tuple[str, str, httpx.Response]:
        agent_id = STEADY_AGENTS[number % len(STEADY_AGENTS)]
        return "beat", agent_id, heartbeat(client, agent_id, cpu=float(number % 50))

    def succeeded(self, kind: str, since: float) -> bool:
        with self._lock:
            return any(a.kind == kind and a.status < 300 and a.at > since for a in self.answers)


def test_postgresql_down_under_load_is_503_and_nothing_acknowledged_is_lost(
    cluster: Cluster, tmp_path: Path
) -> None:
    server = start_server(
        tmp_path / "worpen.db",
        {
            "WORPEN_DATABASE_URL": cluster.create_database("outage"),
            "WORPEN_DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
            "WORPEN_DATABASE_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
            "WORPEN_DOCKER_HOSTS": "none",
            "WORPEN_AGENT_TTL": "3600",
            "WORPEN_FLUSH_INTERVAL": "0.2",
            # The admin key stays cached: the requests reach the writes the outage is about.
            "WORPEN_KEY_CACHE_SECONDS": "3600",
        },
    )
    try:
        key = server.initial_admin_key()
        with server.client(key) as admin:
            for agent_id in STEADY_AGENTS:
                assert heartbeat(admin, agent_id).status_code == 202

        with Load(server, key) as load:
            wait_for(lambda: load.succeeded("register", 0.0), "the first registrations")
            time.sleep(1.0)
            cluster.stop()
            down = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            cluster.start()
            up = time.monotonic()
            for kind in ("register", "key"):
                wait_for(
                    lambda kind=kind: load.succeeded(kind, up), f"a {kind} acknowledged after the restart"
                )
            time.sleep(1.0)
        answers = load.answers

        assert server.process.poll() is None, "the same server throughout"
        with server.client(key) as admin:
            registered = [a.subject for a in answers if a.kind == "register" and a.status == 202]
            missing = [
                agent_id
                for agent_id in registered
                if admin.get(f"/api/v1/agents/{agent_id}").status_code != 200
            ]
            keys = {listed["id"] for listed in admin.get("/api/v1/apikeys").json()}
            final = (heartbeat(admin, "after-the-outage"), admin.get("/ready"))
    finally:
        server.stop()

    during = [a for a in answers if down < a.at < up]
    assert [a for a in answers if a.status not in (200, 201, 202, 503)] == []
    assert [a for a in answers if a.status == 503 and not a.detail.startswith("database unavailable")] == []
    assert max(a.seconds for a in answers) < LONGEST_ANSWER
    assert any(a.status == 503 and a.kind == "register" for a in during), "the outage was felt"
    assert missing == [], "acknowledged registrations lost"
    assert {a.subject for a in answers if a.kind == "key" and a.status == 201} <= keys
    assert [response.status_code for response in final] == [202, 200]
