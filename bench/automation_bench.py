"""Rule engine benchmark (run it through bench/automation; see bench/README.md).

One run: start bench/server.py with its synthetic container engine (WORPEN_BENCH_SYNTHETIC_ENGINE: deaths
fed over HTTP, restarts that do nothing) on loopback with a fresh SQLite file, then measure
1. the dry-run's latency against what the sandbox and mini-racer cost in this process,
2. the events/s the rule engine sustains with 50 active rules on bursts of container deaths, against the
   sandbox's own runs/s in this process,
3. heartbeats/s with wrk, without rules and while the rules handle a steady stream of deaths, next to the
   raw ASGI no-op, in interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from heartbeat_bench import (
    HEARTBEAT_PATH,
    RAW_PATH,
    SERVER,
    BenchError,
    Run,
    Server,
    _ensure_wrk,
    _free_port,
    _on_signal,
    _register_all,
    _wrk,
)
from py_mini_racer import MiniRacer

from worpen_core.automation.plan import SandboxLimits, ScriptStatus
from worpen_core.events.model import JsonValue
from worpen_infra.sandbox.mini_racer import MiniRacerSandbox

SCRIPT = """if (event.exit_code === 137) {
  log.warn("OOM Detected on " + service);
  docker.restart(container_id);
  notify.slack("#ops-alerts", "Restarted " + service);
}"""
"""The issue's example, as written."""
CHANNEL = "#ops-alerts"
DRY_RUN_PATH = "/api/v1/automation/dry-run"
RULES_PATH = "/api/v1/automation/rules"
CHANNELS_PATH = "/api/v1/automation/channels"
EVENTS_PATH = "/bench/events"
PROGRESS_PATH = "/bench/automation"
NODE = "bench"
"""The synthetic engine's node (bench/server.py)."""
TARGET_RATIO = 0.9
POLL_SECONDS = 0.05
"""Between two reads of the engine's progress (each is a request and a query: not too often)."""
RAMP_SECONDS = 1.0
"""How long a stream of deaths runs before the heartbeats' measured window opens."""
FULL = {
    "dry_runs": 300,
    "events": 1000,
    "bursts": 2,
    "rounds": 3,
    "duration": 5,
    "ids": 10_000,
}
QUICK = {
    "dry_runs": 100,
    "events": 500,
    "bursts": 1,
    "rounds": 2,
    "duration": 4,
    "ids": 1000,
}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/automation", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="about 2 minutes: 100 dry-runs, one burst of 500, 1000 ids, 2 rounds of 4 s (options given win)",
    )
    p.add_argument("--dry-runs", type=int, help="sequential dry-runs timed, and runs of each floor (300)")
    p.add_argument("--events", type=int, help="container deaths per measured burst (1000)")
    p.add_argument("--bursts", type=int, help="measured bursts; the figure is their median (2)")
    p.add_argument("--rules", type=int, default=50, help="active rules, one per service prefix (50)")
    p.add_argument("--containers", type=int, default=4, help="containers per rule the deaths rotate over (4)")
    p.add_argument(
        "--every137", type=int, default=10, help="one death in this many exits with 137 (10; 0: none)"
    )
    p.add_argument(
        "--rounds", type=int, help="heartbeat rounds of (raw, heartbeat, heartbeat with rules) (3)"
    )
    p.add_argument("--duration", type=int, help="seconds per measured wrk run (5)")
    p.add_argument(
        "--stream-rate",
        type=float,
        default=0,
        help="deaths/s streamed while heartbeats are measured; 0: 0.8 x what the bursts sustained (0)",
    )
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
    p.add_argument(
        "--drain-timeout", type=float, default=120, help="max seconds for the engine to catch up (120)"
    )
    p.add_argument(
        "--server",
        default=str(SERVER),
        help="server launcher to run instead of bench/server.py, to compare a variant (A/B experiments)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (database, server log)")
    p.add_argument("--check", action="store_true", help="exit 3 when the heartbeat ratio is missed")
    args = p.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else float("nan")


