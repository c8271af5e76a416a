"""Pipelines benchmark (run it through bench/pipelines; see bench/README.md).

One run: start a real `worpen serve` on loopback (fresh SQLite file in a temp dir, the local Docker engine
as node `local`, a git repository made here with dulwich allowed as a local repository, 8 pipeline slots
per node), then measure
1. the overhead of a one-stage pipeline running `echo hi`, from the trigger to the run finished, against
   `docker run --rm` of the same command (the CLI) and the Docker SDK's create, start, wait, logs and
   remove on the same engine, interleaved in rounds, with the run's own timestamps as a breakdown;
2. the latency from a stage writing a line (Docker's timestamp of the write) to each of 10 SSE followers
   receiving it;
3. heartbeats/s with wrk (bench/heartbeat's load) while 4 pipelines print lines, against none running,
   in interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import docker
import httpx
from docker.types import Mount as DockerMount
from dulwich import porcelain
from heartbeat_bench import (
    HEARTBEAT_PATH,
    BenchError,
    Run,
    Server,
    _die_with_parent,
    _ensure_wrk,
    _free_port,
    _on_signal,
    _register_all,
    _wrk,
)

ENGINE_SOCKET = "/var/run/docker.sock"
NODE = "local"
IMAGE = os.environ.get("WORPEN_TEST_IMAGE", "worpen-test/busybox:1")
LABEL = "worpen.bench"
"""On the baselines' containers, for removing them whatever happens."""
PIPELINE_LABEL = "worpen.pipeline"
"""What Worpen labels a pipeline's containers and volumes with (the pipeline's id)."""
DEFINITIONS_PATH = "/api/v1/pipelines/definitions"
TRIGGER_PATH = "/api/v1/pipelines/trigger"
RUNS_PATH = "/api/v1/pipelines/runs"
FINISHED = frozenset({"SUCCESS", "FAILED", "CANCELLED", "ERROR"})
HELLO = "echo hi"
WORKSPACE = "/workspace"
"""Where a stage's workspace is mounted (worpen_core.pipelines.model.WORKSPACE)."""
TARGET_OVERHEAD = 1.5
TARGET_P99_MS = 50.0
TARGET_RATIO = 0.9
RAMP_SECONDS = 2.0
"""Before each heartbeat window (after the busy pipelines all started printing): the server's CPU is read
over it, what the pipelines alone cost it."""
RUN_TIMEOUT = 120.0
"""A run not finished by then fails the benchmark."""
FULL = {
    "rounds": 10,
    "hb_rounds": 3,
    "duration": 5,
    "busy_seconds": 20,
    "ids": 10_000,
}
QUICK = {
    "rounds": 5,
    "hb_rounds": 2,
    "duration": 4,
    "busy_seconds": 12,
    "ids": 1000,
}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/pipelines", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="about 2 minutes: 5 rounds of the overhead, 1000 ids, 2 heartbeat rounds of 4 s while stages "
        "print for 12 s (options given win)",
    )
    p.add_argument("--rounds", type=int, help="rounds of (pipeline, docker run, SDK) timed (10)")
    p.add_argument("--followers", type=int, default=10, help="SSE followers of the printing stage (10)")
    p.add_argument("--lines", type=int, default=250, help="lines the followed stage prints (250)")
    p.add_argument("--line-ms", type=int, default=20, help="milliseconds between two of its lines (20)")
    p.add_argument("--hb-rounds", type=int, help="heartbeat rounds of (alone, with pipelines) (3)")
    p.add_argument("--duration", type=int, help="seconds per measured wrk run (5)")
    p.add_argument("--busy", type=int, default=4, help="pipelines running during the heartbeats (4)")
    p.add_argument("--busy-seconds", type=int, help="how long each of their stages prints (20)")
    p.add_argument("--slots", type=int, default=8, help="WORPEN_PIPELINE_NODE_SLOTS (8)")
    p.add_argument("--ids", type=int, help="distinct agent ids, registered first (10000)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    p.add_argument(
        "--register-timeout", type=float, default=240, help="max seconds to register every id (240)"
    )
    p.add_argument(
        "--register-connections", type=int, default=4, help="wrk connections while registering (4)"
    )
    p.add_argument("--agent-ttl", type=int, default=3600, help="server's WORPEN_AGENT_TTL, seconds (3600)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (database, repository, server log)")
    p.add_argument("--check", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _percentile(values: Sequence[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _instant(value: object) -> float:
    """Seconds since the epoch of a timestamp the API wrote (ISO 8601; this machine's clock)."""
    return datetime.fromisoformat(str(value)).timestamp()


# --- the server ---------------------------------------------------------------------------------------------


class WorpenServe(Server):
    """bench/heartbeat's Server (readiness, admin key, CPU time, metrics, graceful stop) around the real
    `worpen serve`, with the settings given and none inherited from the caller's WORPEN_* variables."""

    def __init__(self, workdir: Path, settings: Mapping[str, str]) -> None:
        self.port = _free_port()
        self.grpc_port = _free_port()
        self.log_path = workdir / "server.log"
        self.db_path = workdir / "worpen.db"
        self._log: IO[bytes] = self.log_path.open("wb")
        env = {
            **{key: value for key, value in os.environ.items() if not key.startswith("WORPEN_")},
            "WORPEN_DATABASE_URL": f"sqlite+aiosqlite:///{self.db_path}",
            "WORPEN_HOST": "127.0.0.1",
            "WORPEN_PORT": str(self.port),
            "WORPEN_GRPC_HOST": "127.0.0.1",
            "WORPEN_GRPC_PORT": str(self.grpc_port),
            "WORPEN_LOG_FORMAT": "json",
            "WORPEN_LOG_LEVEL": "info",
            **settings,
        }
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "worpen"), "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() can end it and only it
            preexec_fn=_die_with_parent,
        )
        self.key = ""


class Api:
    def __init__(self, server: Server) -> None:
        self.base = server.base
        self.headers = {"Authorization": f"Bearer {server.key}"}
        self.client = httpx.Client(base_url=server.base, headers=self.headers, timeout=30)

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, body: object = None, expect: int = 200) -> dict[str, Any]:
        answer = self.client.request(method, path, json=body)
        if answer.status_code != expect:
            raise BenchError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        found: dict[str, Any] = answer.json()
        return found

    def define(self, pipeline_id: str, repository: str, branch: str, stage: str, commands: list[str]) -> None:
        self.call(
            "POST",
            DEFINITIONS_PATH,
            {
                "id": pipeline_id,
                "name": pipeline_id,
                "repository": repository,
                "branch": branch,
                "stages": [{"name": stage, "image": IMAGE, "commands": commands}],
            },
            201,
        )

    def trigger(self, pipeline_id: str) -> str:
        return str(self.call("POST", TRIGGER_PATH, {"pipelineId": pipeline_id}, 202)["runId"])

    def run(self, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"{RUNS_PATH}/{run_id}")

    def finished(self, run_id: str, poll: float = 0.01) -> tuple[dict[str, Any], float]:
        """Poll the run until it finished; it then, and when the client saw it (epoch seconds)."""
        end = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < end:
            run = self.run(run_id)
            if run["status"] in FINISHED:
                return run, time.time()
            time.sleep(poll)
        raise BenchError(f"run {run_id} not finished within {RUN_TIMEOUT:g}s")


