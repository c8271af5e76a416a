"""Pipelines on two replicas of one PostgreSQL database: the leader runs the stages, any replica serves
their logs live (a follower on the other replica gets each line as it is stored, and the end), cancels and
approvals asked of the replica that does not lead reach the leader and answer as it would, and a leader
killed mid-stage leaves nothing RUNNING: the replica that takes over adopts the stage and follows it to its
end, or marks it ERROR once its lease ran out when its container is gone."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.docker_support import ENGINE_URL, sse_events, wait_for
from tests.integration.replica_support import replicas
from tests.integration.support import WorpenServer
from tests.integration.test_pipelines import (
    GATED,
    RUN_LABEL,
    RUNS,
    Repository,
    define,
    finished,
    in_stage,
    log_lines,
    remove_leftovers,
    run_of,
    stage,
    stage_of,
    trigger,
)
from tests.integration.test_replicas_leader import leading, within

pytestmark = pytest.mark.integration

LEASE = 3.0
PIPELINE_LEASE = 3


def settings(repos: Path) -> dict[str, str]:
    return {
        "WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL}",
        "WORPEN_PIPELINE_LOCAL_REPOS": str(repos),
        "WORPEN_PIPELINE_TICK_SECONDS": "0.2",
        "WORPEN_PIPELINE_NODE_SLOTS": "2",
        "WORPEN_PIPELINE_LEASE_SECONDS": str(PIPELINE_LEASE),
        "WORPEN_LEASE_SECONDS": str(LEASE),
        "WORPEN_AGENT_TTL": "3600",
    }


def roles(a: WorpenServer, b: WorpenServer, key: str) -> tuple[WorpenServer, WorpenServer]:
    """(the leader, the other) once exactly one of them leads."""
    leader: WorpenServer = within(
        2 * LEASE,
        lambda: (
            (a if leading(a, key) and leading(b, key) is False else None)
            or (b if leading(b, key) and leading(a, key) is False else None)
        ),
        "one replica leads",
    )[0]
    return leader, (b if leader is a else a)


def printed(lines: Iterable[str]) -> list[str]:
    return [line for line in lines if not line.startswith("+ ")]


def repository(tmp_path: Path, name: str) -> Repository:
    (tmp_path / "repos").mkdir(exist_ok=True)
    repo = Repository(tmp_path / "repos" / name)
    repo.commit({"README.md": f"# {name}\n"}, message="first")
    return repo


class Follow(threading.Thread):
    """A follower of a stage's log on one replica: each event as it arrives, with when it arrived."""

    def __init__(self, server: WorpenServer, key: str, run_id: str, name: str) -> None:
        super().__init__(daemon=True)
        self._server, self._key = server, key
        self._url = f"{RUNS}/{run_id}/stages/{name}/logs/stream"
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                self._server.client(self._key) as client,
                client.stream("GET", self._url, timeout=60) as answer,
            ):
                assert answer.status_code == 200
                for event, data in sse_events(answer):
                    self.events.append((time.monotonic(), event, data))
                    if event == "end":
                        return
        except BaseException as exc:  # reported by the test
            self.error = exc

    def texts(self) -> list[str]:
        """What the stage printed, without the shell's trace of its commands."""
        return printed(data["text"] for _, event, data in self.events if event == "line")

    def arrived(self, text: str) -> float | None:
        return next(
            (when for when, event, data in self.events if event == "line" and data["text"] == text), None
        )

    def ended(self) -> dict[str, Any] | None:
        return next((data for _, event, data in self.events if event == "end"), None)