def _container_id(name: str) -> str:
    """The id the synthetic engine gives a container of that name."""
    return hashlib.sha256(name.encode()).hexdigest()


def _context(exit_code: int, name: str = "svc-00-0") -> dict[str, JsonValue]:
    """What a rule's script sees of a death on the synthetic engine (the engine's own shape)."""
    cid = _container_id(name)
    return {
        "event": {"type": "ContainerDied", "trigger": "CONTAINER_DIED", "exit_code": exit_code},
        "container": {"id": cid, "name": name, "image": "bench/synthetic:1", "node": NODE},
        "service": name,
        "container_id": cid,
        "node": NODE,
    }


def _mix(count: int, every137: int, rules: int) -> list[dict[str, JsonValue]]:
    """Contexts in the proportions of the benchmark's deaths."""
    return [
        _context(137 if every137 and i % every137 == 0 else 1, f"svc-{i % rules:02d}-0") for i in range(count)
    ]


# --- the server over HTTP -----------------------------------------------------------------------------------


class Api:
    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(
            base_url=server.base, headers={"Authorization": f"Bearer {server.key}"}, timeout=30
        )

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, body: object = None, expect: int = 200) -> dict[str, object]:
        answer = self.client.request(method, path, json=body)
        if answer.status_code != expect:
            raise BenchError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        found: dict[str, object] = answer.json()
        return found

    def progress(self) -> Progress:
        state = {key: int(str(value)) for key, value in self.call("GET", PROGRESS_PATH).items()}
        return Progress(
            events_seen=state["eventsSeen"],
            runs_recorded=state["runsRecorded"],
            cursor=state["cursor"],
            queued=state["queued"],
            last_died=state["lastDied"],
            fed=state["fed"],
            feeding=state["feeding"],
            restarts=state["restarts"],
            bus_depth=state["busDepth"],
        )


@dataclass(frozen=True)
class Progress:
    """GET /bench/automation: the rule engine's counters and the synthetic engine's."""

    events_seen: int
    runs_recorded: int
    cursor: int
    """The journal id up to which every event was handled by every rule it went to."""
    queued: int
    last_died: int
    """The newest ContainerDied in the journal."""
    fed: int
    """Deaths the synthetic engine was given."""
    feeding: int
    """Steady streams still being fed."""
    restarts: int
    """Restarts the rules applied (no-ops on the synthetic engine)."""
    bus_depth: int

    def caught_up(self, seen: int) -> bool:
        """Every death fed was taken in (`seen` of them at least) and handled by every rule it went to."""
        return (
            not self.feeding
            and self.events_seen >= seen
            and self.cursor >= self.last_died
            and not self.queued
            and not self.bus_depth
        )


def _wait(api: Api, server: Server, seen: int, timeout: float) -> tuple[Progress, float]:
    """Poll until the engine caught up; the progress then and when (monotonic)."""
    end = time.monotonic() + timeout
    while True:
        state = api.progress()
        now = time.monotonic()
        if state.caught_up(seen):
            return state, now
        if now > end:
            raise BenchError(f"the rule engine did not catch up within {timeout:g}s: {state}")
        server.alive()
        time.sleep(POLL_SECONDS)


def _set_rules(api: Api, ids: Sequence[str], active: bool) -> None:
    for rule_id in ids:
        api.call("PUT", f"{RULES_PATH}/{rule_id}", {"active": active})


# --- 1. dry-run latency ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    dry_run_ms: list[float]
    mini_racer_ms: list[float]
    sandbox_ms: list[float]


