"""Engine events as domain events, an engine that goes away and comes back, the terminal WebSocket and
the audit trail, the limits on open terminals and stalled pulls, against the real local engine."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.integration.docker_support import (
    ENGINE_URL,
    SESSION,
    TEST_IMAGE,
    Containers,
    EngineProxy,
    sse_events,
    wait_for,
)
from tests.integration.registry import LocalRegistry
from tests.integration.support import FLAKY_SOCKET, Keys, WorpenServer, start_server

pytestmark = pytest.mark.integration


def follow_events(client: httpx.Client, **params: Any) -> Any:
    return client.stream("GET", "/api/v1/events", params={"follow": "true", **params})


def next_event(
    events: Iterator[tuple[str, dict[str, Any]]], wanted: str, container_id: str
) -> dict[str, Any]:
    for kind, data in events:
        if kind == wanted and data.get("containerId") == container_id:
            return data
    raise AssertionError(f"the stream ended before {wanted}")


def test_a_killed_container_is_published_as_died_with_exit_code_137(
    admin: httpx.Client, containers: Containers
) -> None:
    with follow_events(admin) as response:
        assert response.status_code == 200
        events = sse_events(response)
        container = containers.run("sleep 600")
        started = next_event(events, "ContainerStarted", str(container.id))
        container.kill()
        died = next_event(events, "ContainerDied", str(container.id))

    assert started["node"] == "local"
    assert started["name"] == container.name
    assert died["exitCode"] == 137
    assert died["image"] == "worpen-test/busybox:1"
    recent = admin.get("/api/v1/events", params={"after": started["seq"] - 1}).json()
    assert {"ContainerStarted", "ContainerDied"} <= {event["type"] for event in recent}


def test_health_changes_oom_and_removal_are_published(admin: httpx.Client, containers: Containers) -> None:
    with follow_events(admin) as response:
        events = sse_events(response)
        container = containers.run(
            "sleep 600", healthcheck={"test": ["CMD", "true"], "interval": 200_000_000}
        )
        healthy = next_event(events, "ContainerHealthChanged", str(container.id))
        admin.delete(f"/api/v1/containers/{container.id}", params={"force": "true"})
        removed = next_event(events, "ContainerRemoved", str(container.id))

    assert healthy["health"] == "HEALTHY"
    assert removed["name"] == container.name


def test_a_reconnecting_reader_resumes_after_the_last_event_it_saw(
    admin: httpx.Client, containers: Containers
) -> None:
    with follow_events(admin) as response:
        events = sse_events(response)
        first = containers.run("sleep 600")
        seen = next_event(events, "ContainerStarted", str(first.id))
    missed = containers.run("sleep 600")  # while nobody follows
    wait_for(
        lambda: any(e.get("containerId") == missed.id for e in admin.get("/api/v1/events").json()),
        "the missed start to be published",
    )

    with admin.stream(
        "GET", "/api/v1/events", params={"follow": "true"}, headers={"Last-Event-ID": str(seen["seq"])}
    ) as response:
        resumed = next_event(sse_events(response), "ContainerStarted", str(missed.id))

    assert resumed["seq"] > seen["seq"]


def test_an_engine_that_goes_away_is_marked_unavailable_and_resumes_where_it_left_off(
    flaky_server: WorpenServer, containers: Containers
) -> None:
    proxy = EngineProxy(Path(FLAKY_SOCKET))
    with flaky_server.client(flaky_server.initial_admin_key()) as client:

        def engine_state() -> str:
            [engine] = client.get("/api/v1/docker/engines").json()
            return str(engine["state"])

        try:
            proxy.start()
            wait_for(lambda: engine_state() == "AVAILABLE", "the engine to be reached")
            assert client.get("/api/v1/containers").status_code == 200

            proxy.stop()
            wait_for(lambda: engine_state() == "UNAVAILABLE", "the engine to be marked unavailable")
            down = client.get("/api/v1/containers")
            assert down.status_code == 200
            assert down.headers["X-Unavailable-Nodes"] == "flaky"
            refused = client.get("/api/v1/containers", params={"node": "flaky"})
            assert refused.status_code == 503
            assert "flaky" in refused.json()["detail"]
            assert client.post("/api/v1/containers/anything/start").status_code == 503
            after = client.get("/api/v1/events").json()[-1]["seq"]
            started_while_away = containers.run("sleep 600")

            proxy.start()
            wait_for(lambda: engine_state() == "AVAILABLE", "the engine to be reached again")
            events = wait_for(
                lambda: [
                    e
                    for e in client.get("/api/v1/events", params={"after": after}).json()
                    if e.get("containerId") == started_while_away.id
                ],
                "the start that happened while the engine was away",
            )
        finally:
            proxy.stop()

    assert [e["type"] for e in events] == ["ContainerStarted"]
    kinds = [e["type"] for e in client_events(flaky_server)]
    assert kinds.count("EngineUnavailable") >= 1
    assert kinds.index("EngineUnavailable") < len(kinds) - 1 - kinds[::-1].index("EngineAvailable")


def client_events(server: WorpenServer) -> list[dict[str, Any]]:
    with server.client(server.initial_admin_key()) as client:
        events: list[dict[str, Any]] = client.get("/api/v1/events").json()
        return events


def terminal(server: WorpenServer, path: str, key: str | None = None, **options: Any) -> ClientConnection:
    query = f"{'&' if '?' in path else '?'}access_token={key}" if key else ""
    connection: ClientConnection = connect(
        f"ws://127.0.0.1:{server.port}{path}{query}", open_timeout=30, **options
    )
    return connection


def output_until(ws: ClientConnection, wanted: str) -> str:
    seen = ""
    deadline = time.monotonic() + 30
    while wanted not in seen:
        assert time.monotonic() < deadline, f"no {wanted!r} in {seen!r}"
        message = json.loads(ws.recv(timeout=30))
        assert message["type"] == "output", message
        seen += message["data"]
    return seen


def test_a_terminal_runs_commands_in_the_container(
    fleet_server: WorpenServer, keys: Keys, admin: httpx.Client, containers: Containers
) -> None:
    container = containers.run("sleep 600")
    path = f"/api/v1/terminal/container/{container.name}"
    with terminal(
        fleet_server, path, subprotocols=["worpen.terminal.v1", f"worpen.bearer.{keys.operator.secret}"]
    ) as ws:
        assert ws.subprotocol == "worpen.terminal.v1"
        connected = json.loads(ws.recv(timeout=30))
        assert connected["type"] == "connected"
        sessions = admin.get("/api/v1/terminal/sessions").json()
        [mine] = [s for s in sessions if s["sessionId"] == connected["session_id"]]
        assert mine["containerId"] == container.id
        assert mine["actor"] == "operator"

        ws.send("echo hi")
        assert "\r\nhi\r\n" in output_until(ws, "\r\nhi\r\n")
        ws.send("sleep 30")
        wait_for(lambda: any("sleep 30" in " ".join(p) for p in container.top()["Processes"]), "sleep 30")
        ws.send("\x03")  # Ctrl+C interrupts it
        ws.send("echo $((40 + 2))")
        output_until(ws, "42")
        ws.send("exit")
        messages = [json.loads(message) for message in ws]  # until the server closes
    assert messages[-1] == {"type": "disconnected", "message": "the shell exited"}
    assert ws.close_code == 1000
    open_sessions = admin.get("/api/v1/terminal/sessions").json()
    assert all(s["sessionId"] != connected["session_id"] for s in open_sessions)
    audit = admin.get("/api/v1/audit", params={"action": "terminal.open", "actor": "operator"}).json()
    assert audit[0]["target"].startswith(str(container.name))
    assert audit[0]["outcome"] == "SUCCEEDED"


def test_a_terminal_key_may_come_in_the_query_and_the_origin_is_checked(
    fleet_server: WorpenServer, keys: Keys, containers: Containers
) -> None:
    container = containers.run("sleep 600")
    path = f"/api/v1/terminal/container/{container.id}"

    with terminal(fleet_server, path, keys.operator.secret, origin="http://cockpit.example") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "connected"
    with pytest.raises(InvalidStatus) as foreign:
        terminal(fleet_server, path, keys.operator.secret, origin="http://evil.example")
    with pytest.raises(InvalidStatus) as anonymous:
        terminal(fleet_server, path)
    with pytest.raises(InvalidStatus) as viewer:
        terminal(fleet_server, path, keys.viewer.secret)
    assert foreign.value.response.status_code == 403
    assert anonymous.value.response.status_code == 403
    assert viewer.value.response.status_code == 403


def test_a_terminal_on_an_unknown_container_says_so_and_closes(
    fleet_server: WorpenServer, keys: Keys
) -> None:
    with terminal(fleet_server, "/api/v1/terminal/container/wt-nobody-at-all", keys.operator.secret) as ws:
        message = json.loads(ws.recv(timeout=30))
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=30)
    assert message == {"type": "disconnected", "message": "container 'wt-nobody-at-all' not found"}
    assert ws.close_code == 4404


def test_the_audit_trail_records_who_did_what_and_how_it_ended(
    fleet_server: WorpenServer, keys: Keys, admin: httpx.Client, containers: Containers
) -> None:
    container = containers.run("sleep 600")
    with fleet_server.client(keys.operator.secret) as operator:
        assert (
            operator.post(f"/api/v1/containers/{container.id}/restart", json={"timeout": 0}).status_code
            == 200
        )
    refused = admin.delete(f"/api/v1/containers/{container.id}")
    assert refused.status_code == 409

    restarts = admin.get("/api/v1/audit", params={"actor": "operator", "action": "container.restart"}).json()
    removals = admin.get("/api/v1/audit", params={"action": "container.remove"}).json()

    restart = next(entry for entry in restarts if str(container.id)[:12] in entry["target"])
    assert restart["outcome"] == "SUCCEEDED"
    assert restart["node"] == "local"
    assert restart["actorKeyId"] == keys.operator.id
    assert restart["error"] is None
    assert restart["finishedAt"] >= restart["at"]
    removal = next(entry for entry in removals if str(container.id)[:12] in entry["target"])
    assert removal["outcome"] == "FAILED"
    assert "running container" in removal["error"]
    since = admin.get("/api/v1/audit", params={"since": removal["at"], "action": "container.remove"}).json()
    assert removal["id"] in {entry["id"] for entry in since}
    assert admin.get("/api/v1/audit", params={"since": "yesterday"}).status_code == 422


CONTAINER = "/api/v1/containers/wt-nobody-at-all"
ROLE_ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/api/v1/containers", None, "viewer"),
    ("GET", CONTAINER, None, "viewer"),
    ("GET", f"{CONTAINER}/logs", None, "viewer"),
    ("GET", "/api/v1/images", None, "viewer"),
    ("GET", "/api/v1/docker/engines", None, "viewer"),
    ("GET", "/api/v1/events", None, "viewer"),
    ("POST", f"{CONTAINER}/start", None, "operator"),
    ("POST", f"{CONTAINER}/stop", {"timeout": 1}, "operator"),
    ("POST", f"{CONTAINER}/restart", {"timeout": 1}, "operator"),
    ("POST", "/api/v1/images/pull", {"image": "127.0.0.1:9/nothing:1"}, "operator"),
    ("GET", "/api/v1/terminal/sessions", None, "operator"),
    ("DELETE", CONTAINER, None, "admin"),
    ("POST", "/api/v1/docker/prune", {"dryRun": True}, "admin"),
    ("GET", "/api/v1/audit", None, "admin"),
]
RANK = {"viewer": 0, "operator": 1, "admin": 2}


@pytest.mark.parametrize(("method", "path", "body", "least"), ROLE_ROUTES)
def test_roles_decide_who_may_call_each_docker_route(
    fleet_server: WorpenServer, keys: Keys, method: str, path: str, body: dict[str, Any] | None, least: str
) -> None:
    secrets = {"viewer": keys.viewer.secret, "operator": keys.operator.secret, "admin": keys.admin}
    for role, secret in secrets.items():
        with fleet_server.client(secret) as client:
            response = client.request(method, path, json=body)
        if RANK[role] < RANK[least]:
            assert response.status_code == 403, (role, response.text)
        else:
            assert response.status_code not in (401, 403), (role, response.text)
    with fleet_server.client("wpn_not-a-key-at-all-not-a-key-at-all") as anonymous:
        assert anonymous.request(method, path, json=body).status_code == 401
    with fleet_server.client(keys.agent.secret) as agent:
        assert agent.request(method, path, json=body).status_code == 403


def test_a_stopping_server_ends_the_streams_it_serves(tmp_path: Path, containers: Containers) -> None:
    container = containers.run("while true; do echo tick; sleep 0.2; done")
    server = start_server(tmp_path / "worpen.db", {"WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL}"})
    try:
        with (
            server.client(server.initial_admin_key()) as client,
            client.stream(
                "GET", f"/api/v1/containers/{container.id}/logs", params={"follow": "true"}
            ) as response,
        ):
            events = sse_events(response)
            assert next(events)[0] == "log"
            server.stop_async()
            ended = next(data for event, data in events if event == "end")
        assert ended == {"reason": "Worpen is shutting down"}
        assert server.wait_for_exit() == 0
    finally:
        server.stop()


def test_a_key_in_the_query_is_taken_only_where_a_browser_cannot_send_headers(
    fleet_server: WorpenServer, keys: Keys
) -> None:
    with fleet_server.client() as anonymous:
        events = anonymous.get("/api/v1/events", params={"access_token": keys.viewer.secret})
        logs = anonymous.get(
            "/api/v1/containers/wt-nobody-at-all/logs", params={"access_token": keys.viewer.secret}
        )
        agents = anonymous.get("/api/v1/agents", params={"access_token": keys.viewer.secret})
        containers = anonymous.get("/api/v1/containers", params={"access_token": keys.viewer.secret})

    assert events.status_code == 200
    assert logs.status_code == 404  # authenticated; the container does not exist
    assert agents.status_code == 401
    assert containers.status_code == 401


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorpenServer]:
    """One terminal session per key and two in all; a pull with no progress for a second is abandoned."""
    server = start_server(
        tmp_path_factory.mktemp("limited") / "worpen.db",
        {
            "WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL}",
            "WORPEN_TERMINAL_SESSIONS_PER_KEY": "1",
            "WORPEN_TERMINAL_SESSIONS_MAX": "2",
            "WORPEN_PULL_STALL_TIMEOUT": "1",
        },
    )
    yield server
    server.stop()


def refused_terminal(ws: ClientConnection) -> str:
    """The message of a terminal the server refused, once it has closed the connection."""
    message = json.loads(ws.recv(timeout=30))
    with pytest.raises(ConnectionClosedError):
        ws.recv(timeout=30)
    assert message["type"] == "disconnected", message
    return str(message["message"])


def test_terminal_sessions_are_capped_per_key_and_in_all(
    limited_server: WorpenServer, containers: Containers
) -> None:
    container = containers.run("sleep 600")
    path = f"/api/v1/terminal/container/{container.id}"
    admin_key = limited_server.initial_admin_key()
    with limited_server.client(admin_key) as admin:
        ops, ci = (
            admin.post("/api/v1/apikeys", json={"name": name, "role": "operator"}).json()["key"]
            for name in ("ops", "ci")
        )

        with terminal(limited_server, path, ops) as first:
            assert json.loads(first.recv(timeout=30))["type"] == "connected"
            with terminal(limited_server, path, ops) as again:
                beyond_key = refused_terminal(again)
            with terminal(limited_server, path, ci) as second:
                assert json.loads(second.recv(timeout=30))["type"] == "connected"
                with terminal(limited_server, path, admin_key) as third:
                    beyond_total = refused_terminal(third)
        wait_for(lambda: admin.get("/api/v1/terminal/sessions").json() == [], "the sessions to close")
        with terminal(limited_server, path, ops) as reopened:
            assert json.loads(reopened.recv(timeout=30))["type"] == "connected"

    assert again.close_code == 4429
    assert beyond_key == "terminal sessions of this key: 1 open, the most it may have; close one first"
    assert third.close_code == 4429
    assert beyond_total == "terminal sessions: 2 open, the most this server allows; try again when one closes"


def test_a_pull_that_stalls_is_abandoned_with_504_and_audited_as_failed(
    limited_server: WorpenServer, docker_client: docker.DockerClient
) -> None:
    repository = f"worpen-test/stalled-{SESSION}"
    with (
        LocalRegistry(docker_client, TEST_IMAGE, repository, "1", stall=True) as registry,
        limited_server.client(limited_server.initial_admin_key()) as admin,
    ):
        try:
            with admin.stream(
                "POST",
                "/api/v1/images/pull",
                json={"image": registry.image},
                headers={"Accept": "text/event-stream"},
            ) as response:
                assert response.status_code == 200, response.read()
                events = list(sse_events(response))
            as_json = admin.post("/api/v1/images/pull", json={"image": registry.image})
            audit = admin.get("/api/v1/audit", params={"action": "image.pull"}).json()
        finally:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(registry.image)

    stalled = f"the pull of {registry.image!r} on node local stalled: no progress for 1 s"
    assert {kind for kind, _ in events[:-1]} == {"progress"}, events
    assert events[-1] == ("error", {"detail": stalled})
    assert as_json.status_code == 504, as_json.text
    assert as_json.json() == {"status": 504, "code": "timed_out", "detail": stalled, "field": None}
    outcomes = [(entry["outcome"], entry["error"]) for entry in audit if entry["target"] == registry.image]
    assert outcomes == [("FAILED", stalled), ("FAILED", stalled)]
