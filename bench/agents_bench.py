"""Agents benchmark (run it through bench/agents; see bench/README.md).

One run: start a real `worpen serve` on loopback (fresh SQLite file in a temp dir, authentication on, no
Docker engine of its own), register the REST heartbeat's agent ids as bench/heartbeat does, then, with
bench/agent_swarm.py holding 1,000 simulated agents over real gRPC streams in one process, measure
1. the server's memory per connected agent: its RSS before the agents connect and after they connected,
   sent their inventory and settled;
2. command round trips through the streams, from the HTTP API: `GET /api/v1/containers/{name}?node=`
   (containers.inspect, answered by the agent) and `POST /api/v1/agents/sync` with a target (sync: a
   fresh inventory and heartbeat, then the acknowledgement), against `GET /api/v1/agents/{id}` (the same
   HTTP path, authentication and server, no stream) as the floor; at the fleet's pace, then while the
   agents flood the server with heartbeats;
3. heartbeats/s the server takes over the streams (the agents send as fast as the server counts them)
   against the REST heartbeat measured with wrk the way bench/heartbeat does, in alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from agent_swarm import KEY_IDS, POLL, SERVICES, _container_id
from heartbeat_bench import (
    HEARTBEAT_PATH,
    BenchError,
    Run,
    Server,
    _cpu_seconds,
    _die_with_parent,
    _ensure_wrk,
    _on_signal,
    _register_all,
    _wrk,
)
from pipelines_bench import WorpenServe

BENCH = Path(__file__).resolve().parent
SWARM = BENCH / "agent_swarm.py"
PREFIX = "bee-"
WARM_PREFIX = "warm-"
WARM_AGENTS = 10
TARGET_RATIO = 1.0
TARGET_P99_MS = 100.0
TARGET_KB_PER_AGENT = 100.0
STEADY_SLACK = 2.5 * POLL
"""Seconds of heartbeats at the steady rate that may be sent and not yet counted."""
FULL = {"agents": 1000, "rounds": 3, "duration": 8, "paced_seconds": 10, "settle": 5.0}
QUICK = {"agents": 100, "rounds": 2, "duration": 4, "paced_seconds": 4, "settle": 2.0}
KINDS = ("inspect", "sync", "floor")
"""Round trips measured, in turn: containers.inspect and sync through an agent's stream, and the floor."""


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/agents", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="about a minute: 100 agents, 2 rounds of 4 s (options given win)",
    )
    p.add_argument("--agents", type=int, help="simulated agents, one stream each (1000)")
    p.add_argument("--channels", type=int, default=10, help="gRPC channels (TCP connections) they share (10)")
    p.add_argument("--rounds", type=int, help="rounds of (REST heartbeats, stream heartbeats) (3)")
    p.add_argument("--duration", type=int, help="seconds measured per run (8)")
    p.add_argument("--ramp", type=float, default=1.0, help="seconds of load before the window opens (1)")
    p.add_argument(
        "--queue",
        type=int,
        default=400,
        help="flooding, about this many stream heartbeats sent and not yet counted (400)",
    )
    p.add_argument(
        "--steady",
        type=float,
        default=0.7,
        help="the load the round trips are measured under: this share of the streams' maximum rate (0.7)",
    )
    p.add_argument("--steady-seconds", type=int, help="seconds of round trips under that load (16)")
    p.add_argument("--paced-seconds", type=int, help="seconds of round trips at the fleet's own pace (10)")
    p.add_argument("--settle", type=float, help="seconds after the agents connected before reading RSS (5)")
    p.add_argument("--ids", type=int, help="REST heartbeat ids, registered first (as many as agents)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    p.add_argument(
        "--register-timeout", type=float, default=240, help="max seconds to register the ids (240)"
    )
    p.add_argument(
        "--register-connections", type=int, default=4, help="wrk connections while registering (4)"
    )
    p.add_argument("--agent-ttl", type=int, default=3600, help="server's WORPEN_AGENT_TTL, seconds (3600)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (database, server and swarm logs)")
    p.add_argument("--check", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.ids = args.ids or args.agents
    args.steady_seconds = args.steady_seconds or 2 * args.duration
    return args


def _percentile(values: Sequence[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else math.nan
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def _settled_rss_kb(pid: int) -> int:
    """The median of a few reads, a quarter of a second apart."""
    reads = []
    for _ in range(5):
        reads.append(_rss_kb(pid))
        time.sleep(0.25)
    return int(statistics.median(reads))


# --- the API and the swarm ----------------------------------------------------------------------------------


class Api:
    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(
            base_url=server.base, headers={"Authorization": f"Bearer {server.key}"}, timeout=30
        )

    def close(self) -> None:
        self.client.close()

    def agent_key(self, name: str, agent_ids: Sequence[str]) -> str:
        answer = self.client.post(
            "/api/v1/apikeys", json={"name": name, "role": "agent", "agents": list(agent_ids)}
        )
        if not answer.is_success:
            raise BenchError(f"creating key {name}: {answer.status_code} {answer.text[:300]}")
        return str(answer.json()["key"])

    def connected(self, prefix: str) -> int:
        """Agents of that prefix the API shows as connected over the channel and ONLINE."""
        count, cursor = 0, None
        while True:
            answer = self.client.get(
                "/api/v1/agents", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}
            )
            if answer.status_code != 200:
                raise BenchError(f"GET /api/v1/agents: {answer.status_code} {answer.text[:300]}")
            count += sum(
                1
                for agent in answer.json()
                if agent["id"].startswith(prefix) and agent.get("connected") and agent["status"] == "ONLINE"
            )
            cursor = answer.headers.get("X-Next-Cursor")
            if cursor is None:
                return count


class Swarm:
    """bench/agent_swarm.py in a process of its own (its own event loop and GIL, as a fleet's agents would
    be), driven over its stdin and stdout."""

    def __init__(
        self, workdir: Path, server: Server, keys: Sequence[str], agents: int, prefix: str, channels: int
    ):
        self._log: IO[bytes] = (workdir / f"swarm-{prefix}log").open("wb")
        self.log_path = workdir / f"swarm-{prefix}log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(SWARM),
                f"--target=127.0.0.1:{server.grpc_port}",
                f"--keys={','.join(keys)}",
                f"--agents={agents}",
                f"--channels={channels}",
                f"--prefix={prefix}",
                f"--metrics={server.base}/metrics",
                f"--admin-key={server.key}",
                f"--server-pid={server.proc.pid}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            preexec_fn=_die_with_parent,
        )

    def answer(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise BenchError(
                f"the swarm did not answer within {timeout:g}s (exit {self.proc.poll()}): "
                f"{self.log_path.read_text()[-2000:]}"
            )
        found: dict[str, Any] = json.loads(line)
        if found.get("phase") == "error":
            raise BenchError(f"the swarm: {found['error']}")
        return found

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> dict[str, Any]:
        self.send("stop")
        try:
            return self.answer(60)
        finally:
            self.proc.wait(timeout=20)
            self._log.close()


def _keys(api: Api, prefix: str, agents: int) -> list[str]:
    """One agent key per 1,000 ids (the most a key is bound to)."""
    return [
        api.agent_key(
            f"{prefix}{block}",
            [f"{prefix}{i:04d}" for i in range(block * KEY_IDS, min(agents, (block + 1) * KEY_IDS))],
        )
        for block in range(math.ceil(agents / KEY_IDS))
    ]


# --- round trips --------------------------------------------------------------------------------------------


@dataclass
class Trips:
    ms: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    errors: list[str] = field(default_factory=list)
    agent_ms: list[dict[str, float]] = field(default_factory=list)
    """p50 and p99 of the agents' own part (reading the command to writing its result), per run."""


def _trip(client: httpx.Client, kind: str, prefix: str, index: int, trips: Trips) -> None:
    """One timed request; a wrong answer is an error, not a figure."""
    agent_id = f"{prefix}{index:04d}"
    name = SERVICES[index % len(SERVICES)][0]
    started = time.perf_counter()
    if kind == "inspect":
        answer = client.get(f"/api/v1/containers/{name}", params={"node": agent_id})
    elif kind == "sync":
        answer = client.post("/api/v1/agents/sync", json={"target": agent_id})
    else:
        answer = client.get(f"/api/v1/agents/{agent_id}")
    took = (time.perf_counter() - started) * 1000
    if answer.status_code != 200 or not _expected(kind, answer.json(), agent_id, name):
        if len(trips.errors) < 10:
            trips.errors.append(f"{kind} {agent_id}: {answer.status_code} {answer.text[:200]}")
        return
    trips.ms[kind].append(took)


def _expected(kind: str, body: Any, agent_id: str, name: str) -> bool:
    if kind == "inspect":
        return bool(body["id"] == _container_id(agent_id, name))
    if kind == "sync":
        return bool(body["acknowledged"] == 1)
    return bool(body["id"] == agent_id)


def _round_trips(client: httpx.Client, agents: int, until: float, trips: Trips, prefix: str = PREFIX) -> None:
    """Sequential requests, the kinds in turn, each to a random agent, until `until` (monotonic)."""
    turn = 0
    while time.monotonic() < until:
        _trip(client, KINDS[turn % len(KINDS)], prefix, random.randrange(agents), trips)
        turn += 1


# --- the rounds ---------------------------------------------------------------------------------------------


@dataclass
class Load:
    """One run of heartbeats over the streams, as the swarm measured it."""

    run: Run
    swarm_cpu: float
    """The swarm's own CPU over the window, in CPUs (1.0: one core busy)."""
    lost: int
    """Heartbeats sent that the server never counted."""

    @property
    def server_busy(self) -> float:
        return self.run.server_cpu_s / self.run.seconds


@dataclass
class Figures:
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    connect_s: float = 0.0
    interval: float = 0.0
    rest: list[Run] = field(default_factory=list)
    stream: list[Load] = field(default_factory=list)
    steady: Load | None = None
    count_ms: float = 0.0
    """Server CPU per read of the count the swarm paces its floods by (/metrics)."""
    paced: Trips = field(default_factory=Trips)
    loaded: Trips = field(default_factory=Trips)
    """Round trips while the streams carried `--steady` of their maximum rate."""
    flooded: Trips = field(default_factory=Trips)
    swarm: dict[str, Any] = field(default_factory=dict)


def _load(
    swarm: Swarm,
    client: httpx.Client,
    args: argparse.Namespace,
    seconds: float,
    trips: Trips,
    rate: float = 0,
) -> Load:
    """Heartbeats over the streams (`rate` a second, 0 as fast as the server takes them) with round
    trips measured meanwhile, from the end of the ramp until the window closes. At a given rate, the
    heartbeats not yet counted are capped at what that rate sends in STEADY_SLACK seconds (at least as
    many as wrk keeps in flight): enough that a count read late never holds the agents back (which would
    send them in bursts), and if the server falls behind, the agents wait as wrk would instead of queueing
    ever more ahead of the commands."""
    queue = max(args.connections, math.ceil(rate * STEADY_SLACK)) if rate else args.queue
    swarm.send(f"load {seconds} {args.ramp} {queue} {rate}")
    swarm.answer(120)  # started, once the server's count settled
    started = time.monotonic()
    time.sleep(args.ramp)
    _round_trips(client, args.agents, started + args.ramp + seconds, trips)
    done = swarm.answer(seconds + 120)
    trips.agent_ms.append(done["agent_ms"])
    run = Run(
        label="stream",
        requests=int(done["heartbeats"]),
        seconds=float(done["seconds"]),
        non_2xx=0,
        socket_errors=0,
        p50_ms=math.nan,
        p99_ms=math.nan,
        server_cpu_s=float(done["server_cpu_s"]),
    )
    # The server may count a heartbeat sent before the load began after the swarm read its base: more
    # counted than sent is not a loss.
    lost = max(0, int(done["sent"]) - int(done["counted"]))
    return Load(run, float(done["swarm_cpu_s"]) / run.seconds, lost)


def _print_run(i: int, run: Run) -> None:
    print(
        f"  round {i} {run.label:<7} {run.rps:>9,.0f} heartbeats/s  "
        f"server CPU {run.cpu_us_per_request:,.0f} us each, {run.server_cpu_s / run.seconds:.2f} CPUs",
        flush=True,
    )


def _count_cost(server: Server, api: Api, reads: int = 20) -> float:
    """Milliseconds of server CPU per read of /metrics, the count the swarm paces its floods by: the
    server's CPU over the reads less its CPU over as long a time without them (the agents' paced
    heartbeats, keepalives, background jobs)."""
    pid = server.proc.pid
    before, started = _cpu_seconds(pid), time.monotonic()
    for _ in range(reads):
        api.client.get("/metrics").raise_for_status()
    took, busy = time.monotonic() - started, _cpu_seconds(pid) - before
    before = _cpu_seconds(pid)
    time.sleep(took)
    idle = _cpu_seconds(pid) - before
    return max(0.0, busy - idle) / reads * 1000


def _warm_up(wrk: str, server: Server, api: Api, workdir: Path, args: argparse.Namespace) -> None:
    """A few agents through every path measured (connect, heartbeats, commands), and the REST route, so
    the baseline RSS holds what the server allocates once, not per agent."""
    warm = Swarm(workdir, server, _keys(api, WARM_PREFIX, WARM_AGENTS), WARM_AGENTS, WARM_PREFIX, 1)
    warm.answer(60)
    warm.send("load 1 0 20 0")
    warm.answer(120)
    warm.answer(120)
    warming = Trips()
    _round_trips(api.client, WARM_AGENTS, time.monotonic() + 1, warming, WARM_PREFIX)
    tally = warm.stop()
    if tally["errors"] or warming.errors:
        raise BenchError(f"the warm-up agents failed: {tally['errors'] + warming.errors}")
    _wrk(wrk, server, HEARTBEAT_PATH, args, 2, "warm-up")


def _measure(wrk: str, server: Server, api: Api, workdir: Path, args: argparse.Namespace) -> Figures:
    figures = Figures()
    took = _register_all(wrk, server, args)
    print(f"registered {args.ids:,} REST heartbeat ids in {took:.1f}s", flush=True)
    _warm_up(wrk, server, api, workdir, args)
    time.sleep(1)
    figures.rss_before_kb = _settled_rss_kb(server.proc.pid)

    swarm = Swarm(workdir, server, _keys(api, PREFIX, args.agents), args.agents, PREFIX, args.channels)
    try:
        connected = swarm.answer(300)
        figures.connect_s, figures.interval = float(connected["seconds"]), float(connected["interval"] or 0)
        print(
            f"{connected['agents']:,} agents connected over {args.channels} channels in "
            f"{figures.connect_s:.1f}s ({connected['failed']} failed); the server paces them every "
            f"{figures.interval:g}s",
            flush=True,
        )
        deadline = time.monotonic() + 60
        while (listed := api.connected(PREFIX)) < args.agents:
            if time.monotonic() > deadline:
                raise BenchError(f"only {listed} of {args.agents} agents show connected and ONLINE")
            time.sleep(0.5)
        time.sleep(args.settle)
        figures.rss_after_kb = _settled_rss_kb(server.proc.pid)
        print(
            f"server RSS {figures.rss_before_kb / 1024:,.1f} MB before, "
            f"{figures.rss_after_kb / 1024:,.1f} MB with {args.agents:,} agents connected",
            flush=True,
        )
        swarm.send("handled")
        swarm.answer(30)
        _round_trips(api.client, args.agents, time.monotonic() + args.paced_seconds, figures.paced)
        swarm.send("handled")
        figures.paced.agent_ms.append(swarm.answer(30)["agent_ms"])
        figures.count_ms = _count_cost(server, api)
        print(f"round trips at the fleet's pace: {sum(map(len, figures.paced.ms.values())):,}", flush=True)
        for i in range(1, args.rounds + 1):
            for label in ("rest", "stream") if i % 2 else ("stream", "rest"):
                server.alive()
                if label == "rest":
                    run = _wrk(wrk, server, HEARTBEAT_PATH, args, args.duration, "REST")
                    figures.rest.append(run)
                else:
                    load = _load(swarm, api.client, args, args.duration, figures.flooded)
                    figures.stream.append(load)
                    run = load.run
                _print_run(i, run)
        rate = args.steady * statistics.median(load.run.rps for load in figures.stream)
        figures.steady = _load(swarm, api.client, args, args.steady_seconds, figures.loaded, rate)
        print(
            f"  steady  {figures.steady.run.rps:>9,.0f} heartbeats/s ({args.steady:g} of the streams' "
            f"median) for {args.steady_seconds}s, round trips meanwhile",
            flush=True,
        )
    finally:
        figures.swarm = swarm.stop()
    return figures


# --- report -------------------------------------------------------------------------------------------------


def _met(met: bool) -> str:
    return "MET" if met else "MISSED"


def _trip_lines(title: str, trips: Trips) -> dict[str, dict[str, float]]:
    print(f"  {title}")
    figures: dict[str, dict[str, float]] = {}
    for kind, label in (
        ("inspect", "GET /containers/{name}?node= (containers.inspect)"),
        ("sync", "POST /agents/sync {target} (sync)"),
        ("floor", "GET /agents/{id} (floor: no stream)"),
    ):
        values = trips.ms[kind]
        row = {
            "p50": _percentile(values, 50),
            "p90": _percentile(values, 90),
            "p99": _percentile(values, 99),
            "max": max(values, default=math.nan),
        }
        figures[kind] = {**{k: round(v, 2) for k, v in row.items()}, "count": len(values)}
        print(
            f"    {label:<52}{row['p50']:>8.2f}{row['p90']:>8.2f}{row['p99']:>8.2f}{row['max']:>9.2f}"
            f"{len(values):>8,}"
        )
    agent = {
        "p50": statistics.median(run["p50"] for run in trips.agent_ms),
        "p99": max(run["p99"] for run in trips.agent_ms),
    }
    figures["agent"] = {k: round(v, 2) for k, v in agent.items()}
    label = "  of which the agents (command read to result sent)"
    print(f"    {label:<52}{agent['p50']:>8.2f}{'':>8}{agent['p99']:>8.2f}")
    return figures


def _report(figures: Figures, args: argparse.Namespace) -> tuple[dict[str, object], bool]:
    assert figures.steady is not None
    per_agent_kb = (figures.rss_after_kb - figures.rss_before_kb) / args.agents
    streams = [load.run for load in figures.stream]
    rest = statistics.median(run.rps for run in figures.rest)
    stream = statistics.median(run.rps for run in streams)
    rest_cpu = statistics.median(run.cpu_us_per_request for run in figures.rest)
    stream_cpu = statistics.median(run.cpu_us_per_request for run in streams)
    ratio = stream / rest
    print(f"\n1. memory ({args.agents:,} agents, each with its inventory of {len(SERVICES)} containers):")
    before, after = figures.rss_before_kb / 1024, figures.rss_after_kb / 1024
    print(f"  server RSS before / after       {before:>10,.1f} / {after:,.1f} MB")
    print(
        f"  per connected agent             {per_agent_kb:>10,.1f} KB   (target < {TARGET_KB_PER_AGENT:g})  "
        f"{_met(per_agent_kb < TARGET_KB_PER_AGENT)}"
    )
    print(f"\n2. heartbeats/s, medians of {args.rounds} rounds of {args.duration}s:")
    print(f"  {'':<40}{'hb/s':>10}{'srv CPU us/hb':>16}   rounds (server CPUs busy)")
    for label, rate, cpu, runs in (
        (f"REST (wrk -c{args.connections}, {args.ids:,} ids)", rest, rest_cpu, figures.rest),
        (f"streams ({args.agents:,} agents, queue {args.queue:,})", stream, stream_cpu, streams),
    ):
        rounds = ", ".join(f"{run.rps:,.0f} ({run.server_cpu_s / run.seconds:.2f})" for run in runs)
        print(f"  {label:<40}{rate:>10,.0f}{cpu:>16,.0f}   {rounds}")
    print(
        f"  ratio streams / REST                  {ratio:>10.2f}   (target >= {TARGET_RATIO:g})  "
        f"{_met(ratio >= TARGET_RATIO)}"
    )
    share = figures.count_ms / 1000 / POLL
    print(
        f"  the count the floods are paced by (/metrics every {POLL:g}s): {figures.count_ms:.1f} ms of "
        f"server CPU a read, {share:.1%} of one CPU (in the streams' figures above); without it, "
        f"about {stream / (1 - share):,.0f}/s ({stream / (1 - share) / rest:.2f} of REST)"
    )
    print(
        "  the swarm's own CPU while flooding: "
        + ", ".join(f"{load.swarm_cpu:.2f}" for load in figures.stream)
        + f" CPUs (of {os.cpu_count()})"
    )
    steady = figures.steady
    print(f"\n3. command round trips, ms{'':<34}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>9}{'count':>8}")
    paced = _trip_lines(
        f"at the fleet's pace (a heartbeat every {figures.interval:g}s per agent):", figures.paced
    )
    loaded = _trip_lines(
        f"under load: {steady.run.rps:,.0f} heartbeats/s over the streams ({args.steady:g} of their maximum, "
        f"server {steady.server_busy:.2f} CPUs busy):",
        figures.loaded,
    )
    flooded = _trip_lines(
        f"saturated: the flood rounds above (about {args.queue:,} heartbeats queued):",
        figures.flooded,
    )
    worst = max(loaded["inspect"]["p99"], loaded["sync"]["p99"])
    print(
        f"  p99 through a stream under load       {worst:>10.2f} ms (target < {TARGET_P99_MS:g})  "
        f"{_met(worst < TARGET_P99_MS)}"
    )
    summary: dict[str, object] = {
        "agents": args.agents,
        "kb_per_agent": round(per_agent_kb, 1),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "rest_heartbeats_per_s": round(rest),
        "stream_heartbeats_per_s": round(stream),
        "ratio_stream_rest": round(ratio, 3),
        "rest_cpu_us": round(rest_cpu),
        "stream_cpu_us": round(stream_cpu),
        "rest_rounds": [round(r.rps) for r in figures.rest],
        "stream_rounds": [round(r.rps) for r in streams],
        "swarm_cpu": [round(load.swarm_cpu, 2) for load in figures.stream],
        "steady_heartbeats_per_s": round(steady.run.rps),
        "round_trips_paced": paced,
        "round_trips_loaded": loaded,
        "round_trips_saturated": flooded,
        "connect_s": round(figures.connect_s, 1),
        "count_read_ms": round(figures.count_ms, 1),
        "stream_heartbeats_per_s_without_count": round(stream / (1 - figures.count_ms / 1000 / POLL)),
    }
    missed = per_agent_kb >= TARGET_KB_PER_AGENT or ratio < TARGET_RATIO or worst >= TARGET_P99_MS
    return summary, missed


def _failures(figures: Figures, code: int | None) -> list[str]:
    failures = []
    swarm = figures.swarm
    if swarm.get("errors"):
        failures.append("agents' streams failed: " + "; ".join(swarm["errors"]))
    if swarm.get("lingering"):
        failures.append(f"{swarm['lingering']} streams were still open after stop")
    for trips in (figures.paced, figures.loaded, figures.flooded):
        if trips.errors:
            failures.append("round trips failed: " + "; ".join(trips.errors))
    lost = [load.lost for load in [*figures.stream, *([figures.steady] if figures.steady else [])]]
    if any(lost):
        failures.append(f"stream heartbeats sent but never counted by the server, per run: {lost}")
    if any(run.non_2xx or run.socket_errors for run in figures.rest):
        failures.append("non-2xx responses or socket errors seen by wrk")
    if code not in (0, -signal.SIGINT):  # uvicorn re-raises the SIGINT it shut down on
        failures.append(f"server exited with {code}")
    return failures


def main() -> int:
    args = _args()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, _on_signal)
    bound = 600 + args.register_timeout + args.rounds * 2 * (args.duration + 60)
    signal.alarm(int(bound))
    wrk = _ensure_wrk()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.agents:,} agents over "
        f"{args.channels} channels, {args.rounds} rounds x {args.duration}s; time bound {bound:.0f}s",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="worpen-bench-agents-"))
    keep = args.keep
    failures: list[str] = []
    try:
        server = WorpenServe(
            workdir,
            {"WORPEN_AGENT_TTL": str(args.agent_ttl), "WORPEN_DOCKER_HOSTS": "none", "WORPEN_AUTH": "on"},
        )
        api: Api | None = None
        try:
            server.wait_ready()
            print(f"server pid {server.proc.pid} on {server.base}, gRPC on {server.grpc_port}", flush=True)
            api = Api(server)
            figures = _measure(wrk, server, api, workdir, args)
        finally:
            if api is not None:
                api.close()
            code = server.stop()
        summary, missed = _report(figures, args)
        failures = _failures(figures, code)
        print(f"\nthe agents answered: {figures.swarm.get('answered')}; server exit code {code}")
    except BaseException:
        keep = True
        raise
    finally:
        if keep or failures:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(summary))
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 3 if args.check and missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.SubprocessError) as exc:
        print(f"bench/agents: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        print(f"bench/agents: interrupted ({exc})", file=sys.stderr)
        sys.exit(130)