def _dry_runs(api: Api, count: int) -> list[float]:
    body = {"script": SCRIPT, "mockContext": _context(137)}
    for _ in range(min(20, count)):
        api.call("POST", DRY_RUN_PATH, body)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = api.call("POST", DRY_RUN_PATH, body)
        times.append((time.perf_counter() - started) * 1000)
        actions = answer.get("actions")
        if answer.get("status") != "SUCCESS" or not isinstance(actions, list) or len(actions) != 2:
            raise BenchError(f"the dry-run did not plan the restart and the notification: {answer}")
    return times


def _bare_source(context: dict[str, JsonValue]) -> str:
    """The script with the context as constants and a capability API that only records the plan: what V8
    itself needs for it, without the sandbox's own steps (prelude, frozen context, limits, report)."""
    names = ", ".join(context)
    return (
        "(function () {\n"
        f"const {{{names}}} = {json.dumps(context)};\n"
        "const plan = [], logs = [];\n"
        "const docker = {restart: (id) => plan.push(['docker.restart', id])};\n"
        "const notify = {slack: (channel, text) => plan.push(['notify.slack', channel, text])};\n"
        "const log = {warn: (message) => logs.push(['warn', message])};\n"
        f"{SCRIPT}\n"
        "return JSON.stringify({plan, logs});\n"
        "})()"
    )


def _mini_racer(count: int) -> list[float]:
    """New MiniRacer, eval, close: one fresh isolate per run, as the sandbox makes one per run."""
    source = _bare_source(_context(137))
    times = []
    for i in range(count + min(20, count)):
        started = time.perf_counter()
        racer = MiniRacer()
        answer = racer.eval(source)
        racer.close()
        if i >= min(20, count):
            times.append((time.perf_counter() - started) * 1000)
        if not isinstance(answer, str) or "docker.restart" not in answer:
            raise BenchError(f"mini-racer did not run the script: {answer!r}")
    return times


async def _sandbox_sequential(count: int) -> list[float]:
    sandbox = MiniRacerSandbox()
    context = _context(137)
    times = []
    try:
        for i in range(count + min(20, count)):
            started = time.perf_counter()
            outcome = await sandbox.run(SCRIPT, context, SandboxLimits())
            if i >= min(20, count):
                times.append((time.perf_counter() - started) * 1000)
            if outcome.status is not ScriptStatus.SUCCESS or len(outcome.actions) != 2:
                raise BenchError(f"the sandbox did not plan the restart: {outcome}")
    finally:
        await sandbox.close()
    return times


async def _sandbox_throughput(contexts: Sequence[dict[str, JsonValue]], concurrency: int) -> float:
    """Runs/s of the sandbox on `contexts` with `concurrency` runs in flight (the engine runs one per
    rule at a time)."""
    sandbox = MiniRacerSandbox()
    todo = list(contexts)
    failed: list[str] = []

    async def worker() -> None:
        while todo:
            outcome = await sandbox.run(SCRIPT, todo.pop(), SandboxLimits())
            if outcome.status is not ScriptStatus.SUCCESS:
                failed.append(f"{outcome.status.value}: {outcome.error}")

    try:
        for _ in range(20):
            await sandbox.run(SCRIPT, contexts[0], SandboxLimits())
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - started
    finally:
        await sandbox.close()
    if failed:
        raise BenchError(f"{len(failed)} sandbox runs failed, e.g. {failed[0]}")
    return len(contexts) / took


def _latency(api: Api, count: int) -> Latency:
    dry = _dry_runs(api, count)
    bare = _mini_racer(count)
    sandboxed = asyncio.run(_sandbox_sequential(count))
    return Latency(dry, bare, sandboxed)


# --- 2. rule engine throughput ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    events: int
    seconds: float
    runs: int
    restarts: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.seconds


def _setup_rules(api: Api, server: Server, rules: int) -> list[str]:
    """The channel the script notifies (the server's raw no-op stands in for Slack) and the rules."""
    api.call(
        "POST", CHANNELS_PATH, {"name": CHANNEL, "kind": "slack", "url": f"{server.base}{RAW_PATH}"}, 201
    )
    ids = []
    for i in range(rules):
        rule = api.call(
            "POST",
            RULES_PATH,
            {
                "name": f"bench-{i:02d}",
                "trigger": "CONTAINER_DIED",
                "targetService": f"svc-{i:02d}-*",
                "script": SCRIPT,
                "active": True,
            },
            201,
        )
        ids.append(str(rule["id"]))
    return ids


