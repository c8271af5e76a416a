"""Agents on any replica: two `worpen serve` replicas on one PostgreSQL database, a real `worpen-agent`
connected to replica A, and every command for its node issued on replica B — listed, stopped and started
(on the real engine), logs followed, a shell, sync — relayed by B to A; once the agent is gone, B answers
503 naming it. The relay refuses a caller without the replicas' bearer."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from websockets.sync.client import connect

from tests.integration.agent_support import AgentProcess, agent_key, agent_view, launch_agent
from tests.integration.docker_support import Containers, sse_events, wait_for
from tests.integration.replica_support import admin_clients, replicas
from tests.integration.support import WorpenServer
from worpen_proto.v1 import relay_pb2, relay_pb2_grpc

pytestmark = pytest.mark.integration

SETTINGS = {
    "WORPEN_AGENT_TTL": "4",
    "WORPEN_SWEEP_INTERVAL": "0.5",
    "WORPEN_HEARTBEAT_INTERVAL": "1",
    "WORPEN_AGENT_COMMAND_TIMEOUT": "3",
    "WORPEN_DOCKER_RETRY_MAX": "1",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorpenServer]]:
    with replicas(tmp_path_factory.mktemp("replicas-agents"), 2, SETTINGS) as servers:
        yield servers


@pytest.fixture(scope="module")
def clients(pair: list[WorpenServer]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with admin_clients(pair) as (a, b):
        yield a, b


@pytest.fixture(scope="module")
def agent(
    pair: list[WorpenServer],
    clients: tuple[httpx.Client, httpx.Client],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AgentProcess]:
    """An agent allowing shells, connected to replica A, and known as connected on replica B."""
    a, b = clients
    agent_id = f"bee-{secrets.token_hex(3)}"
    process = launch_agent(
        pair[0], agent_id, agent_key(a, agent_id), tmp_path_factory.mktemp("agent"), ["--allow-shell"]
    )
    try:
        wait_for(lambda: (agent_view(a, agent_id) or {}).get("connected"), "the agent connected to A")
        wait_for(
            lambda: b.get("/api/v1/containers", params={"node": agent_id}).status_code == 200,
            "B listing the agent's node",
        )
        yield process
    finally:
        process.stop()


def listed(client: httpx.Client, node: str, name: str) -> dict[str, Any] | None:
    answer = client.get("/api/v1/containers", params={"node": node})
    assert answer.status_code == 200, answer.text
    return next((c for c in answer.json() if c["name"] == name), None)


def test_b_shows_the_agent_connected(clients: tuple[httpx.Client, httpx.Client], agent: AgentProcess) -> None:
    a, b = clients
    on_a = agent_view(a, agent.agent_id)
    on_b = wait_for(lambda: agent_view(b, agent.agent_id), "the agent known on B")
    assert on_a is not None
    assert on_b["connected"] is True
    assert on_b["connectedAt"] == on_a["connectedAt"]
    assert on_b["shell"] is True


def test_b_lists_stops_and_starts_a_container_of_an_agent_connected_to_a(
    clients: tuple[httpx.Client, httpx.Client], agent: AgentProcess, containers: Containers
) -> None:
    _, b = clients
    node = agent.agent_id
    container = containers.run("sleep 600")
    name = str(container.name)

    found = wait_for(
        lambda: (c := listed(b, node, name)) is not None and c["state"] == "RUNNING" and c,
        "the running container listed on B",
    )
    assert found["node"] == node
    everywhere = b.get("/api/v1/containers")
    assert everywhere.status_code == 200
    assert [c["node"] for c in everywhere.json() if c["name"] == name] == [node], "listed once"
    as_of = b.get("/api/v1/containers", params={"node": node}).headers["X-Inventory-As-Of"]
    assert as_of.startswith(f"{node}=")

    stopped = b.post(f"/api/v1/containers/{name}/stop", params={"node": node, "timeout": 1})
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "EXITED"
    container.reload()
    assert container.status == "exited", "the engine itself stopped it"
    wait_for(lambda: (c := listed(b, node, name)) and c["state"] == "EXITED", "B listing it EXITED")

    started = b.post(f"/api/v1/containers/{name}/start", params={"node": node})
    assert started.status_code == 200, started.text
    container.reload()
    assert container.status == "running"
    detail = b.get(f"/api/v1/containers/{name}", params={"node": node})
    assert detail.status_code == 200, detail.text
    assert detail.json()["node"] == node
    missing = b.get("/api/v1/containers/no-such-container", params={"node": node})
    assert missing.status_code == 404, missing.text


def test_b_follows_the_logs_of_a_container_on_an_agent_connected_to_a(
    clients: tuple[httpx.Client, httpx.Client], agent: AgentProcess, containers: Containers
) -> None:
    _, b = clients
    container = containers.run("echo first; sleep 2; echo second; sleep 600")
    with b.stream(
        "GET",
        f"/api/v1/containers/{container.name}/logs",
        params={"node": agent.agent_id, "follow": "true", "tail": "all"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200, response.read()
        texts: list[str] = []
        for _, data in sse_events(response):
            texts.append(data["line"])
            if any("second" in text for text in texts):
                break
    assert any("first" in text for text in texts)


def test_b_opens_a_shell_on_the_node_of_an_agent_connected_to_a(
    pair: list[WorpenServer], clients: tuple[httpx.Client, httpx.Client], agent: AgentProcess
) -> None:
    key = pair[0].initial_admin_key()
    url = f"ws://127.0.0.1:{pair[1].port}/api/v1/terminal/agent/{agent.agent_id}?access_token={key}"
    with connect(url, open_timeout=30) as ws:
        hello = json.loads(ws.recv(timeout=30))
        assert hello["type"] == "connected", hello
        ws.send("echo relayed-$((40+2))")
        seen = ""
        deadline = time.monotonic() + 30
        while "relayed-42" not in seen:
            assert time.monotonic() < deadline, seen
            seen += json.loads(ws.recv(timeout=30)).get("data", "")


def test_sync_on_b_reaches_the_agent_connected_to_a(
    clients: tuple[httpx.Client, httpx.Client], agent: AgentProcess
) -> None:
    _, b = clients
    every = b.post("/api/v1/agents/sync")
    assert every.status_code == 200, every.text
    assert every.json()["agents"] >= 1
    assert agent.agent_id not in every.json()["missing"]
    one = b.post("/api/v1/agents/sync", json={"target": agent.agent_id}).json()
    assert one == {**one, "agents": 1, "acknowledged": 1, "missing": []}


def test_the_relay_refuses_a_caller_without_the_replicas_bearer(
    pair: list[WorpenServer], agent: AgentProcess
) -> None:
    api_key = pair[0].initial_admin_key()
    with grpc.insecure_channel(pair[0].grpc_target) as channel:
        stub = relay_pb2_grpc.AgentRelayStub(channel)
        request = relay_pb2.RelayCall(agent_id=agent.agent_id, kind="ping", params_json=b"{}")
        for metadata in ((), (("authorization", f"Bearer {api_key}"),)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Call(request, metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_once_the_agent_is_killed_b_answers_503_naming_it(
    pair: list[WorpenServer],
    clients: tuple[httpx.Client, httpx.Client],
    tmp_path: Path,
) -> None:
    a, b = clients
    agent_id = f"bee-{secrets.token_hex(3)}"
    process = launch_agent(pair[0], agent_id, agent_key(a, agent_id), tmp_path)
    try:
        wait_for(
            lambda: b.get("/api/v1/containers", params={"node": agent_id}).status_code == 200,
            "B listing the agent's node",
        )
    finally:
        process.stop()
    for path in ("/api/v1/containers", "/api/v1/containers/anything"):
        answer = wait_for(
            lambda path=path: (r := b.get(path, params={"node": agent_id})).status_code == 503 and r,
            f"503 from {path} on B once the agent is gone",
        )
        assert agent_id in answer.json()["detail"]
    listed_everywhere = b.get("/api/v1/containers")
    assert listed_everywhere.status_code == 200
    assert agent_id in listed_everywhere.headers["X-Unavailable-Nodes"]
