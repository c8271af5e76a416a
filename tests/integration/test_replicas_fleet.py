"""The fleet across replicas: two `worpen serve` replicas on one PostgreSQL database, an agent's heartbeats
landing on either. Both list the same agents with the same statuses and readings within a couple of
seconds; one agent heartbeating to both makes each transition once in the journal; the sweeper (whichever
replica leads) spares an agent whose heartbeats go to the other replica, and marks it OFFLINE once when
they stop."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.docker_support import wait_for
from tests.integration.replica_support import admin_clients, replicas
from tests.integration.support import WorpenServer, heartbeat

pytestmark = pytest.mark.integration

TTL = 3.0
SETTINGS = {
    "WORPEN_AGENT_TTL": str(int(TTL)),
    "WORPEN_SWEEP_INTERVAL": "0.2",
    "WORPEN_FLUSH_INTERVAL": "0.2",
    "WORPEN_CRITICAL_HEARTBEATS": "2",
}
TRANSITIONS = {"AgentRegistered", "AgentBecameCritical", "AgentRecovered", "AgentWentOffline", "AgentHealing"}
CONVERGED = 3.0
"""Seconds within which both replicas show the same status (refresh every sweep interval, 0.2 s)."""
READINGS_CONVERGED = 15.0
"""Seconds within which both replicas show the same readings (read back every 5 s: READINGS_EVERY)."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorpenServer]]:
    with replicas(tmp_path_factory.mktemp("replicas-fleet"), 2, SETTINGS) as servers:
        yield servers


@pytest.fixture(scope="module")
def clients(pair: list[WorpenServer]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with admin_clients(pair) as (a, b):
        yield a, b


def status(client: httpx.Client, agent_id: str) -> str | None:
    response = client.get(f"/api/v1/agents/{agent_id}")
    return str(response.json()["status"]) if response.status_code == 200 else None


def listed(client: httpx.Client, agent_id: str) -> dict[str, Any] | None:
    agents = client.get("/api/v1/agents", params={"limit": 1000}).json()
    return next((agent for agent in agents if agent["id"] == agent_id), None)


def shown_of(agent: dict[str, Any] | None) -> tuple[object, ...]:
    """What a listing shows of an agent's heartbeats: its readings, its status, what it said of itself."""
    assert agent is not None
    return (
        agent["cpuLoad"],
        agent["memoryLoad"],
        agent["status"],
        agent["name"],
        agent["ip"],
    )


def fleet_figures(client: httpx.Client) -> tuple[object, object]:
    """The dashboard's figures drawn from the fleet: nodes active, agents offline."""
    stats = client.get("/api/v1/dashboard/stats").json()
    return stats["detail"]["activeNodes"], stats["detail"]["offlineAgents"]["count"]


def transitions(client: httpx.Client, agent_id: str) -> list[str]:
    """The agent's status transitions in the journal, in order."""
    events = client.get("/api/v1/events", params={"limit": 1000}).json()
    return [
        event["type"] for event in events if event.get("agentId") == agent_id and event["type"] in TRANSITIONS
    ]


def beat(client: httpx.Client, agent_id: str, **fields: Any) -> str:
    response = heartbeat(client, agent_id, **fields)
    assert response.status_code in (200, 202), response.text
    return str(response.json()["status"])


def test_an_agent_heartbeating_to_one_replica_is_listed_the_same_on_the_other(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = clients
    agent_id = f"bee-{secrets.token_hex(4)}"

    beat(a, agent_id, name="edge one", ip="10.0.0.7")

    shown = wait_for(lambda: listed(b, agent_id), "the agent registered on A listed on B", CONVERGED)
    assert (shown["name"], shown["ip"], shown["status"]) == ("edge one", "10.0.0.7", "ONLINE")

    registered_at = shown["lastSeen"]

    def beating_to_a_shown_alike() -> bool:  # beating all along: the agent stays ONLINE past the TTL
        beat(a, agent_id, cpu=33.5, ram=44.5)
        on_a, on_b = listed(a, agent_id), listed(b, agent_id)
        return shown_of(on_a) == shown_of(on_b) and on_b is not None and on_b["lastSeen"] > registered_at

    wait_for(beating_to_a_shown_alike, "B to show the readings A received, as A does", READINGS_CONVERGED)

    assert beat(a, agent_id, status="CRITICAL") == "CRITICAL"
    wait_for(lambda: status(b, agent_id) == "CRITICAL", "B to show the agent CRITICAL", CONVERGED)
    wait_for(lambda: fleet_figures(a) == fleet_figures(b), "the dashboards to agree", CONVERGED)


def test_one_agent_heartbeating_to_both_replicas_makes_each_transition_once(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = clients
    agent_id = f"bee-{secrets.token_hex(4)}"
    readings = [10.0] * 2 + [95.0] * 6 + [10.0] * 6
    for number, cpu in enumerate(readings):
        beat((a, b)[number % 2], agent_id, cpu=cpu)
    assert status(a, agent_id) == "ONLINE"
    wait_for(lambda: status(b, agent_id) == "ONLINE", "B to agree", CONVERGED)

    # Heartbeats to one replica only, then to the other, each past the TTL: whichever replica leads (and
    # sweeps), the agent's heartbeats went to the other for longer than the TTL.
    for replica in (a, b):
        deadline = time.monotonic() + TTL + 1.5
        while time.monotonic() < deadline:
            assert beat(replica, agent_id) == "ONLINE"
            time.sleep(0.3)

    assert transitions(a, agent_id) == ["AgentRegistered", "AgentBecameCritical", "AgentRecovered"]

    # the heartbeats stop: OFFLINE once, on both replicas
    wait_for(lambda: "AgentWentOffline" in transitions(a, agent_id), "the agent OFFLINE", TTL + 5)
    time.sleep(1.0)  # both replicas have swept since
    expected = ["AgentRegistered", "AgentBecameCritical", "AgentRecovered", "AgentWentOffline"]
    assert transitions(a, agent_id) == transitions(b, agent_id) == expected
    wait_for(lambda: status(a, agent_id) == status(b, agent_id) == "OFFLINE", "both to agree", CONVERGED)