def _stream_path(run_id: str, stage: str) -> str:
    return f"{RUNS_PATH}/{run_id}/stages/{stage}/logs/stream"


def _stage(run: Mapping[str, Any], name: str) -> dict[str, Any]:
    for stage in run["stages"]:
        if stage["name"] == name:
            found: dict[str, Any] = stage
            return found
    raise BenchError(f"run {run.get('id')} has no stage {name!r}: {run}")


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a Server-Sent Events stream, as they arrive."""
    event, data = "message", ""
    for line in lines:
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data += line.partition(":")[2].strip()
        elif not line and data:
            yield event, json.loads(data)
            event, data = "message", ""


def _repository(root: Path) -> tuple[Path, str]:
    """A git repository made with dulwich below `root` (the directory the server allows): its path and
    branch."""
    path = root / "app"
    path.mkdir(parents=True)
    repo = porcelain.init(str(path))
    (path / "README.md").write_text("A repository for bench/pipelines.\n")
    (path / "build.sh").write_text("#!/bin/sh\necho built\n")
    porcelain.add(repo, [str(path / "README.md"), str(path / "build.sh")])
    porcelain.commit(
        repo, message=b"bench", author=b"Bench <bench@example.com>", committer=b"Bench <bench@example.com>"
    )
    branch = porcelain.active_branch(repo).decode()
    repo.close()
    return path, branch


# --- 1. overhead of a one-stage pipeline --------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineSample:
    """One run of the one-stage pipeline, in seconds from the moment the trigger was sent."""

    answered: float
    """The trigger's 202 received."""
    end_seen: float
    """The stage log's SSE `end` received."""
    finished: float
    """The run's finishedAt (the server's clock: this machine's)."""
    seen_finished: float
    """The client's poll saw the run finished."""
    queued: float
    """createdAt - sent: the trigger's request up to the run stored."""
    placed: float
    """startedAt - createdAt: the scheduler reserving a slot on a node."""
    prepared: float
    """The stage's startedAt - the run's startedAt: the source fetched, the workspace volume created and
    seeded through a container, the stage's container created."""
    stage: float
    """The stage's finishedAt - startedAt: its container started, waited for, its log drained."""
    wrapped: float
    """The run's finishedAt - the stage's finishedAt: the stage's container removed, the run saved."""


