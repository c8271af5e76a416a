"""worpen-agent end to end: real agent processes on loopback serve the real Docker engine to a real
`worpen serve` over their gRPC streams. Their nodes' containers are listed, started and stopped, their logs
followed and pipeline stages run through them; a shell opens on a node that allows it; agents and the
server are killed, restarted and paused, and everything recovers."""

from __future__ import annotations

import itertools
import json
import secrets
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from dulwich import porcelain
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from tests.integration.agent_support import (
    AgentProcess,
    agent_key,
    agent_view,
    launch_agent,
    wait_connected,
)
from tests.integration.docker_support import TEST_IMAGE, Containers, EngineProxy, sse_events, wait_for
from tests.integration.support import WorpenServer, start_server

pytestmark = pytest.mark.integration

TTL_SECONDS = 4
COMMAND_TIMEOUT = 3
SETTINGS = {
    "WORPEN_DOCKER_HOSTS": "none",
    "WORPEN_AGENT_TTL": str(TTL_SECONDS),
    "WORPEN_SWEEP_INTERVAL": "0.5",
    "WORPEN_HEARTBEAT_INTERVAL": "1",
    "WORPEN_AGENT_COMMAND_TIMEOUT": str(COMMAND_TIMEOUT),
    "WORPEN_PIPELINE_TICK_SECONDS": "0.2",
    "WORPEN_DOCKER_RETRY_MAX": "1",
}


def new_id(prefix: str = "bee") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repos")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, repos: Path) -> Iterator[WorpenServer]:
    settings = {**SETTINGS, "WORPEN_PIPELINE_LOCAL_REPOS": str(repos)}
    running = start_server(tmp_path_factory.mktemp("agents") / "worpen.db", settings)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def admin(server: WorpenServer) -> Iterator[httpx.Client]:
    with server.client(server.initial_admin_key()) as client:
        yield client


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agent-processes")


@pytest.fixture(scope="module")
def shell_agent(server: WorpenServer, admin: httpx.Client, workdir: Path) -> Iterator[AgentProcess]:
    """One agent that allows shells and carries labels, shared by the tests that only use it."""
    agent_id = new_id()
    agent = launch_agent(
        server,
        agent_id,
        agent_key(admin, agent_id),
        workdir,
        ["--allow-shell", "--labels", "tier=edge,gpu=false"],
    )
    try:
        wait_connected(admin, agent)
        yield agent
    finally:
        agent.stop()


def test_an_agent_registers_and_its_metrics_and_connection_show(
    admin: httpx.Client, shell_agent: AgentProcess
) -> None:
    view = wait_for(
        lambda: (v := agent_view(admin, shell_agent.agent_id)) and v.get("os") and v,
        "the agent's first heartbeat",
    )
    assert view["status"] == "ONLINE"
    assert view["connected"] is True
    assert view["labels"] == {"tier": "edge", "gpu": "false"}
    assert view["shell"] is True
    assert view["agentVersion"]
    assert 0 <= view["cpuLoad"] <= 100
    assert 0 < view["memoryLoad"] <= 100
    listed = admin.get("/api/v1/agents").json()
    assert shell_agent.agent_id in {agent["id"] for agent in listed}
    wait_for(  # stored at the next flush of the heartbeats' samples
        lambda: admin.get(f"/api/v1/agents/{shell_agent.agent_id}/telemetry").json(),
        "heartbeats over the stream stored as telemetry",
    )


def test_the_nodes_containers_are_listed_from_the_inventory_and_obey_start_and_stop(
    admin: httpx.Client, shell_agent: AgentProcess, containers: Containers
) -> None:
    node = shell_agent.agent_id
    container = containers.run("sleep 600")
    name = str(container.name)

    def listed() -> dict[str, Any] | None:
        answer = admin.get("/api/v1/containers", params={"node": node})
        return next((c for c in answer.json() if c["name"] == name), None)

    # The inventory follows the engine within about a second: a listing taken between the container's
    # creation and its start may show it CREATED.
    found = wait_for(
        lambda: (c := listed()) is not None and c["state"] == "RUNNING" and c, "the running container listed"
    )
    assert found["node"] == node
    answer = admin.get("/api/v1/containers", params={"node": node})
    as_of = answer.headers["X-Inventory-As-Of"]
    assert as_of.startswith(f"{node}=")
    assert datetime.fromisoformat(as_of.partition("=")[2].replace("Z", "+00:00"))

    stopped = admin.post(f"/api/v1/containers/{name}/stop", params={"node": node, "timeout": 1})
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "EXITED"
    container.reload()
    assert container.status == "exited", "the engine itself stopped it"
    wait_for(lambda: (c := listed()) and c["state"] == "EXITED", "the inventory kept fresh by the events")

    started = admin.post(f"/api/v1/containers/{name}/start", params={"node": node})
    assert started.status_code == 200, started.text
    container.reload()
    assert container.status == "running"
    detail = admin.get(f"/api/v1/containers/{name}", params={"node": node}).json()
    assert detail["node"] == node


