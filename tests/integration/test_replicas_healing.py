"""HEALING across replicas: two `worpen serve` replicas on one PostgreSQL database and the real Docker
engine. A rule's remediation runs on the leader (a restart of a container that ignores SIGTERM, so it takes
the engine's 10 s grace) while the node's agent heartbeats to the other replica: both replicas show the
agent HEALING until the remediation ends, then ONLINE, with one AgentHealing and one AgentRecovered in the
journal. The leader killed during it: the new leader gives the node back to its heartbeats within a lease
and a bid."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.docker_support import ENGINE_URL, Containers, wait_for
from tests.integration.replica_support import replicas
from tests.integration.support import WorpenServer, heartbeat
from tests.integration.test_replicas_fleet import status, transitions
from tests.integration.test_replicas_leader import leading

pytestmark = pytest.mark.integration

NODE = "local"
"""The Docker host the remediation acts on, and the id of the agent on that node."""
SETTINGS = {
    "WORPEN_DOCKER_HOSTS": f"{NODE}={ENGINE_URL}",
    "WORPEN_AGENT_TTL": "3600",
    "WORPEN_SWEEP_INTERVAL": "0.2",
    "WORPEN_FLUSH_INTERVAL": "0.2",
    "WORPEN_AUTOMATION_TICK_SECONDS": "0.2",
}
STEADY_LEASE = 30.0
"""A lease no renewal misses on a busy machine: the remediation stays with the replica that began it."""
LEASE = 3.0
SLACK = 3.0
"""Seconds on top of what the design promises, for a busy machine."""
HEALED = ["AgentRegistered", "AgentHealing", "AgentRecovered"]
REMEDIATION_DEADLINE = 60.0
"""Seconds a restart that takes the engine's 10 s grace is given to end; a bound on a hang."""


def beat(server: WorpenServer, key: str) -> str:
    """A heartbeat of the node's agent to `server`; the status it answers."""
    with server.client(key) as client:
        response = heartbeat(client, NODE)
    assert response.status_code in (200, 202), response.text
    return str(response.json()["status"])


def read(server: WorpenServer, key: str, probe: Callable[[httpx.Client], Any]) -> Any:
    with server.client(key) as client:
        return probe(client)


def slow_remediation(server: WorpenServer, key: str, containers: Containers) -> tuple[str, Any]:
    """A rule, created through `server`, that restarts a container ignoring SIGTERM when another one
    dies; its id, and the container whose death fires it."""
    trigger = containers.run("sleep 3600")
    stubborn = containers.run("sleep 3600", stop_signal="SIGTERM")
    rule = {
        "name": "slow-heal",
        "triggerEvent": "CONTAINER_DIED",
        "targetService": trigger.name,
        "script": f'docker.restart("{stubborn.name}")',
        "backoffSeconds": 300,
    }
    with server.client(key) as client:
        created = client.post("/api/v1/automation/rules", json=rule)
    assert created.status_code == 201, created.text
    return str(created.json()["id"]), trigger


def runs(server: WorpenServer, key: str, rule: str) -> list[str]:
    with server.client(key) as client:
        found = client.get("/api/v1/automation/runs", params={"rule": rule}).json()
    return [str(run["status"]) for run in found]


def leader_and_other(servers: list[WorpenServer], key: str) -> tuple[WorpenServer, WorpenServer]:
    def elected() -> tuple[WorpenServer, WorpenServer] | None:
        first, second = servers
        if leading(first, key) and leading(second, key) is False:
            return first, second
        if leading(second, key) and leading(first, key) is False:
            return second, first
        return None

    found: tuple[WorpenServer, WorpenServer] = wait_for(elected, "one leader")
    return found