def _pipeline_once(api: Api, pipeline_id: str, stage: str) -> PipelineSample:
    sent = time.time()
    run_id = api.trigger(pipeline_id)
    answered = time.time()
    end_seen = None
    with api.client.stream("GET", _stream_path(run_id, stage), timeout=httpx.Timeout(30, read=60)) as answer:
        if answer.status_code != 200:
            raise BenchError(f"following {run_id}/{stage}: {answer.status_code}")
        for event, data in _events(answer.iter_lines()):
            if event == "end":
                end_seen = time.time()
                if data.get("status") not in (None, "SUCCESS"):
                    raise BenchError(f"stage {stage} of {run_id} ended {data}")
                break
    if end_seen is None:
        raise BenchError(f"the log stream of {run_id}/{stage} ended without an end event")
    run, seen = api.finished(run_id)
    if run["status"] != "SUCCESS":
        raise BenchError(f"run {run_id} ended {run['status']}: {run.get('error')}")
    step = _stage(run, stage)
    created, started, finished = (_instant(run[key]) for key in ("createdAt", "startedAt", "finishedAt"))
    stage_started, stage_finished = _instant(step["startedAt"]), _instant(step["finishedAt"])
    return PipelineSample(
        answered=answered - sent,
        end_seen=end_seen - sent,
        finished=finished - sent,
        seen_finished=seen - sent,
        queued=created - sent,
        placed=started - created,
        prepared=stage_started - started,
        stage=stage_finished - stage_started,
        wrapped=finished - stage_finished,
    )