def test_logs_follow_through_the_agent(
    server: WorpenServer, admin: httpx.Client, shell_agent: AgentProcess, containers: Containers
) -> None:
    container = containers.run("echo first; sleep 2; echo second; sleep 600")
    with admin.stream(
        "GET",
        f"/api/v1/containers/{container.name}/logs",
        params={"node": shell_agent.agent_id, "follow": "true", "tail": "all"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200, response.read()
        texts: list[str] = []
        for _, data in sse_events(response):
            texts.append(data["line"])
            if any("second" in text for text in texts):
                break
    assert any("first" in text for text in texts)
    assert any("second" in text for text in texts)


def test_a_pipeline_stage_runs_on_the_agents_node(
    admin: httpx.Client, shell_agent: AgentProcess, repos: Path
) -> None:
    repo = repos / new_id("repo")
    porcelain.init(str(repo))
    (repo / "hello.txt").write_text("hello from git\n")
    porcelain.add(str(repo), [str(repo / "hello.txt")])
    author = b"Ada <ada@example.org>"
    porcelain.commit(str(repo), message=b"first", author=author, committer=author)
    pipeline_id = new_id("pipe")
    definition = {
        "id": pipeline_id,
        "name": "On the agent",
        "repository": f"file://{repo}",
        "branch": "master",
        "stages": [
            {
                "name": "build",
                "image": TEST_IMAGE,
                "commands": ["cat hello.txt", "echo built on $WORPEN_STAGE"],
                "nodeSelector": {"tier": "edge"},
            }
        ],
    }
    assert admin.post("/api/v1/pipelines/definitions", json=definition).status_code == 201
    triggered = admin.post("/api/v1/pipelines/trigger", json={"pipelineId": pipeline_id})
    assert triggered.status_code == 202, triggered.text
    run_id = triggered.json()["runId"]
    run = wait_for(
        lambda: (
            (r := admin.get(f"/api/v1/pipelines/runs/{run_id}").json())["status"]
            in {"SUCCESS", "FAILED", "ERROR", "CANCELLED"}
            and r
        ),
        "the run's end",
        seconds=120,
    )
    assert run["status"] == "SUCCESS", run
    assert run["node"] == shell_agent.agent_id
    lines = admin.get(f"/api/v1/pipelines/runs/{run_id}/stages/build/logs").json()["lines"]
    texts = [line["text"] for line in lines]
    assert "hello from git" in texts
    assert "built on build" in texts


def test_the_agent_shell_runs_a_command(
    server: WorpenServer, admin: httpx.Client, shell_agent: AgentProcess
) -> None:
    with shell(server, shell_agent.agent_id, server_key(admin)) as ws:
        hello = json.loads(ws.recv(timeout=30))
        assert hello["type"] == "connected", hello
        ws.send("echo hi-from-$((40+2))")
        seen = ""
        deadline = time.monotonic() + 30
        while "hi-from-42" not in seen:
            assert time.monotonic() < deadline, seen
            message = json.loads(ws.recv(timeout=30))
            seen += message.get("data", "")
    audit = admin.get("/api/v1/audit", params={"action": "agent.shell"}).json()
    assert any(entry["target"] == f"node shell ({shell_agent.agent_id})" for entry in _entries(audit))


def _entries(answer: Any) -> list[dict[str, Any]]:
    return answer if isinstance(answer, list) else answer.get("items", [])


def server_key(admin: httpx.Client) -> str:
    key = admin.headers["Authorization"].removeprefix("Bearer ")
    return key


def shell(server: WorpenServer, agent_id: str, key: str) -> ClientConnection:
    connection: ClientConnection = connect(
        f"ws://127.0.0.1:{server.port}/api/v1/terminal/agent/{agent_id}?access_token={key}", open_timeout=30
    )
    return connection


def test_an_agent_without_allow_shell_refuses_the_shell(
    server: WorpenServer, admin: httpx.Client, workdir: Path
) -> None:
    agent_id = new_id()
    agent = launch_agent(server, agent_id, agent_key(admin, agent_id), workdir)
    try:
        wait_connected(admin, agent)
        with shell(server, agent_id, server_key(admin)) as ws:
            first = json.loads(ws.recv(timeout=30))
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=30)
        assert first["type"] == "disconnected"
        assert "--allow-shell" in first["message"]
        assert ws.close_code == 4403
    finally:
        agent.stop()


def test_sync_is_acknowledged_by_connected_agents(admin: httpx.Client, shell_agent: AgentProcess) -> None:
    answer = admin.post("/api/v1/agents/sync")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "SYNCED"
    assert body["agents"] >= 1
    assert shell_agent.agent_id not in body["missing"]
    assert body["acknowledged"] == body["agents"] - len(body["missing"])
    one = admin.post("/api/v1/agents/sync", json={"target": shell_agent.agent_id}).json()
    assert one == {**one, "agents": 1, "acknowledged": 1, "missing": []}


def test_a_key_bound_to_another_id_is_refused(
    server: WorpenServer, admin: httpx.Client, workdir: Path
) -> None:
    owner, other = new_id(), new_id()
    agent = launch_agent(server, other, agent_key(admin, owner), workdir)
    try:
        agent.wait_for_log("PERMISSION_DENIED")
        assert not (agent_view(admin, other) or {}).get("connected")
        assert admin.get("/api/v1/containers", params={"node": other}).status_code == 404
    finally:
        agent.stop()


def test_a_protocol_version_mismatch_ends_the_stream_with_a_clear_error(
    server: WorpenServer, admin: httpx.Client, workdir: Path
) -> None:
    agent_id = new_id()
    agent = launch_agent(
        server, agent_id, agent_key(admin, agent_id), workdir, env={"WORPEN_AGENT_PROTOCOL": "99"}
    )
    try:
        agent.wait_for_log("protocol version 99 is not supported")
        assert agent.process.poll() is None, "the agent keeps retrying: an upgraded server lets it in"
        view = agent_view(admin, agent_id)
        assert view is None or not view["connected"]
    finally:
        agent.stop()


def test_a_second_connection_replaces_the_first(
    server: WorpenServer, admin: httpx.Client, workdir: Path
) -> None:
    agent_id = new_id()
    key = agent_key(admin, agent_id)
    first = launch_agent(server, agent_id, key, workdir)
    second: AgentProcess | None = None
    try:
        wait_connected(admin, first)
        before = agent_view(admin, agent_id)
        assert before is not None
        second = launch_agent(server, agent_id, key, workdir)
        first.wait_for_log("replaced by a newer connection")
        first.stop()
        view = wait_for(
            lambda: (
                (v := agent_view(admin, agent_id))
                and v["connected"]
                and v["connectedAt"] != before["connectedAt"]
                and v
            ),
            "the second connection",
        )
        assert view["connected"] is True
        assert admin.post("/api/v1/agents/sync", json={"target": agent_id}).json()["acknowledged"] == 1
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_killed_and_restarted_the_agent_resumes(
    server: WorpenServer, admin: httpx.Client, workdir: Path
) -> None:
    agent_id = new_id()
    key = agent_key(admin, agent_id)
    agent = launch_agent(server, agent_id, key, workdir)
    wait_connected(admin, agent)
    agent.stop(signal.SIGKILL)
    wait_for(lambda: not (agent_view(admin, agent_id) or {}).get("connected"), "the dead agent's stream ends")
    restarted = launch_agent(server, agent_id, key, workdir)
    try:
        view = wait_connected(admin, restarted)
        assert view["connected"] is True
        assert admin.post("/api/v1/agents/sync", json={"target": agent_id}).json()["acknowledged"] == 1
    finally:
        restarted.stop()


def test_a_paused_agent_goes_offline_commands_answer_503_and_it_recovers(
    server: WorpenServer, admin: httpx.Client, workdir: Path
) -> None:
    agent_id = new_id()
    agent = launch_agent(server, agent_id, agent_key(admin, agent_id), workdir)
    try:
        wait_connected(admin, agent)
        agent.pause()
        paused = time.monotonic()
        wait_for(lambda: status_of(admin, agent_id) == "OFFLINE", "OFFLINE", seconds=TTL_SECONDS * 4)
        assert time.monotonic() - paused < TTL_SECONDS * 3
        answer = wait_for(
            lambda: (
                (a := admin.get("/api/v1/containers", params={"node": agent_id})).status_code == 503 and a
            ),
            "503 from a node whose agent is gone",
        )
        assert agent_id in answer.json()["detail"]
        agent.resume()
        wait_connected(admin, agent)
        wait_for(lambda: status_of(admin, agent_id) == "ONLINE", "ONLINE again")
    finally:
        agent.stop()


def status_of(client: httpx.Client, agent_id: str) -> str | None:
    view = agent_view(client, agent_id)
    return None if view is None else str(view["status"])


def test_a_command_past_its_deadline_answers_504(
    server: WorpenServer, admin: httpx.Client, workdir: Path, tmp_path: Path, containers: Containers
) -> None:
    container = containers.run("sleep 600")
    # The engine hangs on this container's inspect, and answers everything else.
    proxy = EngineProxy(tmp_path / "engine.sock", stalled=(f"/containers/{container.id}/json".encode(),))
    proxy.start()
    agent_id = new_id()
    agent = launch_agent(
        server, agent_id, agent_key(admin, agent_id), workdir, docker_url=f"unix://{proxy.path}"
    )
    try:
        wait_connected(admin, agent)
        started = time.monotonic()
        answer = admin.get(f"/api/v1/containers/{container.id}", params={"node": agent_id})
        assert answer.status_code == 504, answer.text
        assert agent_id in answer.json()["detail"]
        assert time.monotonic() - started < COMMAND_TIMEOUT + 10
        assert admin.get("/api/v1/containers", params={"node": agent_id}).status_code == 200, "the rest works"
    finally:
        assert agent.stop() == 0, "a hung engine call does not hold the agent's exit"
        proxy.stop()


def test_a_restarted_server_gets_the_agent_back_and_its_buffered_heartbeats_in_order(
    tmp_path: Path,
) -> None:
    database = tmp_path / "worpen.db"
    first = start_server(database, SETTINGS)
    admin_key = first.initial_admin_key()
    with first.client(admin_key) as client:
        agent_id = new_id()
        key = agent_key(client, agent_id)
    agent = launch_agent(first, agent_id, key, tmp_path / "agent")
    try:
        with first.client(admin_key) as client:
            wait_connected(client, agent)
        first.stop()
        down = time.time()
        agent.wait_for_log("retry")
        time.sleep(3)  # the agent measures heartbeats meanwhile and keeps them
        up = time.time()
        # The agent dials the address it was given: the server comes back on the same ports.
        second = start_server(database, SETTINGS, ports=(first.port, first.grpc_port))
        try:
            with second.client(admin_key) as client:
                wait_connected(client, agent)
                wait_for(
                    lambda: len(measured_between(client, agent_id, down, up)) >= 2,
                    "the heartbeats measured while the server was down",
                )
                during = measured_between(client, agent_id, down, up)
                stored = measured_between(client, agent_id, 0, time.time() + 60)
            gaps = [later - earlier for earlier, later in itertools.pairwise(during)]
            assert all(gap > 0.5 for gap in gaps), f"each kept heartbeat is its own measurement: {during}"
            # What the first server took in, it acknowledged as it stopped: the agent sends none of it again.
            assert len(set(stored)) == len(stored), f"a heartbeat stored twice: {stored}"
        finally:
            second.stop()
    finally:
        agent.stop()


def measured_between(client: httpx.Client, agent_id: str, start: float, end: float) -> list[float]:
    samples = client.get(f"/api/v1/agents/{agent_id}/telemetry", params={"limit": 1000}).json()
    times = [datetime.fromisoformat(s["at"].replace("Z", "+00:00")).timestamp() for s in samples]
    return sorted(t for t in times if start < t < end)
