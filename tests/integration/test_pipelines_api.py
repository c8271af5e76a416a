"""The pipelines' HTTP API on a real server: definitions in JSON and YAML and the 422s that name the stage
and field, the cockpit's shape, triggers, runs, cancel of a queued run, approvals refused, secrets never
readable back (nor logged), the signed push webhook, and who may call what.

Runs here never need the engine: their stages ask for a node label no node carries, so they stay queued
(PENDING). Pipelines that really run are test_pipelines.py's."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from tests.integration.support import Keys, WorpenServer

pytestmark = pytest.mark.integration

DEFINITIONS = "/api/v1/pipelines/definitions"
RUNS = "/api/v1/pipelines/runs"
SECRETS = "/api/v1/pipelines/secrets"
WEBHOOK = "/api/v1/pipelines/webhook"
REPOSITORY = "https://git.example.invalid/team/app.git"
NOWHERE = {"pool": "nowhere"}
"""A label no node of the test server carries: a run asking for it stays queued."""
IMAGE = "worpen-test/busybox:1"


def stage(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "commands": ["echo hi"], **fields}


def definition(pipeline_id: str, *stages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "id": pipeline_id,
        "name": f"{pipeline_id} CI",
        "repository": REPOSITORY,
        "branch": "main",
        "stages": list(stages) or [stage("build")],
        **fields,
    }


def created(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(DEFINITIONS, json=body)
    assert answer.status_code == 201, answer.text
    document: dict[str, Any] = answer.json()
    return document


def refused(answer: httpx.Response, field: str, *words: str) -> dict[str, Any]:
    assert answer.status_code == 422, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == "invalid_input"
    assert body["field"] == field, body
    for word in words:
        assert word in body["detail"], body
    return body


def queued(client: httpx.Client, pipeline_id: str) -> str:
    """A run that stays PENDING (its stage asks for a label no node has)."""
    created(client, definition(pipeline_id, stage("wait", nodeSelector=NOWHERE)))
    answer = client.post("/api/v1/pipelines/trigger", json={"pipelineId": pipeline_id})
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["runId"]
    return run_id


def signed(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# Definitions


def test_a_definition_is_created_read_replaced_and_deleted_in_json(admin: httpx.Client) -> None:
    body = definition(
        "api-crud",
        stage("test", env={"MODE": "ci"}, timeoutSeconds=120),
        stage("lint", dependsOn=[]),
        stage("deploy", dependsOn=["test", "lint"], approval=True, nodeSelector={"tier": "edge"}),
        triggers={"cron": "0 3 * * *", "webhookSecret": "a-long-webhook-secret"},
        keepOnFailure=True,
    )

    document = created(admin, body)

    assert set(document) == {
        "id",
        "name",
        "repository",
        "branch",
        "stages",
        "triggers",
        "keepOnFailure",
        "createdAt",
        "updatedAt",
        "updatedBy",
    }
    assert document["triggers"] == {"cron": "0 3 * * *", "webhookSecretSet": True}
    assert "a-long-webhook-secret" not in json.dumps(document)
    assert document["keepOnFailure"] is True
    assert [(s["name"], s["dependsOn"], s["timeoutSeconds"]) for s in document["stages"]] == [
        ("test", [], 120),
        ("lint", [], 3600),
        ("deploy", ["test", "lint"], 3600),
    ]
    assert document["stages"][2]["approval"] is True
    assert document["stages"][2]["nodeSelector"] == {"tier": "edge"}
    assert document["stages"][0]["env"] == {"MODE": "ci"}
    assert admin.get(f"{DEFINITIONS}/api-crud").json() == document
    assert "api-crud" in [item["id"] for item in admin.get(DEFINITIONS).json()]

    body["name"] = "renamed"
    del body["triggers"]["webhookSecret"]
    replaced = admin.put(f"{DEFINITIONS}/api-crud", json=body)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"] == "renamed"
    assert replaced.json()["triggers"]["webhookSecretSet"] is True  # left out: kept
    assert replaced.json()["createdAt"] == document["createdAt"]
    body["triggers"]["webhookSecret"] = ""
    assert admin.put(f"{DEFINITIONS}/api-crud", json=body).json()["triggers"]["webhookSecretSet"] is False

    assert admin.delete(f"{DEFINITIONS}/api-crud").status_code == 204
    assert admin.get(f"{DEFINITIONS}/api-crud").status_code == 404
    assert admin.delete(f"{DEFINITIONS}/api-crud").status_code == 404


def test_a_definition_is_read_from_yaml_with_steps_as_a_mapping(admin: httpx.Client) -> None:
    document = """
