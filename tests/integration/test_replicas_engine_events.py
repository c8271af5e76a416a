"""A configured Docker engine's events are published once across a change of publisher: two replicas on one
PostgreSQL database, the leader killed (-9) and a container dying before the other replica takes over; and
one server (SQLite) stopped while a container dies and started again. The death reaches the journal once,
and a rule on it fires once."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.docker_support import ENGINE_URL, Containers, wait_for
from tests.integration.replica_support import replicas
from tests.integration.support import WorpenServer, launch_server

pytestmark = pytest.mark.integration

LEASE = 12.0
"""Long enough that the container surely dies before the other replica takes the lease over."""
ENGINE = {"WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL}"}
SETTINGS = {**ENGINE, "WORPEN_LEASE_SECONDS": str(LEASE), "WORPEN_AUTOMATION_TICK_SECONDS": "0.2"}


def leads(server: WorpenServer, key: str) -> bool:
    with server.client(key) as client:
        return "worpen_leader 1.0" in client.get("/metrics").text


def deaths(server: WorpenServer, key: str, container_id: str) -> list[dict[str, Any]]:
    """The ContainerDied events of `container_id` in the journal."""
    with server.client(key) as client:
        answer = client.get("/api/v1/events", params={"types": "ContainerDied", "limit": 1000})
    assert answer.status_code == 200, answer.text
    return [event for event in answer.json() if event.get("containerId") == container_id]


def runs(server: WorpenServer, key: str, rule: str) -> list[dict[str, Any]]:
    with server.client(key) as client:
        return list(client.get("/api/v1/automation/runs", params={"rule": rule}).json())


def create_rule(server: WorpenServer, key: str, container_name: str) -> str:
    """A rule that logs when the container named `container_name` dies; its id."""
    with server.client(key) as client:
        created = client.post(
            "/api/v1/automation/rules",
            json={
                "name": f"died {container_name}",
                "trigger": "CONTAINER_DIED",
                "targetService": container_name,
                "script": 'log.info("died: " + service)',
            },
        )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def published_once(
    server: WorpenServer, key: str, containers: Containers, container_id: str
) -> dict[str, Any]:
    """The one ContainerDied of `container_id`: waited for, then checked again once a later container's
    death was published after it (the engine's events are published in their order, so whatever would be
    published twice would be by then)."""
    wait_for(lambda: deaths(server, key, container_id), "the death in the journal", 60)
    later = containers.run("exit 0")
    wait_for(lambda: deaths(server, key, str(later.id)), "a later death in the journal", 60)
    [death] = deaths(server, key, container_id)
    return death


def test_a_container_dying_while_the_leader_is_killed_is_published_once_by_the_next(
    tmp_path: Path, containers: Containers
) -> None:
    with replicas(tmp_path, 2, SETTINGS) as (a, b):
        key = a.initial_admin_key()
        wait_for(lambda: leads(a, key), "a leading")
        name = f"wt-died-{uuid.uuid4().hex[:8]}"
        rule = create_rule(a, key, name)
        seen = containers.run("exit 0")  # published by a while it leads
        wait_for(lambda: deaths(a, key, str(seen.id)), "a publishing the engine's events")

        a.stop(signal.SIGKILL)
        dying = containers.run("exit 3", name=name)
        assert dying.wait()["StatusCode"] == 3
        assert not leads(b, key), "the container died before b took over"

        wait_for(lambda: leads(b, key), "b leading after a was killed", 60)
        death = published_once(b, key, containers, str(dying.id))
        assert death["exitCode"] == 3
        assert len(deaths(b, key, str(seen.id))) == 1, "what a published is not published again"
        wait_for(lambda: runs(b, key, rule), "the rule's run", 60)
        time.sleep(6)  # long enough for a second firing to show (the rules tick every 0.2 s)
        assert [run["eventId"] for run in runs(b, key, rule)] == [death["seq"]]


def test_a_container_dying_while_the_server_is_down_is_published_once_at_start(
    tmp_path: Path, containers: Containers
) -> None:
    database = tmp_path / "worpen.db"
    server = launch_server(database, ENGINE)
    server.wait_until_healthy()
    key = server.initial_admin_key()
    seen = containers.run("exit 0")
    wait_for(lambda: deaths(server, key, str(seen.id)), "the server publishing the engine's events")
    assert server.stop() == 0

    dying = containers.run("exit 3")
    assert dying.wait()["StatusCode"] == 3

    restarted = launch_server(database, ENGINE)
    try:
        restarted.wait_until_healthy()
        death = published_once(restarted, key, containers, str(dying.id))
        assert death["exitCode"] == 3
        assert len(deaths(restarted, key, str(seen.id))) == 1, "what was published is not published again"
    finally:
        restarted.stop()