def _cli_once(tag: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        ["docker", "run", "--rm", "--label", f"{LABEL}={tag}", IMAGE, "sh", "-c", HELLO],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0 or done.stdout != "hi\n":
        raise BenchError(f"docker run exited {done.returncode}: {done.stdout!r} {done.stderr!r}")
    return took


def _sdk_once(engine: docker.APIClient, tag: str) -> float:
    """What Worpen's runtime asks the engine for a stage, in one process with no server in between."""
    started = time.perf_counter()
    container = engine.create_container(IMAGE, ["sh", "-c", HELLO], labels={LABEL: tag})
    engine.start(container)
    status = engine.wait(container)
    output = engine.logs(container, stdout=True, stderr=True)
    engine.remove_container(container)
    took = time.perf_counter() - started
    if status.get("StatusCode") != 0 or output != b"hi\n":
        raise BenchError(f"the SDK's container exited {status}: {output!r}")
    return took


def _workspace_once(engine: docker.APIClient, tag: str, archive: bytes) -> float:
    """The engine calls a one-stage pipeline makes, one after the other in one process: a workspace volume,
    a container to copy the source into it, the stage's container (an init process, the volume mounted as
    its working directory), its exit code and log, then both removed."""
    started = time.perf_counter()
    volume = f"bench-{tag}-{uuid.uuid4().hex[:8]}"
    engine.create_volume(volume, labels={LABEL: tag})
    mounts = [DockerMount(WORKSPACE, volume, type="volume")]
    seed = engine.create_container(
        IMAGE, ["true"], labels={LABEL: tag}, host_config=engine.create_host_config(init=True, mounts=mounts)
    )
    engine.put_archive(seed, WORKSPACE, archive)
    engine.remove_container(seed, force=True)
    container = engine.create_container(
        IMAGE,
        ["-c", HELLO],
        entrypoint=["/bin/sh"],
        labels={LABEL: tag},
        working_dir=WORKSPACE,
        host_config=engine.create_host_config(init=True, mounts=mounts),
    )
    engine.start(container)
    status = engine.wait(container)
    output = engine.logs(container, stdout=True, stderr=True)
    engine.remove_container(container, force=True)
    engine.remove_volume(volume)
    took = time.perf_counter() - started
    if status.get("StatusCode") != 0 or output != b"hi\n":
        raise BenchError(f"the workspace's stage exited {status}: {output!r}")
    return took


def _archive(path: Path) -> bytes:
    """The repository's files as a tar archive, as the pipeline copies them into its workspace."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("README.md", "build.sh"):
            tar.add(path / name, arcname=name)
    return buffer.getvalue()


@dataclass(frozen=True)
class Overhead:
    pipeline: list[PipelineSample]
    cli: list[float]
    sdk: list[float]
    workspace: list[float]


def _overhead(api: Api, engine: docker.APIClient, args: argparse.Namespace, tag: str) -> Overhead:
    pipeline_id, stage = f"bench-{tag}-hello", "hello"
    api.define(pipeline_id, args.repository, args.branch, stage, [HELLO])
    archive = _archive(args.repository_path)
    samples = Overhead([], [], [], [])
    steps: list[tuple[str, Callable[[], None]]] = [
        ("pipeline", lambda: samples.pipeline.append(_pipeline_once(api, pipeline_id, stage))),
        ("docker run", lambda: samples.cli.append(_cli_once(tag))),
        ("SDK", lambda: samples.sdk.append(_sdk_once(engine, tag))),
        ("workspace", lambda: samples.workspace.append(_workspace_once(engine, tag, archive))),
    ]
    for _, step in steps:  # warm-up: the source's first fetch, the engine's caches
        step()
    for taken in (samples.pipeline, samples.cli, samples.sdk, samples.workspace):
        taken.clear()
    for i in range(1, args.rounds + 1):
        shift = (i - 1) % len(steps)  # rotated, so a drift in the machine's load hits all of them alike
        for _, step in steps[shift:] + steps[:shift]:
            step()
        last = samples.pipeline[-1]
        print(
            f"  round {i}: pipeline {last.finished * 1000:6.0f} ms (SSE end {last.end_seen * 1000:.0f}), "
            f"docker run {samples.cli[-1] * 1000:6.0f} ms, SDK {samples.sdk[-1] * 1000:6.0f} ms, "
            f"its engine calls {samples.workspace[-1] * 1000:6.0f} ms",
            flush=True,
        )
    return samples


# --- 2. log latency -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Followed:
    """What one SSE follower received: (received, written) epoch seconds per line printed by the loop,
    lines that reached it from the store because they were written before it connected, and the end."""

    lines: list[tuple[float, float]]
    backfilled: int
    end: str | None


async def _follow(client: httpx.AsyncClient, path: str) -> Followed:
    lines: list[tuple[float, float]] = []
    backfilled = 0
    async with client.stream("GET", path) as answer:
        if answer.status_code != 200:
            raise BenchError(f"following {path}: {answer.status_code}")
        connected = time.time()
        event, data = "message", ""
        async for line in answer.aiter_lines():
            received = time.time()
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data += line.partition(":")[2].strip()
            elif not line and data:
                item = json.loads(data)
                if event == "end":
                    return Followed(lines, backfilled, str(item.get("status")))
                if event == "line" and str(item["text"]).startswith("line "):
                    written = _instant(item["at"])
                    if written < connected:
                        backfilled += 1
                    else:
                        lines.append((received, written))
                event, data = "message", ""
    return Followed(lines, backfilled, None)


async def _followers(api: Api, run_id: str, stage: str, count: int) -> list[Followed]:
    async with httpx.AsyncClient(
        base_url=api.base,
        headers=api.headers,
        timeout=httpx.Timeout(30, read=RUN_TIMEOUT),
        limits=httpx.Limits(max_connections=count + 1),
    ) as client:
        return list(
            await asyncio.gather(*(_follow(client, _stream_path(run_id, stage)) for _ in range(count)))
        )


@dataclass(frozen=True)
class Latency:
    followed: list[Followed]
    expected: int

    @property
    def ms(self) -> list[float]:
        return [
            (received - written) * 1000 for follower in self.followed for received, written in follower.lines
        ]


def _latency(api: Api, args: argparse.Namespace, tag: str) -> Latency:
    pipeline_id, stage = f"bench-{tag}-lines", "print"
    loop = (
        f'i=0; while [ "$i" -lt {args.lines} ]; do i=$((i+1)); echo "line $i"; '
        f"usleep {args.line_ms * 1000}; done"
    )
    # The pause lets every follower connect before the first line: then each line reaches it live.
    api.define(pipeline_id, args.repository, args.branch, stage, ["sleep 1", loop])
    run_id = api.trigger(pipeline_id)
    followed = asyncio.run(_followers(api, run_id, stage, args.followers))
    run, _ = api.finished(run_id)
    if run["status"] != "SUCCESS":
        raise BenchError(f"run {run_id} ended {run['status']}: {run.get('error')}")
    return Latency(followed, args.lines)


# --- 3. heartbeats while pipelines run ----------------------------------------------------------------------


@dataclass(frozen=True)
class Busy:
    """A heartbeat run during `runs` pipeline runs, and whether they all printed through the window."""

    run: Run
    through: bool
    statuses: list[str]
    cpu_share: float
    """The server's CPU time over the ramp before the window, per second: what the pipelines cost it."""


def _running(api: Api, run_ids: Sequence[str], stage: str) -> bool:
    """Every run's stage started and not finished."""
    for run_id in run_ids:
        step = _stage(api.run(run_id), stage)
        if step["status"] != "RUNNING" or step.get("finishedAt"):
            return False
    return True


def _heartbeats(
    wrk: str, api: Api, server: Server, args: argparse.Namespace, tag: str
) -> tuple[dict[str, list[Run]], list[Busy], list[float]]:
    """Rounds of heartbeats with no pipeline running and while `args.busy` pipelines print 50 lines/s each
    through the whole window (the order alternates); the server's CPU share before each window."""
    stage = "busy"
    lines = args.busy_seconds * 50
    loop = f'i=0; while [ "$i" -lt {lines} ]; do i=$((i+1)); echo "busy line $i"; usleep 20000; done'
    busy_ids = [f"bench-{tag}-busy-{i}" for i in range(1, args.busy + 1)]
    for pipeline_id in busy_ids:
        api.define(pipeline_id, args.repository, args.branch, stage, [loop])
    runs: dict[str, list[Run]] = {"heartbeat": [], "heartbeat+pipelines": []}
    busy: list[Busy] = []
    idle: list[float] = []

    def ramp() -> float:
        """Sleep RAMP_SECONDS; the server's CPU seconds per second meanwhile."""
        before = server.cpu_seconds()
        time.sleep(RAMP_SECONDS)
        return (server.cpu_seconds() - before) / RAMP_SECONDS

    def quiet() -> None:
        idle.append(ramp())
        runs["heartbeat"].append(_wrk(wrk, server, HEARTBEAT_PATH, args, args.duration, "heartbeat"))

    def loaded() -> None:
        run_ids = [api.trigger(pipeline_id) for pipeline_id in busy_ids]
        end = time.monotonic() + RUN_TIMEOUT
        while not _running(api, run_ids, stage):
            if time.monotonic() > end:
                raise BenchError(f"the busy pipelines did not all start within {RUN_TIMEOUT:g}s")
            time.sleep(0.2)
        cpu_share = ramp()
        run = _wrk(wrk, server, HEARTBEAT_PATH, args, args.duration, "heartbeat+pipelines")
        through = _running(api, run_ids, stage)
        ended = [api.finished(run_id, poll=0.5)[0] for run_id in run_ids]
        statuses = [
            str(run["status"]) if run["status"] == "SUCCESS" else f"{run['status']} ({run.get('error')})"
            for run in ended
        ]
        runs["heartbeat+pipelines"].append(run)
        busy.append(Busy(run, through, statuses, cpu_share))

    steps: list[tuple[str, Callable[[], None]]] = [("heartbeat", quiet), ("heartbeat+pipelines", loaded)]
    for i in range(1, args.hb_rounds + 1):
        for label, step in steps if i % 2 else steps[::-1]:
            step()
            last = runs[label][-1]
            print(
                f"  round {i} {label:<20} {last.rps:>9,.0f} req/s  p99 {last.p99_ms:6.2f} ms  "
                f"non-2xx {last.non_2xx}  socket errors {last.socket_errors}  "
                f"server CPU {last.cpu_us_per_request:.0f} us/req"
                + (
                    f"  ({args.busy} runs printing through the window: {busy[-1].through}; "
                    f"ended {', '.join(busy[-1].statuses)}; server CPU before it "
                    f"{busy[-1].cpu_share:.0%})"
                    if label == "heartbeat+pipelines"
                    else f"  (server CPU before it {idle[-1]:.0%})"
                ),
                flush=True,
            )
    return runs, busy, idle


# --- report -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    overhead: Overhead
    latency: Latency
    runs: dict[str, list[Run]]
    busy: list[Busy]
    idle: list[float]
    """The server's CPU share before each window with no pipeline running."""


def _line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<46}{value:>10}  {note}".rstrip())