def _feed(api: Api, args: argparse.Namespace, count: int, per_second: float = 0) -> None:
    api.call(
        "POST",
        EVENTS_PATH,
        {
            "count": count,
            "every137": args.every137,
            "rules": args.rules,
            "containers": args.containers,
            "perSecond": per_second,
        },
        202,
    )


def _burst(api: Api, server: Server, args: argparse.Namespace, count: int) -> Burst:
    """`count` deaths at once; timed until the engine's cursor passed the last of them."""
    before, _ = _wait(api, server, 0, args.drain_timeout)
    started = time.monotonic()
    _feed(api, args, count)
    after, done = _wait(api, server, before.events_seen + count, args.drain_timeout)
    return Burst(
        count, done - started, after.runs_recorded - before.runs_recorded, after.restarts - before.restarts
    )


# --- 3. heartbeats while rules run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """A heartbeat run during a stream of deaths, and what the rule engine did meanwhile."""

    run: Run
    fed_per_s: float
    """Deaths the synthetic engine was given meanwhile, a second."""
    events_per_s: float
    runs_per_s: float


def _heartbeats(
    wrk: str, api: Api, server: Server, args: argparse.Namespace, rule_ids: Sequence[str], rate: float
) -> tuple[dict[str, list[Run]], list[Loaded]]:
    """Rounds of the raw no-op, heartbeats with the rules off and no deaths, and heartbeats with the rules
    on and deaths streamed at `rate` through the whole window; the order rotates every round."""
    runs: dict[str, list[Run]] = {"raw": [], "heartbeat": [], "heartbeat+rules": []}
    loaded: list[Loaded] = []
    active = True

    def settle() -> Progress:
        """Every run starts the same way: the engine caught up, then a pause as long as the ramp of a
        stream (what the server still had to do after the previous run is not measured in the next)."""
        state, _ = _wait(api, server, 0, args.drain_timeout)
        time.sleep(RAMP_SECONDS)
        return state

    def raw() -> None:
        settle()
        runs["raw"].append(_wrk(wrk, server, RAW_PATH, args, args.duration, "raw"))

    def quiet() -> None:
        nonlocal active
        if active:
            _set_rules(api, rule_ids, active=False)
            active = False
        settle()
        runs["heartbeat"].append(_wrk(wrk, server, HEARTBEAT_PATH, args, args.duration, "heartbeat"))

    def busy() -> None:
        nonlocal active
        if not active:
            _set_rules(api, rule_ids, active=True)
            active = True
        before, _ = _wait(api, server, 0, args.drain_timeout)
        _feed(api, args, max(1, round(rate * (args.duration + 2 * RAMP_SECONDS))), rate)
        time.sleep(RAMP_SECONDS)
        start = api.progress()
        run = _wrk(wrk, server, HEARTBEAT_PATH, args, args.duration, "heartbeat+rules")
        end = api.progress()
        runs["heartbeat+rules"].append(run)
        loaded.append(
            Loaded(
                run,
                (end.fed - start.fed) / run.seconds,
                (end.events_seen - start.events_seen) / run.seconds,
                (end.runs_recorded - start.runs_recorded) / run.seconds,
            )
        )
        _wait(api, server, before.events_seen + end.fed - before.fed, args.drain_timeout)

    steps: list[tuple[str, Callable[[], None]]] = [
        ("raw", raw),
        ("heartbeat", quiet),
        ("heartbeat+rules", busy),
    ]
    for i in range(1, args.rounds + 1):
        shift = (i - 1) % len(steps)
        for label, step in steps[shift:] + steps[:shift]:
            step()
            last = runs[label][-1]
            print(
                f"  round {i} {label:<16} {last.rps:>9,.0f} req/s  p99 {last.p99_ms:6.2f} ms  "
                f"non-2xx {last.non_2xx}  socket errors {last.socket_errors}"
                + (
                    f"  (meanwhile: {loaded[-1].fed_per_s:,.0f} deaths/s fed, the engine took in "
                    f"{loaded[-1].events_per_s:,.0f} events/s, "
                    f"{loaded[-1].runs_per_s:,.0f} runs/s)"
                    if label == "heartbeat+rules"
                    else ""
                ),
                flush=True,
            )
    if not active:
        _set_rules(api, rule_ids, active=True)
    return runs, loaded


