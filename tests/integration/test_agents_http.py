"""The HTTP side of agents on a real `worpen serve` with no agent connected over the command channel: sync's
refusals, the agent shell's refusals over a real WebSocket, and the channel fields of the agent and engine
views. What sync answers is in test_api_flows.py; the connected cases run against real agent processes in
test_agents.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.integration.support import Keys, WorpenServer, accepted, heartbeat

pytestmark = pytest.mark.integration

CHANNEL_FIELDS = {
    "connected": False,
    "connectedAt": None,
    "agentVersion": None,
    "protocol": None,
    "capabilities": None,
    "labels": None,
    "shell": False,
}
"""What the views show of an agent that only posts heartbeats."""


def agent_shell(server: WorpenServer, agent_id: str, key: str) -> ClientConnection:
    connection: ClientConnection = connect(
        f"ws://127.0.0.1:{server.port}/api/v1/terminal/agent/{agent_id}?access_token={key}",
        subprotocols=[Subprotocol("worpen.terminal.v1")],
        open_timeout=30,
    )
    return connection


def refusal(ws: ClientConnection) -> tuple[dict[str, Any], int | None]:
    """The frame a refused shell sends, and the code it closes with."""
    message: dict[str, Any] = json.loads(ws.recv(timeout=30))
    with pytest.raises(ConnectionClosedError):
        ws.recv(timeout=30)
    return message, ws.close_code


def test_sync_of_an_agent_never_seen_is_a_404(admin: httpx.Client) -> None:
    response = admin.post("/api/v1/agents/sync", json={"target": "ah-never-seen"})

    assert response.status_code == 404, response.text
    assert response.json()["detail"] == "agent 'ah-never-seen' not found"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"target": ""}, id="empty-target"),
        pytest.param({"target": "x" * 300}, id="target-too-long"),
        pytest.param({"target": ["bee-001"]}, id="target-not-a-string"),
        pytest.param({"target": "all", "timeout": 5}, id="unknown-field"),
    ],
)
def test_a_bad_sync_body_is_a_422(admin: httpx.Client, body: dict[str, object]) -> None:
    response = admin.post("/api/v1/agents/sync", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["status"] == 422


def test_a_viewer_may_neither_sync_nor_open_an_agent_shell(fleet_server: WorpenServer, keys: Keys) -> None:
    with fleet_server.client(keys.viewer.secret) as viewer:
        synced = viewer.post("/api/v1/agents/sync")
    with pytest.raises(InvalidStatus) as shell:
        agent_shell(fleet_server, "ah-rest-only", keys.viewer.secret)

    assert synced.status_code == 403, synced.text
    assert shell.value.response.status_code == 403


def test_the_shell_of_an_agent_never_seen_closes_with_4404(fleet_server: WorpenServer, keys: Keys) -> None:
    with agent_shell(fleet_server, "ah-nobody", keys.operator.secret) as ws:
        assert ws.subprotocol == "worpen.terminal.v1"
        message, code = refusal(ws)

    assert message == {"type": "disconnected", "message": "agent 'ah-nobody' not found"}
    assert code == 4404


def test_the_shell_of_an_agent_not_connected_closes_with_4503(
    fleet_server: WorpenServer, keys: Keys, admin: httpx.Client
) -> None:
    accepted(heartbeat(admin, "ah-heartbeats-only"))

    with agent_shell(fleet_server, "ah-heartbeats-only", keys.operator.secret) as ws:
        message, code = refusal(ws)

    assert message == {
        "type": "disconnected",
        "message": "node ah-heartbeats-only agent unavailable: the agent is not connected",
    }
    assert code == 4503
    sessions = admin.get("/api/v1/terminal/sessions").json()
    assert all(session["node"] != "ah-heartbeats-only" for session in sessions)


def test_an_agent_that_only_posts_heartbeats_shows_as_not_connected(admin: httpx.Client) -> None:
    accepted(heartbeat(admin, "ah-plain", version="1.2.3"))

    one = admin.get("/api/v1/agents/ah-plain").json()
    listed = {agent["id"]: agent for agent in admin.get("/api/v1/agents", params={"limit": 1000}).json()}

    assert one | CHANNEL_FIELDS == one
    assert listed["ah-plain"] | CHANNEL_FIELDS == listed["ah-plain"]
    assert one["version"] == "1.2.3"  # what it reported, kept apart from the channel's agentVersion


def test_engines_of_the_configuration_are_not_via_an_agent_and_are_listed_live(admin: httpx.Client) -> None:
    engines = admin.get("/api/v1/docker/engines").json()
    listed = admin.get("/api/v1/containers")

    assert [(e["node"], e["viaAgent"], e["labels"]) for e in engines] == [("local", False, {})]
    assert listed.status_code == 200, listed.text
    assert "X-Inventory-As-Of" not in listed.headers
