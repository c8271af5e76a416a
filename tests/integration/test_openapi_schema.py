"""The OpenAPI schema tells the truth: schemathesis runs every operation of /schema/openapi.json against a
real server with every check, a fixed seed and a bounded number of cases (schemathesis.toml), and must
find nothing that schemathesis-baseline.json does not accept with its reason. Then focused checks of what
it found once.

Destructive requests only ever reach what the test owns: schemathesis_hooks.py points them at the test's
containers, its registry on loopback and dry-run prunes, and the server's engine is a proxy that drops any
prune it is asked for (so a gap in the hooks fails this test instead of pruning other tests' containers).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.integration.docker_support import SESSION, TEST_IMAGE, Containers, EngineProxy, wait_for
from tests.integration.registry import LocalRegistry
from tests.integration.support import GUARDED_SOCKET, WorpenServer, base_env
from worpen_core.containers.service import REFERENCE_PATTERN

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
CONFIG = HERE / "schemathesis.toml"
HOOKS = HERE / "schemathesis_hooks.py"
BASELINE = HERE / "schemathesis-baseline.json"
RUN_DEADLINE_SECONDS = 600
"""Bounds a hang of the whole run; the budget itself is the configured number of cases."""


@pytest.fixture
def guarded_engine() -> Iterator[EngineProxy]:
    proxy = EngineProxy(GUARDED_SOCKET, refused=(b"/prune",))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _available(client: httpx.Client) -> bool:
    return all(engine["state"] == "AVAILABLE" for engine in client.get("/api/v1/docker/engines").json())


def test_every_operation_keeps_to_the_schema(
    fuzz_server: WorpenServer,
    guarded_engine: EngineProxy,
    containers: Containers,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    accepted = json.loads(BASELINE.read_text())["entries"]
    assert all(entry.get("reason") for entry in accepted), "every accepted failure needs a reason"
    key = fuzz_server.initial_admin_key()
    with fuzz_server.client(key) as client:
        wait_for(lambda: _available(client), "the engine behind the guard")
        [own_key] = [k for k in client.get("/api/v1/apikeys").json() if key.startswith(k["prefix"])]
    lifecycle = containers.run("trap 'exit 0' TERM; while true; do echo tick; sleep 1 & wait $!; done")
    removable = containers.create()
    repository = f"worpen-test/fuzzed-{SESSION}"
    with LocalRegistry(docker_client, TEST_IMAGE, repository, "1") as registry:
        env = {
            **base_env(),
            "SCHEMATHESIS_HOOKS": str(HOOKS),
            "WORPEN_FUZZ_LIFECYCLE_CONTAINER": lifecycle.name or "",
            "WORPEN_FUZZ_REMOVABLE_CONTAINER": removable.name or "",
            "WORPEN_FUZZ_IMAGE": registry.image,
            "WORPEN_FUZZ_KEY_ID": own_key["id"],
        }
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(CONFIG),
            "run",
            f"{fuzz_server.url}/schema/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {key}",
            "--baseline",
            str(BASELINE),
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
            "--no-color",
        ]
        try:
            run = subprocess.run(
                command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_DEADLINE_SECONDS
            )
        finally:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(registry.image)

    assert guarded_engine.refusals == [], f"the run asked the engine to prune: {guarded_engine.refusals}"
    failures = run.stdout.partition("= FAILURES =")[2] or run.stdout
    assert run.returncode == 0, (
        f"schemathesis found what the schema does not say (junit report in {tmp_path}, server log in "
        f"{fuzz_server.log_path}):\n{failures}\n{run.stderr}"
    )


def schema(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def test_bodies_that_refuse_unknown_fields_say_so(admin: httpx.Client) -> None:
    components = schema(admin)["components"]["schemas"]

    assert components["ApiKeyIn"]["additionalProperties"] is False
    assert components["PruneIn"]["additionalProperties"] is False
    assert "additionalProperties" not in components["HeartbeatIn"]  # newer agents' fields are ignored
    refused = admin.post("/api/v1/apikeys", json={"name": "x", "role": "viewer", "colour": "red"})
    assert refused.status_code == 422, refused.text


def test_constraints_of_list_items_and_minimums_of_zero_are_in_the_schema(admin: httpx.Client) -> None:
    components = schema(admin)["components"]["schemas"]
    heartbeat = components["HeartbeatIn"]["properties"]

    assert heartbeat["peers"]["items"]["pattern"] == components["HeartbeatIn"]["properties"]["id"]["pattern"]
    assert heartbeat["peers"]["items"]["minLength"] == 1
    assert heartbeat["disk"]["anyOf"][0]["minimum"] == 0


def test_rules_the_server_checks_beyond_single_fields_are_in_the_schema(admin: httpx.Client) -> None:
    components = schema(admin)["components"]["schemas"]
    api_key = components["ApiKeyIn"]
    ip = components["HeartbeatIn"]["properties"]["ip"]["anyOf"][0]

    assert api_key["if"] == {"properties": {"role": {"const": "agent"}}}
    assert api_key["then"]["properties"]["agents"]["minItems"] == 1
    assert api_key["else"]["properties"]["agents"]["maxItems"] == 0
    assert ip["anyOf"] == [{"format": "ipv4"}, {"format": "ipv6"}]
    bound_viewer = admin.post("/api/v1/apikeys", json={"name": "x", "role": "viewer", "agents": ["bee-001"]})
    assert bound_viewer.status_code == 422, bound_viewer.text


def test_an_options_request_lists_every_method_of_its_path(admin: httpx.Client) -> None:
    keys = admin.options("/api/v1/apikeys")
    container = admin.options("/api/v1/containers/some-container")

    assert keys.status_code == 204, keys.text
    assert keys.headers["allow"] == "GET, OPTIONS, POST"
    assert container.headers["allow"] == "DELETE, GET, OPTIONS"


def test_metrics_are_prometheus_text_with_one_charset(admin: httpx.Client) -> None:
    response = admin.get("/metrics")

    assert response.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    assert list(schema(admin)["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


def test_streamed_answers_are_in_the_schema(admin: httpx.Client) -> None:
    paths = schema(admin)["paths"]

    def media_types(path: str, method: str) -> list[str]:
        return list(paths[path][method]["responses"]["200"]["content"])

    assert media_types("/api/v1/containers/{container_id}/logs", "get") == [
        "application/x-ndjson",
        "text/event-stream",
    ]
    assert media_types("/api/v1/events", "get") == ["application/json", "text/event-stream"]
    assert media_types("/api/v1/images/pull", "post") == ["application/json", "text/event-stream"]


def test_a_followed_log_is_an_event_stream_and_a_read_one_json_lines(
    admin: httpx.Client, containers: Containers
) -> None:
    container = containers.run("echo hello; sleep 600")
    logs = f"/api/v1/containers/{container.name}/logs"

    with admin.stream("GET", logs, params={"follow": "true"}) as followed:
        assert followed.status_code == 200
        assert followed.headers["content-type"].startswith("text/event-stream")
    read = admin.get(logs)
    assert read.headers["content-type"] == "application/x-ndjson"


@pytest.mark.parametrize(
    ("since", "status"),
    [
        pytest.param("2026-12-01T05:00:00Z", 200, id="rfc3339"),
        pytest.param("1764565200.5", 200, id="unix-time"),
        pytest.param("2026-12-01T05:00:00", 422, id="no-offset"),
        pytest.param("253402300800", 422, id="past-year-9999"),
        pytest.param("yesterday", 422, id="words"),
    ],
)
def test_since_is_a_date_time_with_an_offset_or_a_unix_time(
    admin: httpx.Client, since: str, status: int
) -> None:
    response = admin.get("/api/v1/audit", params={"since": since})

    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["field"] == "since"


def parameter(client: httpx.Client, path: str, method: str, name: str) -> dict[str, Any]:
    parameters = schema(client)["paths"][path][method]["parameters"]
    [found] = [p for p in parameters if p["name"] == name]
    described: dict[str, Any] = found
    return described


def test_container_references_state_the_pattern_the_server_checks(admin: httpx.Client) -> None:
    reference = parameter(admin, "/api/v1/containers/{container_id}", "get", "container_id")

    assert reference["schema"]["pattern"] == REFERENCE_PATTERN
    refused = admin.get("/api/v1/containers/-leading-dash")
    assert refused.status_code == 422, refused.text


def test_any_cursor_the_schema_allows_is_taken(admin: httpx.Client) -> None:
    cursor = parameter(admin, "/api/v1/agents", "get", "cursor")

    assert "pattern" in cursor["schema"]
    assert admin.get("/api/v1/agents", params={"cursor": "0" * 256}).status_code == 200
    assert admin.get("/api/v1/agents", params={"cursor": "_-_-"}).status_code == 200