# --- report -------------------------------------------------------------------------------------------------


def _stored(db_path: Path) -> tuple[dict[str, int], list[tuple[str, int]], int, int, int]:
    """Runs by status, the most frequent reasons of failed runs, incidents, their occurrences, agents."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM automation_runs GROUP BY status").fetchall())
        reasons = db.execute(
            "SELECT reason, count(*) FROM automation_runs WHERE status = 'FAILED' "
            "GROUP BY reason ORDER BY count(*) DESC LIMIT 3"
        ).fetchall()
        incidents, occurrences = db.execute(
            "SELECT count(*), coalesce(sum(occurrences), 0) FROM incidents"
        ).fetchone()
        agents = db.execute("SELECT count(*) FROM agents").fetchone()[0]
    return (
        {str(k): int(v) for k, v in statuses.items()},
        [(str(reason), int(n)) for reason, n in reasons],
        int(incidents),
        int(occurrences),
        int(agents),
    )


@dataclass(frozen=True)
class Figures:
    latency: Latency
    sandbox_rps: float
    """Sandbox runs/s in this process, one run in flight per rule."""
    sandbox_rps_one: float
    """The same, one run at a time."""
    bursts: list[Burst]
    rate: float
    """Deaths/s streamed during the heartbeat runs with rules."""
    runs: dict[str, list[Run]]
    loaded: list[Loaded]


def _line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<30}{value:>10}  {note}".rstrip())


def _report(figures: Figures, args: argparse.Namespace) -> tuple[dict[str, object], float]:
    """Prints the medians; returns the summary and the heartbeat ratio."""
    latency = figures.latency
    dry, bare, sandboxed = (
        _median(times) for times in (latency.dry_run_ms, latency.mini_racer_ms, latency.sandbox_ms)
    )
    events_per_s = _median([burst.events_per_s for burst in figures.bursts])
    runs_per_s = _median([burst.runs_per_s for burst in figures.bursts])
    quiet, busy, raw = (
        _median([run.rps for run in figures.runs[label]]) for label in ("heartbeat", "heartbeat+rules", "raw")
    )
    ratio = busy / quiet
    under_load = _median([item.events_per_s for item in figures.loaded])
    print("\nresults (medians):")
    _line("dry-run over HTTP", f"{dry:.2f} ms", f"p90 {_p90(latency.dry_run_ms):.2f} ms")
    _line(
        "mini-racer in process",
        f"{bare:.2f} ms",
        f"p90 {_p90(latency.mini_racer_ms):.2f} ms (new isolate, eval, close)",
    )
    _line("MiniRacerSandbox.run", f"{sandboxed:.2f} ms", f"p90 {_p90(latency.sandbox_ms):.2f} ms")
    _line("ratio dry-run / mini-racer", f"{dry / bare:.2f}")
    _line("ratio dry-run / sandbox", f"{dry / sandboxed:.2f}")
    _line("rule engine events/s", f"{events_per_s:,.0f}", f"{args.rules} rules, bursts of {args.events:,}")
    _line("rule engine runs/s", f"{runs_per_s:,.0f}")
    _line(
        "sandbox runs/s in process",
        f"{figures.sandbox_rps:,.0f}",
        f"{args.rules} in flight; one at a time: {figures.sandbox_rps_one:,.0f}",
    )
    _line("ratio engine / sandbox", f"{events_per_s / figures.sandbox_rps:.2f}")
    _line("heartbeats/s, no rules", f"{quiet:,.0f}")
    _line(
        "heartbeats/s, rules running",
        f"{busy:,.0f}",
        f"deaths streamed at {figures.rate:,.0f}/s; the engine took in {under_load:,.0f}/s meanwhile",
    )
    _line(
        "ratio with / without rules",
        f"{ratio:.3f}",
        f"(target >= {TARGET_RATIO})  {'MET' if ratio >= TARGET_RATIO else 'MISSED'}",
    )
    _line("raw ASGI no-op req/s", f"{raw:,.0f}", "this machine's ceiling")
    summary: dict[str, object] = {
        "dry_run_median_ms": round(dry, 2),
        "dry_run_p90_ms": round(_p90(latency.dry_run_ms), 2),
        "mini_racer_median_ms": round(bare, 2),
        "sandbox_median_ms": round(sandboxed, 2),
        "ratio_dry_run_vs_mini_racer": round(dry / bare, 2),
        "ratio_dry_run_vs_sandbox": round(dry / sandboxed, 2),
        "engine_events_per_s": round(events_per_s),
        "engine_runs_per_s": round(runs_per_s),
        "sandbox_runs_per_s": round(figures.sandbox_rps),
        "sandbox_runs_per_s_one_at_a_time": round(figures.sandbox_rps_one),
        "bursts_events_per_s": [round(burst.events_per_s) for burst in figures.bursts],
        "heartbeats_per_s": round(quiet),
        "heartbeats_with_rules_per_s": round(busy),
        "ratio_with_rules": round(ratio, 3),
        "raw_asgi_per_s": round(raw),
        "stream_rate": round(figures.rate),
        "engine_events_per_s_under_heartbeats": round(under_load),
        **{f"{label}_rounds": [round(run.rps) for run in runs] for label, runs in figures.runs.items()},
    }
    return summary, ratio


def _checks(
    figures: Figures, final: Progress, db_path: Path, code: int | None, args: argparse.Namespace
) -> tuple[dict[str, object], list[str]]:
    """Prints what the run left behind; returns it for the summary, and what failed."""
    statuses, reasons, incidents, occurrences, agents = _stored(db_path)
    every_run = [run for runs in figures.runs.values() for run in runs]
    non_2xx = sum(run.non_2xx for run in every_run)
    socket_errors = sum(run.socket_errors for run in every_run)
    print("\nchecks:")
    _line("deaths fed / taken in", f"{final.fed:,} / {final.events_seen:,}")
    _line("runs by status", "", ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items())))
    for reason, count in reasons:
        _line("", f"{count:,}", f"failed: {reason}")
    _line("restarts applied", f"{final.restarts:,}", "no-ops on the synthetic engine")
    _line("incidents, occurrences", f"{incidents:,}, {occurrences:,}")
    _line("non-2xx, socket errors (wrk)", f"{non_2xx}, {socket_errors}")
    _line("agents in SQLite", f"{agents:,}", f"expected {args.ids:,}")
    _line("server exit code", f"{code}")
    failures = []
    if final.events_seen < final.fed:
        failures.append(f"{final.fed - final.events_seen} deaths fed never reached the rule engine")
    if non_2xx or socket_errors:
        failures.append("non-2xx responses or socket errors seen by wrk")
    if agents != args.ids:
        failures.append(f"{agents} agents persisted, expected {args.ids}")
    if code not in (0, -signal.SIGINT):  # uvicorn re-raises the SIGINT it shut down on
        failures.append(f"server exited with {code}")
    return {"runs_by_status": statuses, "incidents": incidents, "occurrences": occurrences}, failures


def _measure(wrk: str, server: Server, api: Api, args: argparse.Namespace) -> Figures:
    print("\n1. dry-run latency", flush=True)
    latency = _latency(api, args.dry_runs)
    print(f"  {args.dry_runs} dry-runs, mini-racer runs and sandbox runs timed", flush=True)

    print("\n2. rule engine throughput", flush=True)
    rule_ids = _setup_rules(api, server, args.rules)
    contexts = _mix(min(args.events, 1000), args.every137, args.rules)
    sandbox_rps = asyncio.run(_sandbox_throughput(contexts, args.rules))
    sandbox_rps_one = asyncio.run(_sandbox_throughput(contexts[: len(contexts) // 2], 1))
    warm = _burst(api, server, args, min(args.events, 200))
    print(f"  warm-up burst of {warm.events}: {warm.events_per_s:,.0f} events/s", flush=True)
    bursts = []
    for i in range(1, args.bursts + 1):
        burst = _burst(api, server, args, args.events)
        bursts.append(burst)
        print(
            f"  burst {i}: {burst.events:,} deaths in {burst.seconds:.2f}s: "
            f"{burst.events_per_s:,.0f} events/s, {burst.runs_per_s:,.0f} runs/s "
            f"({burst.runs:,} runs, {burst.restarts} restarts applied)",
            flush=True,
        )

    print("\n3. heartbeats while rules run", flush=True)
    took = _register_all(wrk, server, args)
    print(f"  registered {args.ids:,} agents in {took:.1f}s", flush=True)
    for path in (RAW_PATH, HEARTBEAT_PATH):
        _wrk(wrk, server, path, args, 2, "warm-up")
    rate = args.stream_rate or 0.8 * _median([burst.events_per_s for burst in bursts])
    print(f"  deaths streamed at {rate:,.0f}/s during the heartbeat+rules runs", flush=True)
    runs, loaded = _heartbeats(wrk, api, server, args, rule_ids, rate)
    return Figures(latency, sandbox_rps, sandbox_rps_one, bursts, rate, runs, loaded)


def main() -> int:
    args = _args()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, _on_signal)
    bound = (
        180
        + args.register_timeout
        + args.dry_runs * 0.2
        + (args.bursts + 1 + args.rounds) * args.drain_timeout
        + args.rounds * 3 * (args.duration + 35)
    )
    signal.alarm(int(bound))
    wrk = _ensure_wrk()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.rules} rules, "
        f"bursts of {args.events:,} deaths (1 in {args.every137} with 137) x {args.bursts}, "
        f"{args.dry_runs} dry-runs, wrk -t{args.threads} -c{args.connections} over {args.ids:,} agent ids, "
        f"{args.rounds} rounds x {args.duration}s; time bound {bound:.0f}s",
        flush=True,
    )
    # bench/heartbeat's Server passes this process's environment on to the server it starts.
    os.environ["WORPEN_BENCH_SYNTHETIC_ENGINE"] = "1"
    os.environ["WORPEN_ALLOW_PRIVATE_WEBHOOKS"] = "true"  # the channel posts to the server's raw no-op
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="worpen-bench-automation-"))
    keep = args.keep
    try:
        server = Server(workdir, _free_port(), args.agent_ttl, Path(args.server))
        api: Api | None = None
        try:
            server.wait_ready()
            api = Api(server)
            print(f"server pid {server.proc.pid} on {server.base}; log {server.log_path}", flush=True)
            figures = _measure(wrk, server, api, args)
            final = api.progress()
        finally:
            if api is not None:
                api.close()
            code = server.stop()
        summary, ratio = _report(figures, args)
        left, failures = _checks(figures, final, server.db_path, code, args)
        summary |= left
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
    if args.check and ratio < TARGET_RATIO:
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.SubprocessError) as exc:
        print(f"bench/automation: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        print(f"bench/automation: interrupted ({exc})", file=sys.stderr)
        sys.exit(130)