def remediation_under_way(
    servers: list[WorpenServer], containers: Containers
) -> tuple[str, WorpenServer, WorpenServer, str]:
    """A slow remediation of the node under way on the leader, the node HEALING on both replicas: the admin
    key, the leader, the other replica and the rule's id."""
    key = servers[0].initial_admin_key()
    leader, other = leader_and_other(servers, key)
    assert beat(other, key) == "ONLINE"
    rule, trigger = slow_remediation(other, key, containers)
    time.sleep(1.0)  # the leader reloads the rules each tick
    trigger.kill()
    healing_on_both(leader, other, key)
    return key, leader, other, rule


def healing_on_both(leader: WorpenServer, other: WorpenServer, key: str) -> None:
    """Heartbeats keep going to the replica that does not lead meanwhile."""

    def both() -> bool:
        beat(other, key)
        return all(read(server, key, lambda c: status(c, NODE)) == "HEALING" for server in (leader, other))

    wait_for(both, "the node HEALING on both replicas")


def test_heartbeats_to_the_other_replica_keep_the_node_healing_until_the_remediation_ends(
    tmp_path: Path, containers: Containers
) -> None:
    settings = {**SETTINGS, "WORPEN_LEASE_SECONDS": str(STEADY_LEASE)}
    with replicas(tmp_path, 2, settings) as servers:
        key, leader, other, rule = remediation_under_way(servers, containers)

        seen: list[tuple[str, str, str]] = []  # (answered to a heartbeat, shown by the leader, by the other)
        deadline = time.monotonic() + REMEDIATION_DEADLINE
        while runs(leader, key, rule) == ["RUNNING"]:
            assert time.monotonic() < deadline, "the remediation did not end"
            answered = beat(other, key)
            shown = [read(server, key, lambda c: status(c, NODE)) for server in (leader, other)]
            seen.append((answered, *shown))
            time.sleep(0.2)

        assert runs(leader, key, rule) == ["SUCCEEDED"]
        assert len(seen) >= 5, "heartbeats went to the other replica during the remediation"
        for column in range(3):  # HEALING, then ONLINE once it ended: never back and forth
            statuses = [row[column] for row in seen]
            ended = statuses.index("ONLINE") if "ONLINE" in statuses else len(statuses)
            assert set(statuses[:ended]) == {"HEALING"}, statuses
            assert set(statuses[ended:]) <= {"ONLINE"}, statuses

        def online_on_both() -> bool:
            beat(other, key)
            return all(read(server, key, lambda c: status(c, NODE)) == "ONLINE" for server in (leader, other))

        wait_for(online_on_both, "the node ONLINE on both replicas")
        for _ in range(5):  # heartbeats on both after the end change nothing more
            assert beat(other, key) == beat(leader, key) == "ONLINE"
            time.sleep(0.2)
        assert read(leader, key, lambda c: transitions(c, NODE)) == HEALED
        assert read(other, key, lambda c: transitions(c, NODE)) == HEALED


def test_a_new_leader_gives_the_node_back_to_its_heartbeats_when_the_leader_dies_mid_remediation(
    tmp_path: Path, containers: Containers
) -> None:
    settings = {**SETTINGS, "WORPEN_LEASE_SECONDS": str(LEASE)}
    with replicas(tmp_path, 2, settings) as servers:
        key, leader, other, rule = remediation_under_way(servers, containers)
        assert runs(other, key, rule) == ["RUNNING"]

        leader.stop(signal.SIGKILL)
        killed = time.monotonic()
        answered = [beat(other, key)]
        while answered[-1] == "HEALING":
            assert time.monotonic() - killed <= LEASE + LEASE / 3 + SLACK, "the node still HEALING"
            time.sleep(0.2)
            answered.append(beat(other, key))

        assert answered[-1] == "ONLINE"
        assert read(other, key, lambda c: status(c, NODE)) == "ONLINE"
        assert runs(other, key, rule) == ["INTERRUPTED"]
        for _ in range(5):
            assert beat(other, key) == "ONLINE"
            time.sleep(0.2)
        assert read(other, key, lambda c: transitions(c, NODE)) == HEALED
