"""Containers and images through Worpen, against the real local Docker engine (node `local` of
`fleet_server`, two nodes of the same engine plus a dead one on `twin_server`)."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
import httpx
import pytest

from tests.integration.docker_support import (
    SESSION,
    SESSION_LABEL,
    TEST_IMAGE,
    Containers,
    sse_events,
    wait_for,
)
from tests.integration.registry import LocalRegistry
from tests.integration.support import Keys, WorpenServer

pytestmark = pytest.mark.integration

CHATTY = "i=0; while true; do i=$((i+1)); echo out$i; echo err$i >&2; sleep 0.2; done"
"""A container that writes a numbered line to stdout and to stderr five times a second."""


def ours(response: httpx.Response) -> list[dict[str, Any]]:
    """The containers of this test session in a list response."""
    assert response.status_code == 200, response.text
    return [c for c in response.json() if c["labels"].get(SESSION_LABEL) == SESSION]


def json_lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_the_list_shows_every_container_with_its_state_status_ports_and_labels(
    admin: httpx.Client, containers: Containers
) -> None:
    running = containers.run("sleep 600", ports={"80/tcp": None}, labels={"tier": "web"})
    exited = containers.run("exit 3")
    exited.wait(timeout=30)

    listed = {c["id"]: c for c in ours(admin.get("/api/v1/containers"))}

    up = listed[running.id]
    assert up["name"] == running.name
    assert up["image"] == TEST_IMAGE
    assert up["state"] == "RUNNING"
    assert str(up["status"]).startswith("Up ")
    assert up["node"] == "local"
    running.reload()
    host_port = running.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    assert up["ports"] == f"{host_port}:80"
    assert up["labels"] == {SESSION_LABEL: SESSION, "tier": "web"}
    assert up["health"] == "NONE"
    assert datetime.fromisoformat(str(up["createdAt"])) > datetime.now(UTC) - timedelta(minutes=5)
    down = listed[exited.id]
    assert down["state"] == "EXITED"
    assert str(down["status"]).startswith("Exited (3)")


def test_filters_by_state_name_and_node(admin: httpx.Client, containers: Containers) -> None:
    running = containers.run("sleep 600")
    exited = containers.run("true")
    exited.wait(timeout=30)

    only_running = {c["id"] for c in ours(admin.get("/api/v1/containers", params={"state": "RUNNING"}))}
    only_exited = {c["id"] for c in ours(admin.get("/api/v1/containers", params={"state": "EXITED"}))}
    by_name = ours(admin.get("/api/v1/containers", params={"name": str(running.name)[-8:]}))
    on_local = ours(admin.get("/api/v1/containers", params={"node": "local"}))

    assert running.id in only_running
    assert exited.id not in only_running
    assert exited.id in only_exited
    assert running.id not in only_exited
    assert [c["id"] for c in by_name] == [running.id]
    assert {running.id, exited.id} <= {c["id"] for c in on_local}
    assert admin.get("/api/v1/containers", params={"state": "running"}).status_code == 422
    assert admin.get("/api/v1/containers", params={"node": "nowhere"}).status_code == 404


def test_list_across_two_engine_connections_names_the_node_that_is_down(
    twin_server: WorpenServer, containers: Containers
) -> None:
    container = containers.run("sleep 600")
    with twin_server.client(twin_server.initial_admin_key()) as client:
        response = client.get("/api/v1/containers")
        down = client.get("/api/v1/containers", params={"node": "ghost"})
        engines = {e["node"]: e for e in client.get("/api/v1/docker/engines").json()}
        ambiguous = client.get(f"/api/v1/containers/{container.name}")
        chosen = client.get(f"/api/v1/containers/{container.name}", params={"node": "twin"})

    assert sorted(c["node"] for c in ours(response) if c["id"] == container.id) == ["local", "twin"]
    assert response.headers["X-Unavailable-Nodes"] == "ghost"
    assert down.status_code == 503, down.text
    assert "ghost" in down.json()["detail"]
    assert engines["ghost"]["state"] == "UNAVAILABLE"
    assert "ghost" in engines["ghost"]["detail"]
    assert engines["local"]["state"] == engines["twin"]["state"] == "AVAILABLE"
    assert engines["local"]["os"].startswith("linux/")
    assert engines["local"]["apiVersion"]
    assert ambiguous.status_code == 409, ambiguous.text
    assert f"local/{container.name}" in ambiguous.json()["detail"]
    assert f"twin/{container.name}" in ambiguous.json()["detail"]
    assert chosen.status_code == 200
    assert chosen.json()["node"] == "twin"
    with twin_server.client(twin_server.initial_admin_key()) as client:
        metrics = client.get("/metrics").text
    assert 'worpen_docker_engine_up{node="ghost"} 0.0' in metrics
    assert 'worpen_docker_engine_up{node="local"} 1.0' in metrics


def test_containers_are_found_by_id_unique_prefix_or_name(
    admin: httpx.Client, containers: Containers
) -> None:
    container = containers.run("sleep 600")

    full = str(container.id)
    for ref in (full, full[:12], full[:4], container.name):
        response = admin.get(f"/api/v1/containers/{ref}")
        assert response.status_code == 200, (ref, response.text)
        assert response.json()["id"] == container.id

    too_short = admin.get(f"/api/v1/containers/{full[:3]}")
    unknown = admin.get("/api/v1/containers/wt-nobody-at-all")
    invalid = admin.get("/api/v1/containers/not%20a%20name")
    assert too_short.status_code == 422, too_short.text
    assert too_short.json()["field"] == "id"
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "container 'wt-nobody-at-all' not found"
    assert invalid.status_code == 422


def test_inspect_shows_config_mounts_exit_code_and_restarts(
    admin: httpx.Client, containers: Containers
) -> None:
    container = containers.run(
        "exit 7",
        environment={"MODE": "test", "DB_PASSWORD": "hunter2"},
        working_dir="/tmp",
        volumes={"/tmp": {"bind": "/host-tmp", "mode": "ro"}},
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
    )

    def gave_up() -> bool:
        container.reload()
        return container.status == "exited" and container.attrs["RestartCount"] == 2

    wait_for(gave_up, "the container to give up after two restarts")

    detail = admin.get(f"/api/v1/containers/{container.id}").json()

    assert detail["state"] == "EXITED"
    assert detail["exitCode"] == 7
    assert detail["oomKilled"] is False
    assert detail["restartCount"] == 2
    assert detail["config"]["command"] == ["sh", "-c", "exit 7"]
    assert detail["config"]["workingDir"] == "/tmp"
    assert detail["config"]["restartPolicy"] == "on-failure:2"
    assert detail["config"]["env"]["MODE"] == "test"
    assert detail["config"]["env"]["DB_PASSWORD"] == "********"
    assert detail["mounts"] == [
        {"type": "bind", "source": "/tmp", "destination": "/host-tmp", "readWrite": False, "mode": "ro"}
    ]
    assert detail["finishedAt"] is not None
    assert detail["healthLog"] == []


def test_inspect_shows_the_health_log(admin: httpx.Client, containers: Containers) -> None:
    container = containers.run(
        "sleep 600",
        healthcheck={"test": ["CMD", "true"], "interval": 200_000_000, "start_period": 0},
    )

    detail = wait_for(
        lambda: (d := admin.get(f"/api/v1/containers/{container.id}").json())["health"] == "HEALTHY" and d,
        "the container to turn healthy",
    )
    assert detail["healthLog"][0]["exitCode"] == 0
    listed = [c for c in ours(admin.get("/api/v1/containers")) if c["id"] == container.id]
    assert listed[0]["health"] == "HEALTHY"


def test_logs_tail_streams_and_timestamps(admin: httpx.Client, containers: Containers) -> None:
    container = containers.run("for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; sleep 600")
    wait_for(lambda: b"err5" in container.logs(), "the container to log")

    path = f"/api/v1/containers/{container.name}/logs"
    everything = json_lines(admin.get(path, params={"tail": "all"}))
    tail = admin.get(path, params={"tail": 4})
    stdout = json_lines(admin.get(path, params={"stream": "stdout"}))
    stderr = json_lines(admin.get(path, params={"stream": "stderr", "timestamps": "false"}))

    assert tail.headers["content-type"].startswith("application/x-ndjson")
    assert json_lines(tail) == everything[-4:]
    assert sorted(line["line"] for line in everything) == sorted(
        [*(f"out{i}" for i in range(1, 6)), *(f"err{i}" for i in range(1, 6))]
    )
    assert all(datetime.fromisoformat(line["ts"]).year == datetime.now(UTC).year for line in everything)
    assert [(line["stream"], line["line"]) for line in stdout] == [("stdout", f"out{i}") for i in range(1, 6)]
    assert [(line["stream"], line["line"]) for line in stderr] == [("stderr", f"err{i}") for i in range(1, 6)]
    assert all(set(line) == {"stream", "line"} for line in stderr)
    assert admin.get(f"/api/v1/containers/{container.id}/logs", params={"tail": "-1"}).status_code == 422
    assert admin.get("/api/v1/containers/wt-nobody-at-all/logs").status_code == 404


def test_logs_since_leaves_out_older_lines(admin: httpx.Client, containers: Containers) -> None:
    container = containers.run("echo early; sleep 1.5; echo late; sleep 600")
    wait_for(lambda: b"late" in container.logs(), "the late line")
    first = json_lines(admin.get(f"/api/v1/containers/{container.id}/logs"))
    early_at = datetime.fromisoformat(first[0]["ts"])

    since = (early_at + timedelta(seconds=1)).isoformat()
    later = json_lines(admin.get(f"/api/v1/containers/{container.id}/logs", params={"since": since}))

    assert [line["line"] for line in later] == ["late"]


def test_follow_streams_new_lines_until_the_container_stops(
    fleet_server: WorpenServer, keys: Keys, containers: Containers
) -> None:
    # line1, then the rest once the follow is under way: however slow the request, lines 2 to 6 are
    # written after it began.
    container = containers.run(
        "echo line1; while [ ! -e /go ]; do sleep 0.1; done;"
        " for i in 2 3 4 5 6; do echo line$i; sleep 0.3; done"
    )
    wait_for(lambda: b"line1" in container.logs(), "the first line")
    seen: list[str] = []
    with (
        fleet_server.client(keys.viewer.secret) as viewer,
        viewer.stream(
            "GET", f"/api/v1/containers/{container.id}/logs", params={"follow": "true", "tail": 1}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data in sse_events(response):
            if event == "end":
                break
            assert event == "log"
            seen.append(str(data["line"]))
            if len(seen) == 1:
                assert container.exec_run(["touch", "/go"]).exit_code == 0

    assert seen == [f"line{i}" for i in range(1, 7)]  # the tail, then every line written while followed


def test_a_container_that_never_wrote_a_line_has_an_empty_log_that_can_be_followed(
    admin: httpx.Client, containers: Containers
) -> None:
    container = containers.run("while [ ! -e /go ]; do sleep 0.1; done; echo first; sleep 600")
    path = f"/api/v1/containers/{container.id}/logs"

    empty = admin.get(path)
    assert empty.status_code == 200, empty.text
    assert empty.headers["content-type"].startswith("application/x-ndjson")
    assert empty.content == b""
    assert admin.get(path, params={"tail": "all", "stream": "stderr"}).status_code == 200

    with admin.stream("GET", path, params={"follow": "true"}) as followed:
        assert followed.status_code == 200
        assert container.exec_run(["touch", "/go"]).exit_code == 0
        event, data = next(sse_events(followed))
    assert (event, data["line"]) == ("log", "first")


def test_a_client_that_leaves_a_follow_stops_it(admin: httpx.Client, containers: Containers) -> None:
    container = containers.run(CHATTY)
    for _ in range(20):  # more follows than the engine pool would have threads, were they leaked
        with admin.stream("GET", f"/api/v1/containers/{container.id}/logs", params={"follow": "true"}) as r:
            assert next(sse_events(r))[0] == "log"
    assert admin.get(f"/api/v1/containers/{container.id}/logs", params={"tail": 1}).status_code == 200


def test_lifecycle_stop_start_restart_and_remove(admin: httpx.Client, containers: Containers) -> None:
    container = containers.run("sleep 600")
    path = f"/api/v1/containers/{str(container.id)[:12]}"

    stopped = admin.post(f"{path}/stop", json={"timeout": 1})
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "EXITED"
    assert str(stopped.json()["status"]).startswith("Exited (137)")
    container.reload()
    assert container.status == "exited"

    started = admin.post(f"{path}/start")
    assert started.status_code == 200, started.text
    assert started.json()["state"] == "RUNNING"
    first_start = admin.get(path).json()["startedAt"]

    restarted = admin.post(f"{path}/restart", json={"timeout": 0})
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["state"] == "RUNNING"
    assert admin.get(path).json()["startedAt"] != first_start

    refused = admin.delete(path)
    assert refused.status_code == 409, refused.text
    assert "running container" in refused.json()["detail"]
    container.reload()
    assert container.status == "running"

    removed = admin.delete(path, params={"force": "true"})
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"id": container.id, "name": container.name, "node": "local", "removed": True}
    assert admin.get(path).status_code == 404
    with pytest.raises(docker.errors.NotFound):
        container.reload()


def test_lifecycle_input_is_validated(admin: httpx.Client, containers: Containers) -> None:
    container = containers.run("sleep 600")
    path = f"/api/v1/containers/{container.id}"

    assert admin.post(f"{path}/stop", json={"timeout": -1}).status_code == 422
    assert admin.post(f"{path}/stop", json={"timeout": "soon"}).status_code == 422
    assert admin.post(f"{path}/stop", json={"grace": 3}).status_code == 422
    assert admin.post(f"{path}/restart", content=b"{not json").status_code == 400
    assert admin.post("/api/v1/containers/wt-nobody-at-all/start").status_code == 404
    container.reload()
    assert container.status == "running"


def test_a_stopped_container_is_removed_without_force(admin: httpx.Client, containers: Containers) -> None:
    container = containers.create()
    removed = admin.delete(f"/api/v1/containers/{container.name}")
    assert removed.status_code == 200, removed.text
    with pytest.raises(docker.errors.NotFound):
        container.reload()


@pytest.mark.engine_wide  # a real prune removes every stopped container of the engine, other sessions' too
def test_prune_dry_run_then_for_real(admin: httpx.Client, containers: Containers) -> None:
    leftover = containers.create()

    planned = admin.post("/api/v1/docker/prune", json={"node": "local", "dryRun": True, "all": True})
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    assert plan["dryRun"] is True
    assert leftover.id in plan["containers"]["removed"]
    assert set(plan) == {"node", "dryRun", "containers", "images", "networks", "buildCache", "reclaimedBytes"}
    leftover.reload()  # still there

    pruned = admin.post("/api/v1/docker/prune", json={"node": "local", "dryRun": False})
    assert pruned.status_code == 200, pruned.text
    assert pruned.json()["dryRun"] is False
    assert leftover.id in pruned.json()["containers"]["removed"]
    with pytest.raises(docker.errors.NotFound):
        leftover.reload()
    assert admin.post("/api/v1/docker/prune", json={"node": "nowhere", "dryRun": True}).status_code == 404
    assert admin.post("/api/v1/docker/prune", json={"dry_run": True}).status_code == 422


def test_prune_without_an_explicit_body_removes_nothing(admin: httpx.Client, containers: Containers) -> None:
    leftover = containers.create()

    for refused in (
        admin.post("/api/v1/docker/prune"),
        admin.post("/api/v1/docker/prune", content=b""),
        admin.post("/api/v1/docker/prune", json={}),
        admin.post("/api/v1/docker/prune", json={"node": "local", "all": True}),
    ):
        assert refused.status_code == 422, refused.text
        assert "dryRun" in refused.json()["detail"], refused.text
    leftover.reload()  # still there


def test_images_are_listed_with_their_layers(admin: httpx.Client, containers: Containers) -> None:
    containers.create()
    response = admin.get("/api/v1/images", params={"node": "local"})

    assert response.status_code == 200, response.text
    name, tag = TEST_IMAGE.rsplit(":", 1)
    [image] = [i for i in response.json() if i["name"] == name and i["tag"] == tag]
    assert image["node"] == "local"
    assert image["id"].startswith("sha256:")
    assert image["totalSize"] > 1_000_000  # busybox itself
    assert image["containers"] >= 1
    instructions = [layer["instruction"] for layer in image["layers"]]
    assert any("COPY" in text or "busybox" in text for text in instructions), instructions
    assert sum(layer["size"] for layer in image["layers"]) == image["totalSize"]


def test_a_pull_from_an_unreachable_registry_is_a_clear_502(admin: httpx.Client) -> None:
    image = "127.0.0.1:9/worpen/nothing:1"
    started = time.monotonic()
    as_json = admin.post("/api/v1/images/pull", json={"image": image, "node": "local"})
    as_stream = admin.post(
        "/api/v1/images/pull", json={"image": image}, headers={"Accept": "text/event-stream"}
    )

    assert as_json.status_code == 502, as_json.text
    assert "127.0.0.1:9" in as_json.json()["detail"]
    assert as_stream.status_code == 502, as_stream.text
    assert time.monotonic() - started < 60  # a bound on a hang, not a timing target
    assert admin.post("/api/v1/images/pull", json={"image": "Not An Image!"}).status_code == 422
    audit = admin.get("/api/v1/audit", params={"action": "image.pull"}).json()
    assert audit[0]["target"] == image
    assert audit[0]["outcome"] == "FAILED"
    assert "127.0.0.1:9" in audit[0]["error"]


def test_a_pull_streams_its_progress_and_is_published_and_audited(
    admin: httpx.Client, docker_client: docker.DockerClient
) -> None:
    repository = f"worpen-test/pulled-{SESSION}"
    with LocalRegistry(docker_client, TEST_IMAGE, repository, "1") as registry:
        try:
            with admin.stream(
                "POST",
                "/api/v1/images/pull",
                json={"image": registry.image, "node": "local"},
                headers={"Accept": "text/event-stream"},
            ) as response:
                assert response.status_code == 200, response.read()
                events = list(sse_events(response))
            again = admin.post("/api/v1/images/pull", json={"image": registry.image})

            kinds = [kind for kind, _ in events]
            assert kinds[-1] == "done", events
            assert set(kinds[:-1]) == {"progress"}
            assert events[0][1]["status"] == f"Pulling from {repository}"
            done = events[-1][1]
            assert done == {"image": registry.image, "node": "local", "status": events[-2][1]["status"]}
            assert done["status"] == f"Status: Downloaded newer image for {registry.image}"
            assert again.status_code == 200, again.text
            assert again.json()["status"] == f"Status: Image is up to date for {registry.image}"
            name = f"{registry.address}/{repository}"
            listed = admin.get("/api/v1/images", params={"node": "local"}).json()
            assert [i["tag"] for i in listed if i["name"] == name] == ["1"]

            def pulls() -> list[dict[str, Any]]:
                feed = admin.get("/api/v1/events").json()
                return [e for e in feed if e["type"] == "ImagePulled" and e["image"] == registry.image]

            assert wait_for(pulls, "the pull to be published")[0]["node"] == "local"
            audit = admin.get("/api/v1/audit", params={"action": "image.pull"}).json()
            outcomes = [entry["outcome"] for entry in audit if entry["target"] == registry.image]
            assert outcomes == ["SUCCEEDED", "SUCCEEDED"]
        finally:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(registry.image)