id: api-yaml
name: yaml CI
repository: https://git.example.invalid/team/app.git
branch: main
steps:
  build:
    image: worpen-test/busybox:1
    commands:
      - echo build
  test:
    image: worpen-test/busybox:1
    commands: [echo test]
    secrets: [API_TOKEN]
triggers:
  cron: "*/5 * * * *"
"""

    for media in ("application/yaml", "application/x-yaml", "text/yaml"):
        admin.delete(f"{DEFINITIONS}/api-yaml")
        answer = admin.post(DEFINITIONS, content=document, headers={"Content-Type": media})
        assert answer.status_code == 201, answer.text

    body = answer.json()
    assert [(s["name"], s["dependsOn"]) for s in body["stages"]] == [("build", []), ("test", ["build"])]
    assert body["stages"][1]["secrets"] == ["API_TOKEN"]
    assert body["triggers"] == {"cron": "*/5 * * * *", "webhookSecretSet": False}
    changed = admin.put(
        f"{DEFINITIONS}/api-yaml",
        content=document.replace("name: yaml CI", "name: changed"),
        headers={"Content-Type": "application/yaml; charset=utf-8"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "changed"


def test_json_takes_steps_and_stages_as_a_mapping_too(admin: httpx.Client) -> None:
    body = definition("api-steps")
    del body["stages"]
    body["steps"] = {
        "one": {"image": IMAGE, "commands": ["true"]},
        "two": {"image": IMAGE, "commands": ["true"]},
    }

    document = created(admin, body)

    assert [(s["name"], s["dependsOn"]) for s in document["stages"]] == [("one", []), ("two", ["one"])]
    both = {**body, "stages": [stage("x")], "id": "api-steps-both"}
    assert admin.post(DEFINITIONS, json=both).status_code == 422


def test_yaml_that_does_not_parse_is_a_400_and_a_bad_value_in_it_names_the_field(admin: httpx.Client) -> None:
    broken = admin.post(DEFINITIONS, content="id: [unclosed", headers={"Content-Type": "application/yaml"})
    bad_image = admin.post(
        DEFINITIONS,
        content="id: api-yaml-bad\nname: x\nrepository: https://h.invalid/r.git\nbranch: main\n"
        "stages:\n  build:\n    image: NOT AN IMAGE\n    commands: [true]\n",
        headers={"Content-Type": "text/yaml"},
    )

    assert broken.status_code == 400, broken.text
    assert "YAML" in broken.json()["detail"]
    assert bad_image.status_code == 422, bad_image.text
    assert bad_image.json()["field"] == "stages[0].image"


def test_a_taken_id_is_a_409(admin: httpx.Client) -> None:
    created(admin, definition("api-taken"))

    answer = admin.post(DEFINITIONS, json=definition("api-taken"))

    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "conflict"


def test_a_changed_id_is_refused(admin: httpx.Client) -> None:
    created(admin, definition("api-fixed-id"))

    refused(admin.put(f"{DEFINITIONS}/api-fixed-id", json=definition("api-other-id")), "id", "api-fixed-id")
    assert admin.put(f"{DEFINITIONS}/api-never-made", json=definition("api-never-made")).status_code == 404


@pytest.mark.parametrize(
    ("stages", "field", "words"),
    [
        pytest.param(
            [stage("a", dependsOn=["b"]), stage("b", dependsOn=["a"])],
            "stages[1].dependsOn",
            ["cycle"],
            id="cycle",
        ),
        pytest.param(
            [stage("a"), stage("b", dependsOn=["ghost"])],
            "stages[1].dependsOn",
            ["'b'", "'ghost'"],
            id="unknown",
        ),
        pytest.param([stage("a"), stage("a")], "stages[1].name", ["'a'", "same name"], id="duplicate"),
        pytest.param([stage("a"), stage("b", image="Not An Image")], "stages[1].image", [], id="image"),
        pytest.param(
            [stage("a", privileged=True)], "stages[0].privileged", ["never run privileged"], id="privileged"
        ),
        pytest.param(
            [stage("a"), stage("b", volumes=["/etc:/host-etc"])],
            "stages[1].volumes",
            ["never mount host paths"],
            id="volumes",
        ),
        pytest.param(
            [stage("a", binds=["/var/run/docker.sock:/var/run/docker.sock"])],
            "stages[0].binds",
            ["Docker socket"],
            id="docker-socket",
        ),
        pytest.param([stage("a", mounts=[{"source": "/"}])], "stages[0].mounts", ["host paths"], id="mounts"),
        pytest.param([stage("a", devices=["/dev/kvm"])], "stages[0].devices", ["privileged"], id="devices"),
        pytest.param(
            [stage("a", capAdd=["SYS_ADMIN"])], "stages[0].capAdd", ["privileged"], id="capabilities"
        ),
        pytest.param(
            [stage("a", networkMode="host")], "stages[0].networkMode", ["privileged", "host"], id="network"
        ),
        pytest.param([stage("a", pid="host")], "stages[0].pid", ["privileged", "host"], id="pid"),
        pytest.param([stage("a", commands=[])], "stages[0].commands", [], id="no-command"),
        pytest.param(
            [stage("a", env={"A": "1"}, secrets=["A"])], "stages[0].env", ["'a'", "A"], id="env-and-secret"
        ),
    ],
)
def test_an_invalid_stage_is_a_422_naming_the_stage_and_field(
    admin: httpx.Client, stages: list[dict[str, Any]], field: str, words: list[str]
) -> None:
    answer = admin.post(DEFINITIONS, json=definition("api-invalid", *stages))

    body = refused(answer, field, *words)
    assert admin.get(f"{DEFINITIONS}/api-invalid").status_code == 404, body


def test_an_unknown_field_of_a_stage_is_refused(admin: httpx.Client) -> None:
    answer = admin.post(DEFINITIONS, json=definition("api-unknown", stage("a", colour="red")))

    assert answer.status_code == 422, answer.text
    assert "colour" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"triggers": {"cron": "not a cron"}}, "triggers.cron", id="cron"),
        pytest.param({"repository": "file:///etc"}, "repository", id="file-repository"),
        pytest.param({"triggers": {"webhookSecret": "short"}}, "triggers.webhookSecret", id="short-secret"),
        pytest.param({"branch": "a..b"}, "branch", id="branch"),
    ],
)
def test_an_invalid_pipeline_field_is_a_422_naming_it(
    admin: httpx.Client, fields: dict[str, Any], field: str
) -> None:
    refused(admin.post(DEFINITIONS, json=definition("api-invalid-field", **fields)), field)


# The cockpit, triggers and runs


def test_the_cockpit_shows_a_pipeline_never_run_as_pending(admin: httpx.Client) -> None:
    created(admin, definition("api-cockpit", stage("build"), stage("test")))

    answer = admin.get("/api/v1/pipelines")

    assert answer.status_code == 200, answer.text
    [entry] = [item for item in answer.json() if item["id"] == "api-cockpit"]
    assert entry == {
        "id": "api-cockpit",
        "name": "api-cockpit CI",
        "branch": "main",
        "commit": None,
        "author": None,
        "status": "PENDING",
        "lastRun": None,
        "runId": None,
        "runNumber": None,
        "stages": [
            {"id": "build", "name": "build", "status": "PENDING", "duration": "-", "durationSeconds": None},
            {"id": "test", "name": "test", "status": "PENDING", "duration": "-", "durationSeconds": None},
        ],
    }


def test_a_trigger_queues_a_run_seen_in_the_runs_and_the_cockpit(admin: httpx.Client) -> None:
    created(admin, definition("api-trigger", stage("wait", nodeSelector=NOWHERE)))

    answer = admin.post(
        "/api/v1/pipelines/trigger",
        json={"pipelineId": "api-trigger", "branch": "feature/x", "commit": "abc1234"},
    )

    assert answer.status_code == 202, answer.text
    triggered = answer.json()
    assert set(triggered) == {"status", "pipelineId", "runId"}
    assert triggered["status"] == "TRIGGERED"
    assert triggered["pipelineId"] == "api-trigger"
    run = admin.get(f"{RUNS}/{triggered['runId']}").json()
    assert {
        "id",
        "pipelineId",
        "pipelineName",
        "number",
        "status",
        "trigger",
        "triggeredBy",
        "repository",
        "branch",
        "commit",
        "author",
        "message",
        "parentId",
        "node",
        "createdAt",
        "startedAt",
        "finishedAt",
        "durationSeconds",
        "error",
        "cancelledBy",
        "stages",
    } == set(run)
    assert (run["status"], run["trigger"], run["branch"], run["commit"], run["number"]) == (
        "PENDING",
        "MANUAL",
        "feature/x",
        "abc1234",
        1,
    )
    [wait] = run["stages"]
    assert set(wait) == {
        "name",
        "status",
        "exitCode",
        "node",
        "containerId",
        "startedAt",
        "finishedAt",
        "durationSeconds",
        "duration",
        "error",
        "decidedBy",
        "approval",
        "dependsOn",
        "image",
        "logLines",
    }
    assert (wait["name"], wait["status"], wait["duration"], wait["image"]) == ("wait", "PENDING", "-", IMAGE)
    listed = admin.get(RUNS, params={"pipeline": "api-trigger"}).json()
    assert [item["id"] for item in listed] == [run["id"]]
    assert admin.get(RUNS, params={"pipeline": "api-trigger", "before": 1}).json() == []
    assert run["id"] in [item["id"] for item in admin.get(RUNS, params={"status": "PENDING"}).json()]
    [entry] = [item for item in admin.get("/api/v1/pipelines").json() if item["id"] == "api-trigger"]
    assert (entry["runId"], entry["runNumber"], entry["commit"], entry["branch"]) == (
        run["id"],
        1,
        "abc1234",
        "feature/x",
    )
    assert entry["lastRun"] == run["createdAt"]
    admin.post(f"{RUNS}/{run['id']}/cancel")


def test_triggers_and_run_routes_answer_404_and_422_for_what_does_not_exist(admin: httpx.Client) -> None:
    assert admin.post("/api/v1/pipelines/trigger", json={"pipelineId": "api-nobody"}).status_code == 404
    assert (
        admin.post("/api/v1/pipelines/trigger", json={"pipelineId": "x", "commit": "xyz"}).status_code == 422
    )
    assert admin.get(f"{RUNS}/run_nobody").status_code == 404
    assert admin.post(f"{RUNS}/run_nobody/cancel").status_code == 404
    assert admin.post(f"{RUNS}/run_nobody/rerun").status_code == 404
    assert admin.get(f"{RUNS}/run_nobody/stages/x/logs").status_code == 404
    assert admin.get(f"{RUNS}/run_nobody/stages/x/logs/stream").status_code == 404
    assert (
        admin.get(RUNS, params={"pipeline": "x", "before": 2**63}).status_code == 422
    )  # beyond the database's


def test_a_queued_run_is_cancelled_at_once_then_cancel_is_a_409(admin: httpx.Client) -> None:
    run_id = queued(admin, "api-cancel")

    answer = admin.post(f"{RUNS}/{run_id}/cancel")

    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["status"] == "CANCELLED"
    assert run["cancelledBy"]
    assert run["finishedAt"] is not None
    assert [s["status"] for s in run["stages"]] == ["CANCELLED"]
    [entry] = [item for item in admin.get("/api/v1/pipelines").json() if item["id"] == "api-cancel"]
    assert (entry["status"], [s["status"] for s in entry["stages"]]) == ("CANCELLED", ["CANCELLED"])
    again = admin.post(f"{RUNS}/{run_id}/cancel")
    assert again.status_code == 409, again.text


def test_approving_or_declining_a_stage_that_is_not_blocked_is_a_409(admin: httpx.Client) -> None:
    run_id = queued(admin, "api-approve")

    for decision in ("approve", "decline"):
        answer = admin.post(f"{RUNS}/{run_id}/stages/wait/{decision}")
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "conflict"
    assert admin.post(f"{RUNS}/{run_id}/stages/ghost/approve").status_code == 404
    admin.post(f"{RUNS}/{run_id}/cancel")


def test_a_rerun_queues_a_child_run(admin: httpx.Client) -> None:
    run_id = queued(admin, "api-rerun")
    admin.post(f"{RUNS}/{run_id}/cancel")

    answer = admin.post(f"{RUNS}/{run_id}/rerun")

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["status"], body["parentId"], body["pipelineId"]) == ("TRIGGERED", run_id, "api-rerun")
    child = admin.get(f"{RUNS}/{body['runId']}").json()
    assert (child["parentId"], child["trigger"], child["number"]) == (run_id, "RERUN", 2)
    admin.post(f"{RUNS}/{body['runId']}/cancel")


def test_a_stage_log_reads_as_a_range_and_its_follow_ends_with_the_status(admin: httpx.Client) -> None:
    run_id = queued(admin, "api-logs")
    admin.post(f"{RUNS}/{run_id}/cancel")

    read = admin.get(f"{RUNS}/{run_id}/stages/wait/logs", params={"after": 0, "limit": 10})
    with admin.stream("GET", f"{RUNS}/{run_id}/stages/wait/logs/stream") as followed:
        assert followed.status_code == 200
        assert followed.headers["content-type"].startswith("text/event-stream")
        text = followed.read().decode()

    assert read.status_code == 200, read.text
    assert read.json() == {"lines": [], "next": 0, "status": "CANCELLED"}
    assert "event: end" in text
    assert '{"status":"CANCELLED"}' in text
    assert admin.get(f"{RUNS}/{run_id}/stages/wait/logs", params={"limit": 0}).status_code == 422
    assert admin.get(f"{RUNS}/{run_id}/stages/wait/logs", params={"limit": 10_001}).status_code == 422


# Secrets


def test_a_secret_is_written_listed_and_deleted_but_its_value_never_answered_or_logged(
    fleet_server: WorpenServer, admin: httpx.Client, keys: Keys
) -> None:
    value = "api-s3cr3t-never-shown-4711"

    first = admin.post(SECRETS, json={"name": "API_SECRET", "value": value})
    replaced = admin.post(SECRETS, json={"name": "API_SECRET", "value": value + "-2"})

    assert first.status_code == 201, first.text
    assert set(first.json()) == {"name", "createdAt", "updatedAt", "updatedBy"}
    assert replaced.status_code == 200, replaced.text
    with fleet_server.client(keys.operator.secret) as operator:
        listed = operator.get(SECRETS)
    assert listed.status_code == 200
    assert "API_SECRET" in [secret["name"] for secret in listed.json()]
    audit = admin.get("/api/v1/audit", params={"limit": 1000})
    for answer in (first, replaced, listed, audit):
        assert value not in answer.text
    assert admin.delete(f"{SECRETS}/API_SECRET").status_code == 204
    assert admin.delete(f"{SECRETS}/API_SECRET").status_code == 404
    assert "API_SECRET" not in [secret["name"] for secret in admin.get(SECRETS).json()]
    assert value not in fleet_server.log()


# The push webhook


def push(branch: str, repository: str = REPOSITORY) -> bytes:
    payload = {
        "ref": f"refs/heads/{branch}",
        "after": "0123456789abcdef0123456789abcdef01234567",
        "repository": {"clone_url": repository, "html_url": repository.removesuffix(".git")},
        "pusher": {"name": "ada", "email": "ada@example.org"},
        "sender": {"login": "ada"},
    }
    return json.dumps(payload).encode()


def test_a_signed_push_starts_a_run_and_a_bad_or_missing_signature_starts_nothing(
    fleet_server: WorpenServer, admin: httpx.Client
) -> None:
    repository = "https://git.example.invalid/team/hooked.git"
    secret = "api-webhook-secret-0123"
    created(
        admin,
        {
            **definition("api-hooked", stage("wait", nodeSelector=NOWHERE)),
            "repository": repository,
            "triggers": {"webhookSecret": secret},
        },
    )
    body = push("main", repository)

    with fleet_server.client() as forge:  # no API key
        missing = forge.post(WEBHOOK, content=body, headers={"X-GitHub-Event": "push"})
        bad = forge.post(WEBHOOK, content=body, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
        other = forge.post(
            WEBHOOK, content=push("main", repository), headers={"X-Gitea-Signature": signed(b"x", secret)}
        )
        assert admin.get(RUNS, params={"pipeline": "api-hooked"}).json() == []
        github = forge.post(
            WEBHOOK,
            content=body,
            headers={"X-Hub-Signature-256": "sha256=" + signed(body, secret), "X-GitHub-Event": "push"},
        )
        gitea = forge.post(
            WEBHOOK,
            content=body,
            headers={"X-Gitea-Signature": signed(body, secret), "X-Gitea-Event": "push"},
        )
        elsewhere = push("develop", repository)
        other_branch = forge.post(
            WEBHOOK, content=elsewhere, headers={"X-Gitea-Signature": signed(elsewhere, secret)}
        )

    for answer in (missing, bad, other):
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "unauthenticated"
    assert github.status_code == 202, github.text
    [started] = github.json()["runs"]
    assert github.json()["status"] == "TRIGGERED"
    assert started["pipelineId"] == "api-hooked"
    assert gitea.status_code == 202
    assert len(gitea.json()["runs"]) == 1
    assert other_branch.status_code == 202
    assert other_branch.json() == {"status": "TRIGGERED", "runs": []}
    run = admin.get(f"{RUNS}/{started['runId']}").json()
    assert (run["trigger"], run["triggeredBy"], run["commit"]) == (
        "WEBHOOK",
        "webhook:ada",
        "0123456789abcdef0123456789abcdef01234567",
    )
    runs = admin.get(RUNS, params={"pipeline": "api-hooked"}).json()
    assert len(runs) == 2
    for item in runs:
        admin.post(f"{RUNS}/{item['id']}/cancel")


def test_a_ping_is_answered_when_signed_and_other_events_are_ignored(
    fleet_server: WorpenServer, admin: httpx.Client
) -> None:
    repository = "https://git.example.invalid/team/pinged.git"
    secret = "api-ping-secret-0123"
    created(
        admin, {**definition("api-pinged"), "repository": repository, "triggers": {"webhookSecret": secret}}
    )
    ping = json.dumps({"zen": "Keep it simple.", "repository": {"html_url": repository}}).encode()
    issue = json.dumps({"action": "opened", "repository": {"clone_url": repository}}).encode()

    with fleet_server.client() as forge:
        pong = forge.post(
            WEBHOOK,
            content=ping,
            headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + signed(ping, secret)},
        )
        unsigned_ping = forge.post(WEBHOOK, content=ping, headers={"X-GitHub-Event": "ping"})
        ignored = forge.post(
            WEBHOOK,
            content=issue,
            headers={"X-Gitea-Event": "issues", "X-Gitea-Signature": signed(issue, secret)},
        )
        not_json = forge.post(WEBHOOK, content=b"not json", headers={"X-Gitea-Signature": "00"})
        no_repository = forge.post(WEBHOOK, content=b'{"ref": "refs/heads/main"}')

    assert pong.status_code == 200, pong.text
    assert pong.json() == {"status": "PONG"}
    assert unsigned_ping.status_code == 401
    assert ignored.status_code == 202
    assert ignored.json() == {"status": "IGNORED", "runs": []}
    assert not_json.status_code == 400
    assert "JSON" in not_json.json()["detail"]
    assert no_repository.status_code == 422
    assert no_repository.json()["field"] == "repository"
    assert admin.get(RUNS, params={"pipeline": "api-pinged"}).json() == []


# Who may call what

READ, OPERATE, ADMIN, PUBLIC = "viewer", "operator", "admin", "public"
ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", DEFINITIONS, None, READ),
    ("POST", DEFINITIONS, {}, OPERATE),
    ("GET", f"{DEFINITIONS}/api-nobody", None, READ),
    ("PUT", f"{DEFINITIONS}/api-nobody", {}, OPERATE),
    ("DELETE", f"{DEFINITIONS}/api-nobody", None, OPERATE),
    ("GET", "/api/v1/pipelines", None, READ),
    ("POST", "/api/v1/pipelines/trigger", {"pipelineId": "api-nobody"}, OPERATE),
    ("GET", RUNS, None, READ),
    ("GET", f"{RUNS}/run_nobody", None, READ),
    ("POST", f"{RUNS}/run_nobody/cancel", None, OPERATE),
    ("POST", f"{RUNS}/run_nobody/rerun", None, OPERATE),
    ("POST", f"{RUNS}/run_nobody/stages/x/approve", None, OPERATE),
    ("POST", f"{RUNS}/run_nobody/stages/x/decline", None, OPERATE),
    ("GET", f"{RUNS}/run_nobody/stages/x/logs", None, READ),
    ("GET", f"{RUNS}/run_nobody/stages/x/logs/stream", None, READ),
    ("GET", SECRETS, None, OPERATE),
    ("POST", SECRETS, {"name": "API_ROLES", "value": ""}, ADMIN),
    ("DELETE", f"{SECRETS}/API_NOBODY", None, ADMIN),
    ("POST", WEBHOOK, {"ref": "refs/heads/main"}, PUBLIC),  # 422 (no repository) whoever calls
]
ALLOWED = {
    "viewer": {READ, PUBLIC},
    "operator": {READ, OPERATE, PUBLIC},
    "admin": {READ, OPERATE, ADMIN, PUBLIC},
    "agent": {PUBLIC},
    "anonymous": {PUBLIC},
}


def test_every_pipelines_route_is_in_the_table_of_roles(admin: httpx.Client) -> None:
    paths = admin.get("/schema/openapi.json").json()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/v1/pipelines")
        for method in operations
    }
    named = {
        (
            method,
            path.replace("api-nobody", "{pipeline_id}")
            .replace("run_nobody", "{run_id}")
            .replace("API_NOBODY", "{name}"),
        )
        for method, path, _, _ in ROUTES
    }
    named = {(method, path.replace("/stages/x/", "/stages/{stage}/")) for method, path in named}

    assert routes == named


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_each_role_calls_exactly_the_pipelines_routes_it_may(
    fleet_server: WorpenServer, keys: Keys, role: str
) -> None:
    secret = {
        "viewer": keys.viewer.secret,
        "operator": keys.operator.secret,
        "agent": keys.agent.secret,
        "admin": keys.admin,
        "anonymous": None,
    }[role]

    with fleet_server.client(secret) as client:
        for method, path, body, needed in ROUTES:
            answer = (
                client.request(method, path, json=body) if body is not None else client.request(method, path)
            )
            if needed in ALLOWED[role]:
                assert answer.status_code not in (401, 403), (role, method, path, answer.text)
                assert answer.status_code < 500, (role, method, path, answer.text)
            elif role == "anonymous":
                assert answer.status_code == 401, (role, method, path, answer.text)
            else:
                assert answer.status_code == 403, (role, method, path, answer.text)
                assert answer.json()["code"] == "forbidden"


def test_a_browser_follows_a_stage_log_with_the_key_in_the_query(
    fleet_server: WorpenServer, keys: Keys
) -> None:
    with fleet_server.client(keys.admin) as admin:
        run_id = queued(admin, "api-browser")
        admin.post(f"{RUNS}/{run_id}/cancel")
    url = f"{RUNS}/{run_id}/stages/wait/logs/stream"

    with fleet_server.client() as browser:
        refused_key = browser.get(
            f"{RUNS}/{run_id}/stages/wait/logs", params={"access_token": keys.viewer.secret}
        )
        with browser.stream("GET", url, params={"access_token": keys.viewer.secret}) as followed:
            assert followed.status_code == 200
            text = followed.read().decode()

    assert refused_key.status_code == 401
    assert "event: end" in text