def _met(met: bool) -> str:
    return "MET" if met else "MISSED"


def _report(figures: Figures, args: argparse.Namespace) -> tuple[dict[str, object], bool]:
    """Prints the medians; returns the summary and whether a target was missed."""
    samples = figures.overhead.pipeline

    def ms(figure: str) -> float:
        return _median([float(getattr(sample, figure)) for sample in samples]) * 1000

    cli, sdk = _median(figures.overhead.cli) * 1000, _median(figures.overhead.sdk) * 1000
    workspace = _median(figures.overhead.workspace) * 1000
    finished = ms("finished")
    print(
        f"\n1. one-stage pipeline ({HELLO!r}) against the same command on the engine, "
        f"medians of {args.rounds}:"
    )
    _line("pipeline: trigger -> run finished", f"{finished:.0f} ms", "(the run's finishedAt)")
    _line("pipeline: trigger -> SSE end received", f"{ms('end_seen'):.0f} ms")
    _line(
        "pipeline: trigger -> poll saw it finished", f"{ms('seen_finished'):.0f} ms", "(polled every 10 ms)"
    )
    _line("docker run --rm (CLI)", f"{cli:.0f} ms")
    _line("SDK create+start+wait+logs+remove", f"{sdk:.0f} ms")
    _line(
        "ratio pipeline / docker run",
        f"{finished / cli:.2f}",
        f"(target <= {TARGET_OVERHEAD})  {_met(finished / cli <= TARGET_OVERHEAD)}",
    )
    _line("ratio pipeline / SDK", f"{finished / sdk:.2f}")
    _line("fixed cost over docker run", f"{finished - cli:.0f} ms")
    _line("fixed cost over the SDK", f"{finished - sdk:.0f} ms")
    _line("SDK, the pipeline's engine calls", f"{workspace:.0f} ms", "(workspace volume and its seeding too)")
    _line("ratio pipeline / its engine calls", f"{finished / workspace:.2f}")
    _line("Worpen's own cost over its engine calls", f"{finished - workspace:.0f} ms")
    print("  where the pipeline's time goes (medians, from the run's timestamps):")
    for figure, what in (
        ("answered", "trigger answered 202"),
        ("queued", "sent -> run stored (createdAt)"),
        ("placed", "createdAt -> placed on a node (startedAt)"),
        ("prepared", "source, workspace, stage container created"),
        ("stage", "stage started, ran, log drained"),
        ("wrapped", "stage container removed, run saved"),
    ):
        _line(f"  {what}", f"{ms(figure):.0f} ms")

    latency = figures.latency
    values = latency.ms
    p50, p99 = _percentile(values, 50), _percentile(values, 99)
    received = [len(follower.lines) + follower.backfilled for follower in latency.followed]
    print(
        f"\n2. log latency, {args.followers} SSE followers, {args.lines} lines one every {args.line_ms} ms:"
    )
    _line("p50 written -> received", f"{p50:.1f} ms")
    _line("p90", f"{_percentile(values, 90):.1f} ms")
    _line("p99", f"{p99:.1f} ms", f"(target < {TARGET_P99_MS:g} ms)  {_met(p99 < TARGET_P99_MS)}")
    _line("max", f"{max(values, default=float('nan')):.1f} ms")
    _line(
        "lines received per follower",
        f"{min(received, default=0)}-{max(received, default=0)}",
        f"of {latency.expected}; from the store (written before it connected): "
        f"{sum(follower.backfilled for follower in latency.followed)}",
    )

    quiet, loaded = (
        _median([run.rps for run in figures.runs[label]]) for label in ("heartbeat", "heartbeat+pipelines")
    )
    ratio = loaded / quiet
    busy_cpu = _median([busy.cpu_share for busy in figures.busy])
    cpu = {label: _median([run.cpu_us_per_request for run in runs]) for label, runs in figures.runs.items()}
    print(f"\n3. heartbeats (wrk -c{args.connections}, {args.ids:,} agent ids), medians of {args.hb_rounds}:")
    _line("heartbeats/s, no pipeline", f"{quiet:,.0f}", f"server CPU {cpu['heartbeat']:.0f} us/req")
    _line(
        f"heartbeats/s, {args.busy} pipelines printing",
        f"{loaded:,.0f}",
        f"server CPU {cpu['heartbeat+pipelines']:.0f} us/req; each stage 50 lines/s",
    )
    _line(
        "ratio with / without", f"{ratio:.3f}", f"(target >= {TARGET_RATIO})  {_met(ratio >= TARGET_RATIO)}"
    )
    _line(
        "server CPU, no heartbeats: no pipeline",
        f"{_median(figures.idle):.0%}",
        f"with {args.busy} printing: {busy_cpu:.0%} (of one CPU, over {RAMP_SECONDS:g} s before each window)",
    )

    summary: dict[str, object] = {
        "pipeline_finished_ms": round(finished, 1),
        "pipeline_sse_end_ms": round(ms("end_seen"), 1),
        "pipeline_seen_finished_ms": round(ms("seen_finished"), 1),
        "docker_run_ms": round(cli, 1),
        "sdk_ms": round(sdk, 1),
        "ratio_vs_docker_run": round(finished / cli, 2),
        "ratio_vs_sdk": round(finished / sdk, 2),
        "fixed_cost_vs_docker_run_ms": round(finished - cli, 1),
        "fixed_cost_vs_sdk_ms": round(finished - sdk, 1),
        "engine_calls_ms": round(workspace, 1),
        "ratio_vs_engine_calls": round(finished / workspace, 2),
        "breakdown_ms": {
            figure: round(ms(figure), 1)
            for figure in ("answered", "queued", "placed", "prepared", "stage", "wrapped")
        },
        "log_latency_p50_ms": round(p50, 1),
        "log_latency_p99_ms": round(p99, 1),
        "log_lines_received": received,
        "heartbeats_per_s": round(quiet),
        "heartbeats_with_pipelines_per_s": round(loaded),
        "ratio_with_pipelines": round(ratio, 3),
        "server_cpu_share_idle": round(_median(figures.idle), 3),
        "server_cpu_share_pipelines": round(busy_cpu, 3),
        **{f"{label}_rounds": [round(run.rps) for run in runs] for label, runs in figures.runs.items()},
    }
    missed = finished / cli > TARGET_OVERHEAD or p99 >= TARGET_P99_MS or ratio < TARGET_RATIO
    return summary, missed


