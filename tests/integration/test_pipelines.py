"""Pipelines end to end: a real `worpen serve`, the real Docker engine and real git repositories the tests
create. Stages share a workspace, fail, run in parallel, stream their logs live with secrets masked, are
cancelled, time out, wait for approvals; runs start from the cockpit, a signed push webhook and a cron
schedule; a server killed mid-stage re-attaches or reports ERROR, never RUNNING forever; a node runs at
most its slots."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from dulwich import porcelain

from tests.integration.docker_support import ENGINE_URL, TEST_IMAGE, EngineProxy, sse_events, wait_for
from tests.integration.support import WorpenServer, start_server

pytestmark = pytest.mark.integration

DEFINITIONS = "/api/v1/pipelines/definitions"
RUNS = "/api/v1/pipelines/runs"
RUN_LABEL = "worpen.pipeline.run"
SECRET_VALUE = "s3cr3t-Hunter2-value"
WEBHOOK_SECRET = "push-webhook-secret-0123456789"
FINISHED = {"SUCCESS", "FAILED", "CANCELLED", "ERROR"}


class Repository:
    """A git repository on disk, committed to with dulwich (no git binary needed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        porcelain.init(str(path))
        self.head = ""

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def commit(self, files: dict[str, str], message: str = "change", author: str = "Ada Lovelace") -> str:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        porcelain.add(str(self.path), [str(self.path / name) for name in files])
        identity = f"{author} <ada@example.org>".encode()
        sha = porcelain.commit(str(self.path), message=message.encode(), author=identity, committer=identity)
        self.head = sha.decode() if isinstance(sha, bytes) else str(sha)
        return self.head


def settings(repos: Path, **more: str) -> dict[str, str]:
    return {
        "WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL}",
        "WORPEN_PIPELINE_LOCAL_REPOS": str(repos),
        "WORPEN_PIPELINE_TICK_SECONDS": "0.2",
        "WORPEN_PIPELINE_NODE_SLOTS": "2",
        "WORPEN_AGENT_TTL": "3600",
        **more,
    }


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repos")


@pytest.fixture(scope="module")
def pipeline_server(
    repos: Path, tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[tuple[WorpenServer, httpx.Client]]:
    server = start_server(tmp_path_factory.mktemp("pipelines") / "worpen.db", settings(repos))
    try:
        with server.client(server.initial_admin_key()) as client:
            schedule_nightly(client, Repository(repos / "nightly"))
            yield server, client
    finally:
        server.stop()
        remove_leftovers(docker_client)


def schedule_nightly(client: httpx.Client, repo: Repository) -> None:
    """A pipeline whose cron slot is the coming minute (once a day): defined as the module starts, its run
    is there by the time the cron test looks, instead of that test waiting up to a minute for a slot."""
    repo.commit({"README.md": "# nightly\n"}, message="first")
    slot = datetime.now(UTC) + timedelta(seconds=60)
    cron = f"{slot.minute} {slot.hour} * * *"
    define(client, repo, "nightly", stage("build", "echo scheduled"), triggers={"cron": cron})


@pytest.fixture
def repo(repos: Path, request: pytest.FixtureRequest) -> Repository:
    repository = Repository(repos / request.node.name)
    repository.commit({"README.md": "# demo\n", "src/hello.txt": "hello from git\n"}, message="first")
    return repository


TRIGGERED: set[str] = set()
"""Every run these tests started: what is left of them on the engine is removed, nothing else."""


def remove_leftovers(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters={"label": RUN_LABEL}):
        if container.labels.get(RUN_LABEL) in TRIGGERED:
            container.remove(force=True)
    for volume in client.volumes.list(filters={"label": RUN_LABEL}):
        if (volume.attrs.get("Labels") or {}).get(RUN_LABEL) in TRIGGERED:
            volume.remove(force=True)


def stage(name: str, *commands: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": TEST_IMAGE, "commands": list(commands), **fields}


def define(
    client: httpx.Client, repo: Repository, pipeline_id: str, *stages: dict[str, Any], **fields: Any
) -> None:
    body = {
        "id": pipeline_id,
        "name": pipeline_id.replace("-", " ").title(),
        "repository": repo.url,
        "branch": "master",
        "stages": list(stages),
        **fields,
    }
    answer = client.post(DEFINITIONS, json=body)
    assert answer.status_code == 201, answer.text


def trigger(client: httpx.Client, pipeline_id: str, **fields: str) -> str:
    answer = client.post("/api/v1/pipelines/trigger", json={"pipelineId": pipeline_id, **fields})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "TRIGGERED"
    assert body["pipelineId"] == pipeline_id
    run_id: str = body["runId"]
    TRIGGERED.add(run_id)
    return run_id


def run_of(client: httpx.Client, run_id: str) -> dict[str, Any]:
    answer = client.get(f"{RUNS}/{run_id}")
    assert answer.status_code == 200, answer.text
    run: dict[str, Any] = answer.json()
    return run


def finished(client: httpx.Client, run_id: str, seconds: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = run_of(client, run_id)
        return run if run["status"] in FINISHED else None

    run: dict[str, Any] = wait_for(done, f"run {run_id} to finish", seconds)
    return run


def stage_of(run: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(stage for stage in run["stages"] if stage["name"] == name)
    return found


def in_stage(
    client: httpx.Client, run_id: str, name: str, status: str, seconds: float = 30
) -> dict[str, Any]:
    run: dict[str, Any] = wait_for(
        lambda: (run := run_of(client, run_id)) and stage_of(run, name)["status"] == status and run,
        f"stage {name} of {run_id} to be {status}",
        seconds,
    )
    return run


def log_lines(client: httpx.Client, run_id: str, name: str) -> list[str]:
    answer = client.get(f"{RUNS}/{run_id}/stages/{name}/logs", params={"after": 0, "limit": 10000})
    assert answer.status_code == 200, answer.text
    return [line["text"] for line in answer.json()["lines"]]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_three_stage_pipeline_runs_from_git_on_the_engine_sharing_its_workspace(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository, docker_client: docker.DockerClient
) -> None:
    _, client = pipeline_server
    define(
        client,
        repo,
        "three-stages",
        stage("build", "cat src/hello.txt", "echo built-at-$WORPEN_COMMIT > artifact.txt"),
        stage("test", "cat artifact.txt", "test -f README.md"),
        stage("package", "wc -c artifact.txt"),
    )

    run_id = trigger(client, "three-stages")
    run = finished(client, run_id)

    assert run["status"] == "SUCCESS", run
    assert run["commit"] == repo.head
    assert run["author"] == "Ada Lovelace"
    assert run["trigger"] == "MANUAL"
    assert run["node"] == "local"
    assert [(s["name"], s["status"], s["exitCode"]) for s in run["stages"]] == [
        ("build", "SUCCESS", 0),
        ("test", "SUCCESS", 0),
        ("package", "SUCCESS", 0),
    ]
    assert "hello from git" in log_lines(client, run_id, "build")
    assert f"built-at-{repo.head}" in log_lines(client, run_id, "test")
    build, test = stage_of(run, "build"), stage_of(run, "test")
    assert at(build["finishedAt"]) <= at(test["startedAt"])
    # The cockpit's list shows the run as it knows runs.
    [entry] = [p for p in client.get("/api/v1/pipelines").json() if p["id"] == "three-stages"]
    assert (entry["status"], entry["commit"], entry["branch"]) == ("SUCCESS", repo.head, "master")
    assert [(s["name"], s["status"]) for s in entry["stages"]] == [
        ("build", "SUCCESS"),
        ("test", "SUCCESS"),
        ("package", "SUCCESS"),
    ]
    assert all(s["duration"].endswith("s") and s["durationSeconds"] >= 0 for s in entry["stages"])
    # Nothing of the run is left on the node.
    assert not docker_client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
    assert not docker_client.volumes.list(filters={"label": f"{RUN_LABEL}={run_id}"})


def test_a_failing_stage_stops_its_dependents_and_fails_the_run(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository
) -> None:
    _, client = pipeline_server
    define(
        client,
        repo,
        "fails",
        stage("build", "echo compiling", "exit 3", "echo never printed"),
        stage("test", "echo testing"),
        stage("docs", "echo docs", dependsOn=[]),
    )

    run = finished(client, trigger(client, "fails"))

    assert run["status"] == "FAILED"
    build, test, docs = (stage_of(run, name) for name in ("build", "test", "docs"))
    assert (build["status"], build["exitCode"]) == ("FAILED", 3)
    assert test["status"] == "SKIPPED"
    assert test["exitCode"] is None
    assert docs["status"] == "SUCCESS"  # it depends on nothing
    assert "never printed" not in log_lines(client, run["id"], "build")
    assert "compiling" in log_lines(client, run["id"], "build")


def test_independent_stages_run_at_the_same_time(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository
) -> None:
    """Each waits for a file the other writes in the shared workspace: run one after the other, the first
    would time out."""
    _, client = pipeline_server
    waits_for = "i=0; while [ ! -f {0} ]; do i=$((i+1)); [ $i -lt 300 ] || exit 9; sleep 0.1; done"
    define(
        client,
        repo,
        "parallel",
        stage(
            "left", "touch left.started", waits_for.format("right.started"), dependsOn=[], timeoutSeconds=60
        ),
        stage(
            "right", "touch right.started", waits_for.format("left.started"), dependsOn=[], timeoutSeconds=60
        ),
        stage("join", "ls left.started right.started", dependsOn=["left", "right"]),
    )

    run = finished(client, trigger(client, "parallel"))

    assert run["status"] == "SUCCESS", run
    left, right = stage_of(run, "left"), stage_of(run, "right")
    assert at(left["startedAt"]) < at(right["finishedAt"])
    assert at(right["startedAt"]) < at(left["finishedAt"])


def test_logs_stream_live_resume_without_gap_and_end_with_the_status(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository
) -> None:
    server, client = pipeline_server
    define(
        client,
        repo,
        "chatty",
        stage("talk", "i=1; while [ $i -le 30 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"),
    )
    run_id = trigger(client, "chatty")
    url = f"{RUNS}/{run_id}/stages/talk/logs/stream"
    received: list[dict[str, Any]] = []

    with server.client(client.headers["authorization"].removeprefix("Bearer ")) as follower:
        with follower.stream("GET", url, timeout=60) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event, data in sse_events(response):
                assert event == "line"
                received.append(data)
                if data["text"] == "line-10":
                    break  # the follower goes away mid-stage
        last = received[-1]["number"]
        ending: dict[str, Any] = {}
        with follower.stream("GET", url, headers={"Last-Event-ID": str(last)}, timeout=60) as response:
            for event, data in sse_events(response):
                if event == "end":
                    ending = data
                    break
                received.append(data)

    numbers = [line["number"] for line in received]
    assert numbers == list(range(1, len(numbers) + 1))  # no gap, no duplicate
    texts = [line["text"] for line in received if line["text"].startswith("line-")]
    assert texts == [f"line-{i}" for i in range(1, 31)]
    assert ending == {"status": "SUCCESS"}
    # Live: the first lines came while the stage was still printing.
    first, last_line = at(received[0]["at"]), at(received[-1]["at"])
    assert (last_line - first).total_seconds() > 2


def test_a_secret_reaches_its_stage_and_only_masked_its_log(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository
) -> None:
    server, client = pipeline_server
    answer = client.post("/api/v1/pipelines/secrets", json={"name": "DEPLOY_TOKEN", "value": SECRET_VALUE})
    assert answer.status_code in (200, 201), answer.text
    assert SECRET_VALUE not in answer.text
    define(
        client,
        repo,
        "secretive",
        stage(
            "deploy",
            'echo "token is $DEPLOY_TOKEN"',
            # Two writes, the secret cut between them.
            'printf "%s" "split:${DEPLOY_TOKEN%????????}"; sleep 0.5; '
            'printf "%s\\n" "${DEPLOY_TOKEN#????????????}"',
            'test "$DEPLOY_TOKEN" = "' + SECRET_VALUE + '" && echo same-value',
            secrets=["DEPLOY_TOKEN"],
        ),
    )

    run = finished(client, trigger(client, "secretive"))

    assert run["status"] == "SUCCESS", run
    lines = log_lines(client, run["id"], "deploy")
    assert "token is ********" in lines
    assert "split:********" in lines
    assert "same-value" in lines
    everything = json.dumps(client.get(f"{RUNS}/{run['id']}/stages/deploy/logs").json())
    assert SECRET_VALUE not in everything
    assert SECRET_VALUE[:12] not in everything
    assert SECRET_VALUE not in client.get("/api/v1/pipelines/secrets").text
    assert SECRET_VALUE not in server.log()


def test_cancel_stops_a_running_stage_within_seconds(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository, docker_client: docker.DockerClient
) -> None:
    _, client = pipeline_server
    define(client, repo, "long", stage("wait", "sleep 300"), stage("after", "echo never"))
    run_id = trigger(client, "long")
    in_stage(client, run_id, "wait", "RUNNING")

    started = time.monotonic()
    answer = client.post(f"{RUNS}/{run_id}/cancel")
    assert answer.status_code == 200, answer.text
    run = finished(client, run_id, 20)

    assert time.monotonic() - started < 15
    assert run["status"] == "CANCELLED"
    assert run["cancelledBy"]
    assert stage_of(run, "wait")["status"] == "CANCELLED"
    assert stage_of(run, "after")["status"] == "CANCELLED"
    assert client.post(f"{RUNS}/{run_id}/cancel").status_code == 409
    wait_for(
        lambda: not docker_client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}),
        "the cancelled run's containers to be removed",
    )


def test_a_stage_past_its_timeout_is_killed_and_fails(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository
) -> None:
    _, client = pipeline_server
    define(client, repo, "slow", stage("hang", "echo starting", "sleep 120", timeoutSeconds=2))

    run = finished(client, trigger(client, "slow"), 40)

    hang = stage_of(run, "hang")
    assert run["status"] == "FAILED"
    assert hang["status"] == "FAILED"
    assert "timed out after 2 s" in hang["error"]
    assert hang["durationSeconds"] < 20


GATED = (
    stage("build", "echo build"),
    stage("deploy", "echo deploying", approval=True),
    stage("notify", "echo done"),
)
"""Build, then a deployment that waits for an operator's approval, then a notification."""


def test_an_approval_gate_blocks_until_approved(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository
) -> None:
    _, client = pipeline_server
    define(client, repo, "gated", *GATED)
    run_id = trigger(client, "gated")

    run = wait_for(lambda: (run := run_of(client, run_id))["status"] == "BLOCKED" and run, "the run to block")
    assert (stage_of(run, "build")["status"], stage_of(run, "deploy")["status"]) == ("SUCCESS", "BLOCKED")
    [entry] = [p for p in client.get("/api/v1/pipelines").json() if p["id"] == "gated"]
    assert entry["status"] == "BLOCKED"
    assert client.post(f"{RUNS}/{run_id}/stages/notify/approve").status_code == 409  # not waiting

    answer = client.post(f"{RUNS}/{run_id}/stages/deploy/approve")
    assert answer.status_code == 200, answer.text
    run = finished(client, run_id)

    assert run["status"] == "SUCCESS"
    assert stage_of(run, "deploy")["decidedBy"]
    assert "deploying" in log_lines(client, run_id, "deploy")


def test_a_declined_approval_skips_what_follows(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository
) -> None:
    _, client = pipeline_server
    define(client, repo, "declined", *GATED)
    run_id = trigger(client, "declined")
    in_stage(client, run_id, "deploy", "BLOCKED")

    assert client.post(f"{RUNS}/{run_id}/stages/deploy/decline").status_code == 200
    run = finished(client, run_id)

    assert run["status"] == "CANCELLED"
    assert [(s["name"], s["status"]) for s in run["stages"]] == [
        ("build", "SUCCESS"),
        ("deploy", "SKIPPED"),
        ("notify", "SKIPPED"),
    ]
    assert "declined" in stage_of(run, "deploy")["error"]
    assert log_lines(client, run_id, "deploy") == []


def push(repo: Repository, sha: str, branch: str = "master") -> bytes:
    return json.dumps(
        {
            "ref": f"refs/heads/{branch}",
            "before": "0" * 40,
            "after": sha,
            "repository": {"clone_url": repo.url, "html_url": repo.url, "full_name": "ada/demo"},
            "pusher": {"name": "ada", "email": "ada@example.org"},
            "head_commit": {"id": sha, "message": "change"},
        }
    ).encode()


def test_a_signed_push_webhook_starts_a_run_and_a_bad_signature_starts_nothing(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository
) -> None:
    server, client = pipeline_server
    define(
        client,
        repo,
        "pushed",
        stage("build", "cat src/hello.txt"),
        triggers={"webhookSecret": WEBHOOK_SECRET},
    )
    sha = repo.commit({"src/hello.txt": "hello again\n"}, message="second")
    body = push(repo, sha)
    runs_before = client.get(RUNS, params={"pipeline": "pushed"}).json()

    with httpx.Client(base_url=server.url, timeout=30) as anonymous:  # no API key: the signature is the key
        bad = anonymous.post(
            "/api/v1/pipelines/webhook",
            content=body,
            headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
        )
        missing = anonymous.post(
            "/api/v1/pipelines/webhook", content=body, headers={"X-GitHub-Event": "push"}
        )
        assert (bad.status_code, missing.status_code) == (401, 401)
        assert client.get(RUNS, params={"pipeline": "pushed"}).json() == runs_before

        signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        good = anonymous.post(
            "/api/v1/pipelines/webhook",
            content=body,
            headers={
                "X-Gitea-Event": "push",
                "X-Gitea-Signature": signature,
                "Content-Type": "application/json",
            },
        )
    assert good.status_code == 202, good.text
    [started] = good.json()["runs"]
    TRIGGERED.add(started["runId"])
    run = finished(client, started["runId"])

    assert run["status"] == "SUCCESS"
    assert (run["trigger"], run["commit"]) == ("WEBHOOK", sha)
    assert run["triggeredBy"] == "webhook:ada"
    assert "hello again" in log_lines(client, run["id"], "build")


def test_a_cron_schedule_starts_a_run(pipeline_server: tuple[WorpenServer, httpx.Client]) -> None:
    _, client = pipeline_server  # it defined "nightly", due within a minute of the module's start

    def scheduled() -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = client.get(RUNS, params={"pipeline": "nightly"}).json()
        return runs

    [run] = wait_for(scheduled, "the cron schedule to start a run", 75)
    TRIGGERED.add(run["id"])
    run = finished(client, run["id"])

    assert (run["trigger"], run["triggeredBy"], run["status"]) == ("CRON", "cron", "SUCCESS")
    time.sleep(1)
    assert len(scheduled()) == 1  # one run for the slot, however often the schedule is looked at


def test_a_node_runs_at_most_its_slots_and_queues_the_rest(
    pipeline_server: tuple[WorpenServer, httpx.Client], repo: Repository
) -> None:
    _, client = pipeline_server
    define(client, repo, "busy", stage("work", "sleep 3"))

    run_ids = [trigger(client, "busy") for _ in range(3)]
    statuses = wait_for(
        lambda: (s := [run_of(client, r)["status"] for r in run_ids]).count("RUNNING") == 2 and s,
        "two runs to be running",
    )
    assert statuses[2] == "PENDING"  # the third waits its turn, in order
    runs = [finished(client, run_id) for run_id in run_ids]

    assert [run["status"] for run in runs] == ["SUCCESS"] * 3
    first_done = min(at(run["finishedAt"]) for run in runs[:2])
    assert at(runs[2]["startedAt"]) >= first_done


def test_a_server_killed_mid_stage_reattaches_or_reports_error_never_running(
    repos: Path, tmp_path: Path, docker_client: docker.DockerClient, repo: Repository
) -> None:
    server = start_server(tmp_path / "worpen.db", settings(repos))
    key = server.initial_admin_key()
    try:
        with server.client(key) as client:
            define(client, repo, "survives", stage("work", "echo before", "sleep 4", "echo after"))
            define(client, repo, "orphaned", stage("work", "sleep 300"))
            survivor, orphan = trigger(client, "survives"), trigger(client, "orphaned")
            in_stage(client, survivor, "work", "RUNNING")
            in_stage(client, orphan, "work", "RUNNING")
            wait_for(lambda: "before" in log_lines(client, survivor, "work"), "the first line to be stored")
        server.stop(signal.SIGKILL)
        for container in docker_client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={orphan}"}):
            container.remove(force=True)  # gone while Worpen was down

        server = start_server(tmp_path / "worpen.db", settings(repos))
        with server.client(key) as client:
            kept = finished(client, survivor, 60)
            lost = finished(client, orphan, 60)

            assert kept["status"] == "SUCCESS", kept
            lines = log_lines(client, survivor, "work")
            assert lines.count("before") == 1
            assert "after" in lines
            assert lost["status"] == "ERROR"
            assert stage_of(lost, "work")["status"] == "ERROR"
            assert "gone" in stage_of(lost, "work")["error"]
    finally:
        server.stop()
        remove_leftovers(docker_client)


def test_a_stage_whose_engine_vanished_ends_in_error_within_the_lease(
    repos: Path, tmp_path: Path, docker_client: docker.DockerClient, repo: Repository
) -> None:
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    server = start_server(
        tmp_path / "worpen.db",
        settings(repos, WORPEN_DOCKER_HOSTS=f"local=unix://{proxy.path}", WORPEN_PIPELINE_LEASE_SECONDS="3"),
    )
    try:
        with server.client(server.initial_admin_key()) as client:
            define(client, repo, "stranded", stage("work", "sleep 300"))
            run_id = trigger(client, "stranded")
            in_stage(client, run_id, "work", "RUNNING")

            proxy.stop()
            vanished = time.monotonic()
            run = finished(client, run_id, 30)

            assert time.monotonic() - vanished < 3 + 5
            assert run["status"] == "ERROR"
            assert stage_of(run, "work")["status"] == "ERROR"
            assert stage_of(run, "work")["error"]
    finally:
        server.stop()
        proxy.stop()
        remove_leftovers(docker_client)
