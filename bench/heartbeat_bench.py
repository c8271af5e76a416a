"""Heartbeat throughput benchmark (run it through bench/heartbeat; see bench/README.md).

One run: start bench/server.py (the real app, a no-op Litestar route, a raw ASGI no-op and a gRPC no-op)
on loopback with a fresh SQLite file, register every agent id, then measure with wrk, in turns, the raw
ASGI no-op, the authenticated no-op and the real heartbeat route, then the gRPC heartbeat against the
gRPC no-op, and print per-round figures, medians and the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

BENCH = Path(__file__).resolve().parent
LUA = BENCH / "heartbeat.lua"
SERVER = BENCH / "server.py"
HEARTBEAT_PATH = "/api/v1/internal/heartbeat"
NOOP_PATH = "/bench/noop"
RAW_PATH = "/bench/raw"
GRPC_LOAD = BENCH / "grpc_load.py"
GRPC_HEARTBEAT = "/worpen.v1.FleetService/ReportHeartbeat"
GRPC_NOOP = "/worpen.bench.v1.Bench/Noop"
TARGET_RAW_RATIO = 0.5
TARGET_RATIO = 0.75
TARGET_HEARTBEATS = 5000.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


class Target(Protocol):
    """What wrk is pointed at: one server, or replicas behind a proxy (bench/replicas_bench.py)."""

    @property
    def base(self) -> str: ...

    @property
    def key(self) -> str: ...

    def cpu_seconds(self) -> float: ...

    def alive(self) -> None: ...


class Deadline(BenchError):
    pass


@dataclass(frozen=True)
class Run:
    label: str
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/heartbeat", description=__doc__)
    p.add_argument("--ids", type=int, default=10_000, help="distinct agent ids, rotated (default 10000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of (no-op, heartbeat) (default 3)")
    p.add_argument("--duration", type=int, default=5, help="seconds per measured run (default 5)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument(
        "--grpc-rounds",
        type=int,
        default=3,
        help="rounds of (gRPC no-op, gRPC heartbeat); 0: none (default 3)",
    )
    p.add_argument("--grpc-concurrency", type=int, default=64, help="gRPC calls in flight (default 64)")
    p.add_argument(
        "--register-timeout",
        type=float,
        help="max seconds to register every id (default 240; 600 with --database postgresql, where a "
        "registration's commit waits for the disk)",
    )
    p.add_argument(
        "--register-connections", type=int, default=4, help="wrk connections while registering (default 4)"
    )
    p.add_argument(
        "--agent-ttl", type=int, default=3600, help="server's WORPEN_AGENT_TTL, seconds (default 3600)"
    )
    p.add_argument(
        "--server",
        default=str(SERVER),
        help="server launcher to run instead of bench/server.py, to compare a variant (A/B experiments)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (database, server log)")
    p.add_argument(
        "--py-spy",
        metavar="DIR",
        help="after the rounds, record the server with py-spy during one more run of each route "
        "(needs `uv pip install py-spy`); writes DIR/{heartbeat,noop}.txt (collapsed stacks) and a top list",
    )
    p.add_argument("--check", action="store_true", help="exit 3 when a target is missed")
    p.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="postgresql: the servers run on a throwaway PostgreSQL cluster (durable commits) and are "
        "measured through a round-robin proxy (nginx); see bench/replicas (default sqlite)",
    )
    p.add_argument(
        "--database-url",
        help="with --database postgresql: an EMPTY database (postgresql+asyncpg://...) to use instead of a "
        "throwaway cluster",
    )
    p.add_argument(
        "--replicas", type=int, choices=(1, 2), default=1, help="with --database postgresql (default 1)"
    )
    p.add_argument(
        "--proxy-workers", type=int, default=1, help="nginx worker processes, with a proxy (default 1)"
    )
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: 1,000 ids, 2 rounds of 3 s, 1 gRPC round"
    )
    args = p.parse_args()
    if args.quick:
        args.ids, args.rounds, args.duration, args.grpc_rounds = 1000, 2, 3, min(args.grpc_rounds, 1)
    if args.register_timeout is None:
        args.register_timeout = 600.0 if args.database == "postgresql" else 240.0
    return args


# --- process and time bounds ------------------------------------------------------------------------------


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    if signum == signal.SIGALRM:
        raise Deadline("the benchmark ran past its time bound")
    raise KeyboardInterrupt(f"signal {signum}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _die_with_parent() -> None:
    """In a child process (server, wrk, py-spy): get SIGTERM if the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("wrk is missing; install it (Debian: apt-get install -y wrk) or run as root")
    print("wrk is missing; installing it with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(cmd, check=True, timeout=300, env=env, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get installed wrk but it is not on PATH")
    return found