def _failures(figures: Figures, args: argparse.Namespace, code: int | None) -> list[str]:
    failures = []
    for number, follower in enumerate(figures.latency.followed, 1):
        got = len(follower.lines) + follower.backfilled
        if got != figures.latency.expected or follower.end != "SUCCESS":
            failures.append(
                f"follower {number} received {got} of {figures.latency.expected} lines, end {follower.end}"
            )
    for busy in figures.busy:
        if not busy.through:
            failures.append(
                "a busy pipeline stopped printing before the window closed (raise --busy-seconds)"
            )
        if any(status != "SUCCESS" for status in busy.statuses):
            failures.append(f"busy pipelines ended {busy.statuses}")
    every_run = [run for runs in figures.runs.values() for run in runs]
    if sum(run.non_2xx + run.socket_errors for run in every_run):
        failures.append("non-2xx responses or socket errors seen by wrk")
    if code not in (0, -signal.SIGINT):
        failures.append(f"server exited with {code}")
    return failures


def _measure(wrk: str, server: Server, api: Api, args: argparse.Namespace, tag: str) -> Figures:
    engine = docker.APIClient(base_url=f"unix://{ENGINE_SOCKET}", timeout=120)
    try:
        print("\n1. overhead of a one-stage pipeline", flush=True)
        overhead = _overhead(api, engine, args, tag)
    finally:
        engine.close()
    print("\n2. log latency", flush=True)
    latency = _latency(api, args, tag)
    print(f"  {len(latency.ms):,} lines received live by {args.followers} followers", flush=True)
    print("\n3. heartbeats while pipelines run", flush=True)
    took = _register_all(wrk, server, args)
    print(f"  registered {args.ids:,} agents in {took:.1f}s", flush=True)
    _wrk(wrk, server, HEARTBEAT_PATH, args, 2, "warm-up")
    runs, busy, idle = _heartbeats(wrk, api, server, args, tag)
    return Figures(overhead, latency, runs, busy, idle)