def test_a_follower_on_the_replica_that_does_not_lead_gets_the_lines_live_and_the_end(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = repository(tmp_path, "live")
    with replicas(tmp_path, 2, settings(tmp_path / "repos")) as (a, b):
        key = a.initial_admin_key()
        leader, other = roles(a, b, key)
        try:
            with other.client(key) as client:
                define(client, repo, "talk", stage("say", "echo first", "sleep 2", "echo second", "sleep 2"))
                run_id = trigger(client, "talk")
                wait_for(lambda: "first" in log_lines(client, run_id, "say"), "the first line to be stored")
                follower = Follow(other, key, run_id, "say")
                follower.start()
                wait_for(lambda: follower.arrived("second") or follower.error, "the second line, live", 10)
                assert follower.error is None
                # Live: it came while the stage still ran (it sleeps 2 s after printing it).
                assert stage_of(run_of(client, run_id), "say")["status"] == "RUNNING"
                follower.join(20)
                assert follower.error is None
                assert follower.texts() == ["first", "second"]
                assert follower.ended() == {"status": "SUCCESS"}
                assert stage_of(run_of(client, run_id), "say")["status"] == "SUCCESS"
                assert leading(leader, key)  # the stage ran on the leader, the follower elsewhere
                assert leading(other, key) is False
        finally:
            remove_leftovers(docker_client)


def test_a_stage_under_way_when_the_leader_is_killed_is_adopted_or_ends_in_error_never_running(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = repository(tmp_path, "survive")
    with replicas(tmp_path, 2, settings(tmp_path / "repos")) as (a, b):
        key = a.initial_admin_key()
        leader, other = roles(a, b, key)
        try:
            with other.client(key) as client:
                define(client, repo, "survives", stage("work", "echo before", "sleep 6", "echo after"))
                define(client, repo, "orphaned", stage("work", "sleep 300"))
                survivor, orphan = trigger(client, "survives"), trigger(client, "orphaned")
                in_stage(client, survivor, "work", "RUNNING")
                in_stage(client, orphan, "work", "RUNNING")
                wait_for(
                    lambda: "before" in log_lines(client, survivor, "work"), "the first line to be stored"
                )
                follower = Follow(other, key, survivor, "work")
                follower.start()
                wait_for(lambda: follower.texts() == ["before"] or follower.error, "the stored line")

                leader.stop(signal.SIGKILL)
                for container in docker_client.containers.list(
                    all=True, filters={"label": f"{RUN_LABEL}={orphan}"}
                ):
                    container.remove(force=True)  # gone with the replica that ran it
                within(LEASE + LEASE / 3 + 3, lambda: leading(other, key), "the other replica leads")

                kept = finished(client, survivor, 60)
                lost = finished(client, orphan, 60)
                assert kept["status"] == "SUCCESS", kept
                assert printed(log_lines(client, survivor, "work")) == ["before", "after"]
                assert lost["status"] == "ERROR", lost
                assert stage_of(lost, "work")["status"] == "ERROR"
                follower.join(20)
                assert follower.error is None
                assert follower.texts() == ["before", "after"]
                assert follower.ended() == {"status": "SUCCESS"}
        finally:
            remove_leftovers(docker_client)


def test_a_run_is_cancelled_and_a_stage_approved_through_the_replica_that_does_not_lead(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = repository(tmp_path, "asked")
    with replicas(tmp_path, 2, settings(tmp_path / "repos")) as (a, b):
        key = a.initial_admin_key()
        leader, other = roles(a, b, key)
        try:
            with other.client(key) as client, leader.client(key) as at_leader:
                define(client, repo, "long", stage("wait", "sleep 300"), stage("after", "echo never"))
                define(client, repo, "gated", *GATED)
                long, gated = trigger(client, "long"), trigger(client, "gated")
                in_stage(client, long, "wait", "RUNNING")
                wait_for(lambda: run_of(client, gated)["status"] == "BLOCKED", "the gated run to block")

                answer = client.post(f"{RUNS}/{long}/cancel")
                assert answer.status_code == 200, answer.text
                cancelled = answer.json()
                assert cancelled["status"] == "CANCELLED", cancelled
                assert stage_of(cancelled, "wait")["status"] == "CANCELLED"
                assert stage_of(cancelled, "after")["status"] == "CANCELLED"
                assert cancelled["cancelledBy"]
                wait_for(
                    lambda: (
                        not docker_client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={long}"})
                    ),
                    "the cancelled run's containers to be removed",
                )
                again = client.post(f"{RUNS}/{long}/cancel")
                assert again.status_code == 409
                assert again.json() == at_leader.post(f"{RUNS}/{long}/cancel").json()

                # Not waiting: the leader's own answer, word for word.
                refused = client.post(f"{RUNS}/{gated}/stages/notify/approve")
                assert refused.status_code == 409
                assert refused.json() == at_leader.post(f"{RUNS}/{gated}/stages/notify/approve").json()
                answer = client.post(f"{RUNS}/{gated}/stages/deploy/approve")
                assert answer.status_code == 200, answer.text
                assert stage_of(answer.json(), "deploy")["decidedBy"]
                run = finished(client, gated)
                assert run["status"] == "SUCCESS", run
                assert "deploying" in log_lines(client, gated, "deploy")
                assert leading(leader, key)
                assert leading(other, key) is False
        finally:
            remove_leftovers(docker_client)