class Server:
    def __init__(
        self,
        workdir: Path,
        port: int,
        agent_ttl: int,
        launcher: Path,
        *,
        name: str = "server",
        database_url: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        """`database_url`: another database than a fresh SQLite file in `workdir`; `settings`: more
        environment variables (a replica's id, the shared secrets' key)."""
        self.port = port
        self.grpc_port = _free_port()
        self.log_path = workdir / f"{name}.log"
        self.db_path = workdir / ("worpen.db" if name == "server" else f"{name}.db")
        self._log: IO[bytes] = self.log_path.open("wb")
        env = {
            **os.environ,
            "WORPEN_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{self.db_path}",
            "WORPEN_HOST": "127.0.0.1",
            "WORPEN_PORT": str(port),
            "WORPEN_GRPC_HOST": "127.0.0.1",
            "WORPEN_GRPC_PORT": "0",
            "WORPEN_BENCH_GRPC_PORT": str(self.grpc_port),
            "WORPEN_LOG_FORMAT": "json",
            "WORPEN_LOG_LEVEL": "info",
            "WORPEN_AUTH": "on",
            # Registering 10,000 agents can take longer than the default 30 s TTL; agents gone OFFLINE
            # would make every measured heartbeat a recovery (a commit), not the steady state.
            "WORPEN_AGENT_TTL": str(agent_ttl),
            **(settings or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(launcher)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() can end it and only it
            preexec_fn=_die_with_parent,
        )
        self.key = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60, *, key: str | None = None) -> None:
        """Until /health answers; then the initial admin key from the log, unless given (a replica on a
        database another server already made prints none)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base}/health", timeout=2) as answer,
            ):
                if answer.status == 200:
                    break
            time.sleep(0.2)
        else:
            raise BenchError(f"server not ready within {timeout:g}s; see {self.log_path}")
        if key is not None:
            self.key = key
            return
        found = re.search(rb"^\s+(wpn_[A-Za-z0-9_-]+)\s*$", self.log_path.read_bytes(), re.MULTILINE)
        if not found:
            raise BenchError("the server printed no initial admin key (is the database fresh?)")
        self.key = found.group(1).decode()

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def metrics(self) -> dict[str, float]:
        request = urllib.request.Request(
            f"{self.base}/metrics", headers={"Authorization": f"Bearer {self.key}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"server died with {self.proc.returncode}; see {self.log_path}")

    def stop(self) -> int | None:
        """SIGINT (uvicorn's graceful shutdown: the last telemetry flush), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


# --- load ---------------------------------------------------------------------------------------------------


def _wrk_command(
    wrk: str,
    server: Target,
    path: str,
    args: argparse.Namespace,
    seconds: float,
    *,
    connections: int | None = None,
    register: bool = False,
) -> list[str]:
    return [
        wrk,
        f"-t{args.threads}",
        f"-c{connections or args.connections}",
        f"-d{max(1, int(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"{server.base}{path}",
        "--",
        server.key,
        str(args.ids),
        str(args.threads),
        *(["register"] if register else []),
    ]


def _wrk(wrk: str, server: Target, path: str, args: argparse.Namespace, seconds: float, label: str) -> Run:
    server.alive()
    cmd = _wrk_command(wrk, server, path, args, seconds)
    cpu_before = server.cpu_seconds()
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 30, check=False, preexec_fn=_die_with_parent
    )
    cpu = server.cpu_seconds() - cpu_before
    found = re.search(r"^WRKBENCH (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not found:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    fields = {k: int(v) for k, v in (item.split("=") for item in found.group(1).split())}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if non_2xx and int(non_2xx.group(1)) != fields["status_errors"]:
        raise BenchError(f"wrk disagrees with itself:\n{done.stdout}")
    return Run(
        label=label,
        requests=fields["requests"],
        seconds=fields["duration_us"] / 1e6,
        non_2xx=fields["status_errors"],
        socket_errors=fields["connect"] + fields["read"] + fields["write"] + fields["timeout"],
        p50_ms=fields["p50_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        server_cpu_s=cpu,
    )


def _grpc(server: Server, method: str, args: argparse.Namespace, label: str) -> Run:
    """One run of bench/grpc_load.py against the server's bench gRPC port."""
    server.alive()
    cmd = [
        sys.executable,
        str(GRPC_LOAD),
        f"127.0.0.1:{server.grpc_port}",
        method,
        server.key,
        str(args.ids),
        str(args.grpc_concurrency),
        str(args.duration),
    ]
    cpu_before = server.cpu_seconds()
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=args.duration + 60,
        check=False,
        preexec_fn=_die_with_parent,
    )
    cpu = server.cpu_seconds() - cpu_before
    if done.returncode != 0:
        raise BenchError(f"gRPC load failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    fields = json.loads(done.stdout.strip().splitlines()[-1])
    return Run(
        label=label,
        requests=fields["requests"],
        seconds=fields["seconds"],
        non_2xx=fields["errors"],
        socket_errors=0,
        p50_ms=fields["p50_ms"],
        p99_ms=fields["p99_ms"],
        server_cpu_s=cpu,
    )


def _agents(server: Server) -> int:
    metrics = server.metrics()
    return int(sum(v for k, v in metrics.items() if k.startswith("worpen_agents{")))


def _register_all(wrk: str, server: Server, args: argparse.Namespace) -> float:
    """One heartbeat per id, so every agent is registered before the measured runs (a registration
    persists the agent and commits: far slower than a heartbeat, and not what is measured here).
    wrk runs in its register mode until /metrics counts every agent, then is stopped with SIGINT."""
    started = time.monotonic()
    cmd = _wrk_command(
        wrk,
        server,
        HEARTBEAT_PATH,
        args,
        args.register_timeout + 5,
        connections=args.register_connections,
        register=True,
    )
    load = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent
    )
    try:
        while (registered := _agents(server)) < args.ids:
            server.alive()
            if time.monotonic() - started > args.register_timeout:
                raise BenchError(
                    f"only {registered} of {args.ids} ids registered in {args.register_timeout:g}s"
                )
            if load.poll() is not None:
                raise BenchError(f"wrk ended while registering:\n{load.communicate()[0]}")
            time.sleep(0.25)
    finally:
        if load.poll() is None:
            load.send_signal(signal.SIGINT)
        try:
            output = load.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            load.kill()
            output = load.communicate()[0]
    non_2xx = re.search(r"status_errors=(\d+)", output or "")
    if non_2xx and int(non_2xx.group(1)):
        raise BenchError(f"{non_2xx.group(1)} non-2xx answers while registering:\n{output}")
    return time.monotonic() - started


def _py_spy(wrk: str, server: Server, args: argparse.Namespace, outdir: Path) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print(f"  py-spy not found ({py_spy}); `uv pip install py-spy` first", flush=True)
        return
    outdir.mkdir(parents=True, exist_ok=True)
    seconds = max(args.duration, 8)
    for label, path in (("heartbeat", HEARTBEAT_PATH), ("noop", NOOP_PATH)):
        out = outdir / f"{label}.txt"
        recorder = subprocess.Popen(
            [
                py_spy,
                "record",
                "-p",
                str(server.proc.pid),
                "-d",
                str(seconds),
                "-r",
                "250",
                "-f",
                "raw",
                "--function",
                "--gil",
                "-o",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        try:
            run = _wrk(wrk, server, path, args, seconds, f"py-spy {label}")
            recorder.wait(timeout=seconds + 30)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait()
        print(f"  py-spy {label}: {run.rps:,.0f} req/s under the profiler -> {out}", flush=True)
        if out.exists():
            _print_top(out)
        elif recorder.stderr is not None:
            print(f"  py-spy failed: {recorder.stderr.read().strip()[:500]}", flush=True)


def _print_top(collapsed: Path, top: int = 20) -> None:
    """Share of samples per function, inclusive and self, from py-spy's collapsed stacks (--gil: only
    samples of a thread holding the GIL, so idle threads do not count)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    for title, table in (("inclusive", inclusive), ("self", own)):
        print(f"    {title} (of {total:,} samples holding the GIL):", flush=True)
        for frame, count in sorted(table.items(), key=lambda item: -item[1])[:top]:
            print(f"      {100 * count / total:5.1f}%  {frame}", flush=True)


# --- report -------------------------------------------------------------------------------------------------


def _check_persistence(db_path: Path) -> tuple[int, int, int]:
    """Agents, telemetry rows, and distinct telemetry rows (one per agent and instant) in SQLite."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        agents = db.execute("SELECT count(*) FROM agents").fetchone()[0]
        samples = db.execute("SELECT count(*) FROM agent_samples").fetchone()[0]
        distinct = db.execute(
            "SELECT count(*) FROM (SELECT DISTINCT agent_id, at FROM agent_samples)"
        ).fetchone()[0]
    return int(agents), int(samples), int(distinct)


def _statuses(counts: dict[str, float]) -> str:
    parts = []
    for key, value in sorted(counts.items()):
        route = re.search(r'route="([^"]*)"', key)
        status = re.search(r'status="([^"]*)"', key)
        name = (route.group(1) if route else "?").rsplit("/", 1)[-1]
        parts.append(f"{name} {status.group(1) if status else '?'}: {value:,.0f}")
    return ", ".join(parts)


def _median(runs: list[Run], figure: str) -> float:
    return statistics.median(float(getattr(run, figure)) for run in runs)


def _table(title: str, runs: dict[str, list[Run]], ratios: list[tuple[str, str, str]]) -> None:
    """Per-round lines of every route, then each round's ratios (name, numerator, denominator)."""
    print(f"\n{title} (server CPU = user+sys of the server process during the run):")
    print(
        f"  {'round':<6}{'route':<16}{'req/s':>10}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'non-2xx':>9}{'sock err':>9}{'srv CPU us/req':>16}"
    )
    for i, round_runs in enumerate(zip(*runs.values(), strict=True), 1):
        for run in round_runs:
            print(
                f"  {i:<6}{run.label:<16}{run.rps:>10,.0f}{run.requests:>10,}{run.p50_ms:>9.2f}"
                f"{run.p99_ms:>9.2f}{run.non_2xx:>9}{run.socket_errors:>9}{run.cpu_us_per_request:>16.0f}"
            )
        by_label = {run.label: run for run in round_runs}
        for name, over, under in ratios:
            print(f"  {i:<6}{name:<16}{by_label[over].rps / by_label[under].rps:>10.3f}")


def _met(value: float, target: float) -> str:
    return "MET" if value >= target else "MISSED"


def _report(http: dict[str, list[Run]], grpc_runs: dict[str, list[Run]]) -> tuple[dict[str, object], bool]:
    """Prints the figures; returns the summary and whether a target was missed."""
    _table(
        "HTTP, per round",
        http,
        [("ratio hb/raw", "heartbeat", "raw"), ("ratio hb/noop", "heartbeat", "noop")],
    )
    beat, raw, noop = (_median(http[label], "rps") for label in ("heartbeat", "raw", "noop"))
    cpu = {label: _median(runs, "cpu_us_per_request") for label, runs in http.items()}
    print("\nmedians (HTTP):")
    print(
        f"  heartbeats/s              {beat:>10,.0f}   (target >= {TARGET_HEARTBEATS:,.0f})  "
        f"{_met(beat, TARGET_HEARTBEATS)}"
    )
    print(f"  raw ASGI no-op req/s      {raw:>10,.0f}")
    print(f"  Worpen no-op req/s        {noop:>10,.0f}")
    print(
        f"  ratio heartbeat/raw ASGI  {beat / raw:>10.3f}   (target >= {TARGET_RAW_RATIO})  "
        f"{_met(beat / raw, TARGET_RAW_RATIO)}"
    )
    print(
        f"  ratio heartbeat/no-op     {beat / noop:>10.3f}   (target >= {TARGET_RATIO})  "
        f"{_met(beat / noop, TARGET_RATIO)}"
    )
    print(
        "  server CPU us/request     "
        + ", ".join(f"{label} {cpu[label]:.0f}" for label in ("heartbeat", "raw", "noop"))
    )
    summary: dict[str, object] = {
        "heartbeats_per_s": round(beat),
        "raw_asgi_per_s": round(raw),
        "noop_per_s": round(noop),
        "ratio_vs_raw": round(beat / raw, 3),
        "ratio_vs_noop": round(beat / noop, 3),
        **{f"{label}_rounds": [round(run.rps) for run in runs] for label, runs in http.items()},
        **{f"{label}_cpu_us": round(value) for label, value in cpu.items()},
    }
    missed = beat < TARGET_HEARTBEATS or beat / raw < TARGET_RAW_RATIO or beat / noop < TARGET_RATIO
    if grpc_runs["grpc heartbeat"]:
        _table("gRPC, per round", grpc_runs, [("ratio hb/noop", "grpc heartbeat", "grpc noop")])
        grpc_beat, grpc_noop = (_median(grpc_runs[label], "rps") for label in ("grpc heartbeat", "grpc noop"))
        grpc_cpu = {label: _median(runs, "cpu_us_per_request") for label, runs in grpc_runs.items()}
        print("\nmedians (gRPC):")
        print(f"  ReportHeartbeat calls/s   {grpc_beat:>10,.0f}")
        print(f"  no-op unary calls/s       {grpc_noop:>10,.0f}")
        print(f"  ratio heartbeat/no-op     {grpc_beat / grpc_noop:>10.3f}")
        print(
            f"  server CPU us/call        heartbeat {grpc_cpu['grpc heartbeat']:.0f}, "
            f"no-op {grpc_cpu['grpc noop']:.0f}"
        )
        summary |= {
            "grpc_heartbeats_per_s": round(grpc_beat),
            "grpc_noop_per_s": round(grpc_noop),
            "grpc_ratio": round(grpc_beat / grpc_noop, 3),
            "grpc_heartbeat_cpu_us": round(grpc_cpu["grpc heartbeat"]),
            "grpc_noop_cpu_us": round(grpc_cpu["grpc noop"]),
        }
    return summary, missed


def _print_run(i: int, run: Run) -> None:
    print(
        f"  round {i} {run.label:<15} {run.rps:>9,.0f} req/s  non-2xx {run.non_2xx}  "
        f"socket errors {run.socket_errors}",
        flush=True,
    )


def _rounds(wrk: str, server: Target, args: argparse.Namespace) -> dict[str, list[Run]]:
    routes = [("raw", RAW_PATH), ("noop", NOOP_PATH), ("heartbeat", HEARTBEAT_PATH)]
    runs: dict[str, list[Run]] = {label: [] for label, _ in routes}
    for i in range(1, args.rounds + 1):
        # Rotate which route goes first, so a drift in the machine's load hits all of them alike.
        shift = (i - 1) % len(routes)
        for label, path in routes[shift:] + routes[:shift]:
            run = _wrk(wrk, server, path, args, args.duration, label)
            runs[label].append(run)
            _print_run(i, run)
    return runs


def _grpc_rounds(server: Server, args: argparse.Namespace) -> dict[str, list[Run]]:
    methods = [("grpc noop", GRPC_NOOP), ("grpc heartbeat", GRPC_HEARTBEAT)]
    runs: dict[str, list[Run]] = {label: [] for label, _ in methods}
    for i in range(1, args.grpc_rounds + 1):
        for label, method in methods if i % 2 else methods[::-1]:
            run = _grpc(server, method, args, label)
            runs[label].append(run)
            _print_run(i, run)
    return runs


def main() -> int:
    args = _args()
    if args.database == "postgresql":
        from replicas_bench import heartbeat_on_postgresql  # imports this module: only when asked

        return heartbeat_on_postgresql(args)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, _on_signal)
    runs = args.rounds * 3 + args.grpc_rounds * 2
    bound = 120 + args.register_timeout + runs * (args.duration + 35) + (120 if args.py_spy else 0)
    signal.alarm(int(bound))
    wrk = _ensure_wrk()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"wrk -t{args.threads} -c{args.connections}, {args.ids:,} agent ids, "
        f"{args.rounds} rounds x {args.duration}s per route, {args.grpc_rounds} gRPC rounds with "
        f"{args.grpc_concurrency} calls in flight; time bound {bound:.0f}s",
        flush=True,
    )
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="worpen-bench-"))
    keep = args.keep
    try:
        server = Server(workdir, _free_port(), args.agent_ttl, Path(args.server))
        try:
            server.wait_ready()
            print(f"server pid {server.proc.pid} on {server.base}; log {server.log_path}", flush=True)
            took = _register_all(wrk, server, args)
            print(
                f"registered {args.ids:,} agents through the heartbeat route in {took:.1f}s "
                f"({args.ids / took:,.0f}/s, {args.register_connections} connections)",
                flush=True,
            )
            for path in (RAW_PATH, NOOP_PATH, HEARTBEAT_PATH):
                _wrk(wrk, server, path, args, 2, "warm-up")
            before = server.metrics()
            http = _rounds(wrk, server, args)
            after = server.metrics()
            grpc_runs = _grpc_rounds(server, args)
            if args.py_spy:
                _py_spy(wrk, server, args, Path(args.py_spy))
            ingested_total = server.metrics()["worpen_heartbeats_ingested_total"]
            ingested = after["worpen_heartbeats_ingested_total"] - before["worpen_heartbeats_ingested_total"]
            served = sum(run.requests for run in http["heartbeat"])
            server_statuses = {
                k: v - before.get(k, 0)
                for k, v in after.items()
                if k.startswith("worpen_http_requests_total{") and v - before.get(k, 0)
            }
        finally:
            code = server.stop()
        summary, missed = _report(http, grpc_runs)
        every_http_run = [run for runs in http.values() for run in runs]
        non_2xx = sum(run.non_2xx for run in every_http_run)
        grpc_errors = sum(run.non_2xx for runs in grpc_runs.values() for run in runs)
        cut_off_bound = args.connections * len(every_http_run)
        server_cut_off = sum(v for k, v in server_statuses.items() if 'status="499"' in k)
        server_other_non_2xx = sum(
            v for k, v in server_statuses.items() if not re.search(r'status="(2\d\d|499)"', k)
        )
        socket_errors = sum(run.socket_errors for run in every_http_run)
        agents, samples, distinct = _check_persistence(server.db_path)
        log_mb = server.log_path.stat().st_size / 1e6
        checks = [
            ("non-2xx responses (wrk, measured runs)", f"{non_2xx}"),
            ("responses by status (server metrics)", _statuses(server_statuses)),
            (
                "",
                "(the server counts as 499 a request whose client left before sending all of it: wrk drops "
                f"its {args.connections} connections at the end of each run, so up to {cut_off_bound:,} "
                "are expected)",
            ),
            ("socket errors (wrk)", f"{socket_errors}"),
            ("gRPC calls that failed", f"{grpc_errors}"),
            (
                "heartbeats ingested by the server",
                f"{ingested:,.0f} (wrk counted {served:,} completed; it leaves in-flight ones uncounted)",
            ),
            ("agents in SQLite", f"{agents:,} (expected {args.ids:,})"),
            (
                "telemetry rows in SQLite",
                f"{samples:,}, of which {samples - distinct:,} duplicates; every heartbeat ingested "
                f"since the start: {ingested_total:,.0f} (counted after the shutdown flush)",
            ),
            ("server exit code", f"{code}; log {log_mb:.0f} MB of JSON lines"),
        ]
        print("\nchecks:")
        for label, value in checks:
            print(f"  {label:<41}{value}")
        if samples - distinct:
            failures.append(f"{samples - distinct:,} telemetry samples were written twice")
        if distinct < ingested_total:
            failures.append(f"{ingested_total - distinct:,.0f} ingested heartbeats have no telemetry row")
        if non_2xx:
            failures.append("non-2xx responses seen by wrk")
        if grpc_errors:
            failures.append("gRPC calls failed")
        if server_cut_off > cut_off_bound or server_other_non_2xx:
            failures.append("the server answered non-2xx beyond requests cut off by wrk")
        if agents != args.ids:
            failures.append(f"{agents} agents persisted, expected {args.ids}")
        if code not in (0, -signal.SIGINT):  # uvicorn re-raises the SIGINT it shut down on
            failures.append(f"server exited with {code}")
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
    if args.check and missed:
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.SubprocessError) as exc:
        print(f"bench/heartbeat: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        print(f"bench/heartbeat: interrupted ({exc})", file=sys.stderr)
        sys.exit(130)