def _clean(client: docker.DockerClient, tag: str) -> None:
    """Remove the baselines' containers and whatever pipeline containers and volumes a failure left."""
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}={tag}"}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    for volume in client.volumes.list(filters={"label": f"{LABEL}={tag}"}):
        with contextlib.suppress(docker.errors.APIError):
            volume.remove(force=True)
    for container in client.containers.list(all=True, filters={"label": PIPELINE_LABEL}):
        if container.labels.get(PIPELINE_LABEL, "").startswith(f"bench-{tag}-"):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
    for volume in client.volumes.list(filters={"label": PIPELINE_LABEL}):
        if (volume.attrs.get("Labels") or {}).get(PIPELINE_LABEL, "").startswith(f"bench-{tag}-"):
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)


def main() -> int:
    args = _args()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, _on_signal)
    bound = (
        180
        + args.register_timeout
        + (args.rounds + 1) * 3 * 20
        + RUN_TIMEOUT
        + args.hb_rounds * (2 * args.duration + args.busy_seconds + 90)
    )
    signal.alarm(int(bound))
    wrk = _ensure_wrk()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; image {IMAGE}; "
        f"{args.rounds} rounds of the overhead; {args.followers} followers of {args.lines} lines; "
        f"wrk -t{args.threads} -c{args.connections} over {args.ids:,} agent ids, {args.hb_rounds} rounds x "
        f"{args.duration}s, {args.busy} pipelines printing for {args.busy_seconds}s; time bound {bound:.0f}s",
        flush=True,
    )
    tag = uuid.uuid4().hex[:8]
    client = docker.DockerClient(base_url=f"unix://{ENGINE_SOCKET}", timeout=120)
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="worpen-bench-pipelines-"))
    keep = args.keep
    try:
        repos = workdir / "repos"
        args.repository_path, args.branch = _repository(repos)
        args.repository = f"file://{args.repository_path}"
        server = WorpenServe(
            workdir,
            {
                "WORPEN_DOCKER_HOSTS": f"{NODE}=unix://{ENGINE_SOCKET}",
                "WORPEN_PIPELINE_LOCAL_REPOS": str(repos),
                "WORPEN_PIPELINE_NODE_SLOTS": str(args.slots),
                # Registering 10,000 agents can take longer than the default 30 s TTL (see bench/heartbeat).
                "WORPEN_AGENT_TTL": str(args.agent_ttl),
            },
        )
        api: Api | None = None
        try:
            server.wait_ready()
            api = Api(server)
            print(f"server pid {server.proc.pid} on {server.base}; log {server.log_path}", flush=True)
            figures = _measure(wrk, server, api, args, tag)
        finally:
            if api is not None:
                api.close()
            code = server.stop()
        summary, missed = _report(figures, args)
        failures = _failures(figures, args, code)
    except BaseException:
        keep = True
        raise
    finally:
        _clean(client, tag)
        client.close()
        if keep or failures:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(json.dumps(summary))
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    if args.check and missed:
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.SubprocessError, httpx.HTTPError, docker.errors.DockerException) as exc:
        print(f"bench/pipelines: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        print(f"bench/pipelines: interrupted ({exc})", file=sys.stderr)
        sys.exit(130)
