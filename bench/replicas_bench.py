"""Heartbeats on PostgreSQL, with one and with two replicas behind a round-robin proxy (run it through
bench/replicas, or bench/heartbeat --database postgresql; see bench/README.md).

bench/replicas measures, in ONE run and in interleaved rounds, the REST heartbeat route (wrk and
bench/heartbeat.lua, as bench/heartbeat does) in four set-ups:

- sqlite x1: one server on a fresh SQLite file, straight (the baseline: what bench/heartbeat measures);
- sqlite x1 proxy: the same server through the proxy;
- pg x1 proxy: one replica on PostgreSQL through the proxy;
- pg x2 proxy: two replicas on the same PostgreSQL database through the proxy, round robin.

The servers are bench/server.py (the app built and served exactly as `worpen serve`); the PostgreSQL
cluster and the proxy (nginx, one listening port per set-up, so one process and one configuration for
all) come from bench/cluster.py. It prints heartbeats/s, p50/p99, the CPU per heartbeat of the servers,
the proxy and PostgreSQL, the ratio of each set-up to sqlite x1, and the ratio pg x2 / pg x1 (target
>= 0.9: the second replica costs nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cluster import ClusterError, Postgres, Proxy, fetch_values
from heartbeat_bench import (
    HEARTBEAT_PATH,
    NOOP_PATH,
    RAW_PATH,
    SERVER,
    BenchError,
    Run,
    Server,
    _check_persistence,
    _ensure_wrk,
    _free_port,
    _on_signal,
    _register_all,
    _report,
    _rounds,
    _statuses,
    _wrk,
)

TARGET_SECOND_REPLICA = 0.9
PERSISTENCE_SQL = (
    "SELECT count(*) FROM agents",
    "SELECT count(*) FROM agent_samples",
    "SELECT count(*) FROM (SELECT DISTINCT agent_id, at FROM agent_samples) AS distinct_samples",
)


@dataclass
class Group:
    """One set-up wrk is pointed at: a server straight, or replicas behind the proxy."""

    label: str
    base: str
    key: str
    servers: list[Server]
    proxy: Proxy | None = None

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    def alive(self) -> None:
        for server in self.servers:
            server.alive()
        if self.proxy is not None:
            self.proxy.alive()

    def metrics(self) -> dict[str, float]:
        summed: dict[str, float] = {}
        for server in self.servers:
            for name, value in server.metrics().items():
                summed[name] = summed.get(name, 0.0) + value
        return summed


@dataclass
class Measured:
    """A run of wrk, with the CPU the proxy and PostgreSQL spent meanwhile."""

    run: Run
    proxy_cpu_s: float
    db_cpu_s: float

    def per_request_us(self, seconds: float) -> float:
        return seconds / self.run.requests * 1e6 if self.run.requests else float("nan")


@dataclass
class Stack:
    """Everything a run started, stopped in reverse order whatever happens."""

    servers: list[Server] = field(default_factory=list)
    proxy: Proxy | None = None
    postgres: Postgres | None = None
    codes: dict[str, int | None] = field(default_factory=dict)

    def stop_servers(self) -> None:
        """The proxy and the servers (SIGINT: their last telemetry flush), keeping the database to read."""
        if self.proxy is not None:
            self.proxy.stop()
        for server in reversed(self.servers):
            if server.log_path.stem not in self.codes:
                self.codes[server.log_path.stem] = server.stop()

    def stop(self) -> None:
        self.stop_servers()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None


def _secrets_key() -> str:
    """A Fernet key: every replica of one database must seal and open secrets with the same key."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _start(
    stack: Stack,
    workdir: Path,
    args: argparse.Namespace,
    name: str,
    database_url: str | None,
    settings: dict[str, str],
    key: str | None = None,
) -> Server:
    server = Server(
        workdir,
        _free_port(),
        args.agent_ttl,
        Path(args.server),
        name=name,
        database_url=database_url,
        settings={**settings, "WORPEN_REPLICA_ID": name},
    )
    stack.servers.append(server)
    server.wait_ready(key=key)
    print(f"{name}: pid {server.proc.pid} on {server.base}; log {server.log_path}", flush=True)
    return server


def _register(wrk: str, server: Server, args: argparse.Namespace) -> None:
    took = _register_all(wrk, server, args)
    print(
        f"  registered {args.ids:,} agents through {server.log_path.stem} in {took:.1f}s "
        f"({args.ids / took:,.0f}/s, {args.register_connections} connections)",
        flush=True,
    )


def _postgres_url(stack: Stack, args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    stack.postgres = Postgres()
    print(
        f"{stack.postgres.version()} on 127.0.0.1:{stack.postgres.port} (fsync and synchronous_commit on)",
        flush=True,
    )
    return stack.postgres.create_database("worpen_bench")


def _postgres_replicas(
    wrk: str, stack: Stack, workdir: Path, args: argparse.Namespace, url: str, count: int
) -> list[Server]:
    """The first replica on a fresh database (it migrates it and prints the admin key), every agent id
    registered through it, then the others: they start with the whole fleet in the database."""
    settings = {"WORPEN_SECRETS_KEY": _secrets_key()}
    first = _start(stack, workdir, args, "pg-a", url, settings)
    _register(wrk, first, args)
    replicas = [first]
    for letter in "bcdefgh"[: count - 1]:
        replicas.append(_start(stack, workdir, args, f"pg-{letter}", url, settings, key=first.key))
    return replicas


def _persisted(url: str) -> tuple[int, int, int]:
    agents, samples, distinct = asyncio.run(fetch_values(url, PERSISTENCE_SQL))
    return agents, samples, distinct


def _persistence_failures(label: str, counts: tuple[int, int, int], ids: int) -> list[str]:
    agents, samples, distinct = counts
    print(
        f"  {label}: {agents:,} agents (expected {ids:,}), {samples:,} telemetry rows, "
        f"{samples - distinct:,} written twice"
    )
    failures = []
    if agents != ids:
        failures.append(f"{label}: {agents} agents persisted, expected {ids}")
    if samples != distinct:
        failures.append(f"{label}: {samples - distinct} telemetry rows written twice")
    return failures


def _exit_failures(codes: dict[str, int | None]) -> list[str]:
    # uvicorn re-raises the SIGINT it shut down on
    return [f"{name} exited with {code}" for name, code in codes.items() if code not in (0, -signal.SIGINT)]


def _bound(args: argparse.Namespace, runs: int, registrations: int) -> int:
    bound = 180 + registrations * args.register_timeout + runs * (args.duration + 35)
    signal.alarm(int(bound))
    return int(bound)


def _run(
    callback: Callable[[Path, Stack], tuple[dict[str, object], list[str], bool]], args: argparse.Namespace
) -> int:
    """Signals, the temp dir and the processes around one benchmark; prints the summary and failures."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, _on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="worpen-bench-replicas-"))
    stack = Stack()
    keep = args.keep
    failures: list[str] = []
    try:
        try:
            summary, failures, missed = callback(workdir, stack)
        finally:
            stack.stop()
        failures += _exit_failures(stack.codes)
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


# --- bench/heartbeat --database postgresql ------------------------------------------------------------------


def heartbeat_on_postgresql(args: argparse.Namespace) -> int:
    """bench/heartbeat's HTTP rounds (raw ASGI no-op, Worpen no-op, heartbeat) through the proxy in front
    of `--replicas` replicas on PostgreSQL. No gRPC rounds: the proxy speaks HTTP/1.1."""
    wrk = _ensure_wrk()
    bound = _bound(args, args.rounds * 3, 1)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; wrk -t{args.threads} "
        f"-c{args.connections}, {args.ids:,} agent ids, {args.rounds} rounds x {args.duration}s per route, "
        f"PostgreSQL, {args.replicas} replica(s) behind nginx; time bound {bound}s",
        flush=True,
    )

    def measure(workdir: Path, stack: Stack) -> tuple[dict[str, object], list[str], bool]:
        url = _postgres_url(stack, args)
        replicas = _postgres_replicas(wrk, stack, workdir, args, url, args.replicas)
        for replica in replicas[1:]:
            _warm_every_id(wrk, Group(replica.log_path.stem, replica.base, replica.key, [replica]), args)
        stack.proxy = Proxy(workdir, {"replicas": [r.port for r in replicas]}, args.proxy_workers)
        group = Group("pg", stack.proxy.url("replicas"), replicas[0].key, replicas, stack.proxy)
        for path in (RAW_PATH, NOOP_PATH, HEARTBEAT_PATH):
            _wrk(wrk, group, path, args, 2, "warm-up")
        before = group.metrics()
        http = _rounds(wrk, group, args)
        after = group.metrics()
        stack.stop_servers()
        summary, missed = _report(http, {"grpc heartbeat": [], "grpc noop": []})
        summary |= {"database": "postgresql", "replicas": args.replicas}
        statuses = {
            k: v - before.get(k, 0)
            for k, v in after.items()
            if k.startswith("worpen_http_requests_total{") and v - before.get(k, 0)
        }
        runs = [run for route in http.values() for run in route]
        print("\nchecks:")
        print(f"  responses by status (the replicas' metrics): {_statuses(statuses)}")
        failures = _wrk_failures(runs)
        failures += _persistence_failures("PostgreSQL", _persisted(url), args.ids)
        return summary, failures, missed

    return _run(measure, args)


def _wrk_failures(runs: Sequence[Run]) -> list[str]:
    non_2xx = sum(run.non_2xx for run in runs)
    socket_errors = sum(run.socket_errors for run in runs)
    print(f"  non-2xx responses (wrk): {non_2xx}; socket errors (wrk): {socket_errors}")
    failures = []
    if non_2xx:
        failures.append(f"{non_2xx} non-2xx responses seen by wrk")
    if socket_errors:
        failures.append(f"{socket_errors} socket errors seen by wrk")
    return failures


# --- bench/replicas -----------------------------------------------------------------------------------------


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/replicas", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ids", type=int, default=10_000, help="distinct agent ids, rotated (default 10000)")
    p.add_argument("--rounds", type=int, default=5, help="rounds over the four set-ups (default 5)")
    p.add_argument("--duration", type=int, default=5, help="seconds per measured run (default 5)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument(
        "--register-timeout",
        type=float,
        default=600,
        help="max seconds to register every id on one database (default 600; about 200 on PostgreSQL here)",
    )
    p.add_argument(
        "--register-connections",
        type=int,
        default=16,
        help="wrk connections while registering (default 16: a registration waits for its commit)",
    )
    p.add_argument("--agent-ttl", type=int, default=3600, help="servers' WORPEN_AGENT_TTL (default 3600)")
    p.add_argument("--server", default=str(SERVER), help="server launcher (default bench/server.py)")
    p.add_argument("--proxy-workers", type=int, default=1, help="nginx worker processes (default 1)")
    p.add_argument(
        "--database-url", help="an EMPTY PostgreSQL database to use instead of a throwaway cluster"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (databases, logs, nginx.conf)")
    p.add_argument("--check", action="store_true", help="exit 3 when pg x2 / pg x1 is under 0.9")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1,000 ids, 2 rounds of 3 s")
    args = p.parse_args()
    if args.quick:
        args.ids, args.rounds, args.duration = 1000, 2, 3
    return args


def _warm_every_id(wrk: str, group: Group, args: argparse.Namespace) -> None:
    """Heartbeats of every id straight to a replica that took none yet (it restored the fleet another
    registered), so that the rounds measure the steady state, where every replica has heard from every
    agent, not each agent's first heartbeat on it."""
    sent = 0
    started = time.monotonic()
    while sent < args.ids and time.monotonic() - started < args.register_timeout:
        sent += _wrk(wrk, group, HEARTBEAT_PATH, args, 2, "warm-up").requests
    print(
        f"  {sent:,} heartbeats straight to {group.label} first, in {time.monotonic() - started:.0f}s",
        flush=True,
    )


def _measure(wrk: str, group: Group, postgres: Postgres | None, args: argparse.Namespace) -> Measured:
    proxy_before = group.proxy.cpu_seconds() if group.proxy else 0.0
    db_before = postgres.cpu_seconds() if postgres else 0.0
    run = _wrk(wrk, group, HEARTBEAT_PATH, args, args.duration, group.label)
    return Measured(
        run,
        group.proxy.cpu_seconds() - proxy_before if group.proxy else 0.0,
        postgres.cpu_seconds() - db_before if postgres else 0.0,
    )


def _print_table(runs: dict[str, list[Measured]]) -> None:
    print(
        f"\n  {'round':<6}{'set-up':<18}{'beats/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}{'sock':>6}"
        f"{'CPU us/beat: servers':>22}{'proxy':>7}{'pg':>6}"
    )
    for i, round_runs in enumerate(zip(*runs.values(), strict=True), 1):
        for m in round_runs:
            r = m.run
            print(
                f"  {i:<6}{r.label:<18}{r.rps:>9,.0f}{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}{r.non_2xx:>8}"
                f"{r.socket_errors:>6}{r.cpu_us_per_request:>22.0f}{m.per_request_us(m.proxy_cpu_s):>7.0f}"
                f"{m.per_request_us(m.db_cpu_s):>6.0f}"
            )


def _replicas_report(runs: dict[str, list[Measured]]) -> tuple[dict[str, object], bool]:
    _print_table(runs)

    def median(label: str, figure: Callable[[Measured], float]) -> float:
        return statistics.median(figure(m) for m in runs[label])

    base = median("sqlite x1", lambda m: m.run.rps)
    print(f"\nmedians ({len(runs['sqlite x1'])} rounds):")
    print(
        f"  {'set-up':<18}{'beats/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'/ sqlite x1':>13}"
        f"{'CPU us/beat: servers':>22}{'proxy':>7}{'pg':>6}"
    )
    summary: dict[str, object] = {}
    for label in runs:
        rps = median(label, lambda m: m.run.rps)
        p50 = median(label, lambda m: m.run.p50_ms)
        p99 = median(label, lambda m: m.run.p99_ms)
        cpu = median(label, lambda m: m.run.cpu_us_per_request)
        proxy = median(label, lambda m: m.per_request_us(m.proxy_cpu_s))
        db = median(label, lambda m: m.per_request_us(m.db_cpu_s))
        print(
            f"  {label:<18}{rps:>9,.0f}{p50:>8.2f}{p99:>8.2f}{rps / base:>13.3f}{cpu:>22.0f}{proxy:>7.0f}"
            f"{db:>6.0f}"
        )
        summary[label] = {
            "heartbeats_per_s": round(rps),
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "ratio_to_sqlite_x1": round(rps / base, 3),
            "rounds": [round(m.run.rps) for m in runs[label]],
        }
    paired = [
        two.run.rps / one.run.rps for one, two in zip(runs["pg x1 proxy"], runs["pg x2 proxy"], strict=True)
    ]
    second = median("pg x2 proxy", lambda m: m.run.rps) / median("pg x1 proxy", lambda m: m.run.rps)
    met = second >= TARGET_SECOND_REPLICA
    print(
        f"\n  pg x2 / pg x1 (medians)   {second:.3f}   (target >= {TARGET_SECOND_REPLICA})  "
        f"{'MET' if met else 'MISSED'}; per round: " + ", ".join(f"{ratio:.3f}" for ratio in paired)
    )
    summary["pg_x2_over_x1"] = round(second, 3)
    return summary, not met


def replicas(args: argparse.Namespace) -> int:
    wrk = _ensure_wrk()
    bound = _bound(args, args.rounds * 4 + 4, 2)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; wrk -t{args.threads} "
        f"-c{args.connections}, {args.ids:,} agent ids, {args.rounds} rounds x {args.duration}s per set-up; "
        f"time bound {bound}s",
        flush=True,
    )

    def measure(workdir: Path, stack: Stack) -> tuple[dict[str, object], list[str], bool]:
        url = _postgres_url(stack, args)
        sqlite = _start(stack, workdir, args, "sqlite", None, {})
        _register(wrk, sqlite, args)
        pg = _postgres_replicas(wrk, stack, workdir, args, url, 2)
        stack.proxy = proxy = Proxy(
            workdir,
            {"sqlite": [sqlite.port], "pg1": [pg[0].port], "pg2": [pg[0].port, pg[1].port]},
            args.proxy_workers,
        )
        groups = [
            Group("sqlite x1", sqlite.base, sqlite.key, [sqlite]),
            Group("sqlite x1 proxy", proxy.url("sqlite"), sqlite.key, [sqlite], proxy),
            Group("pg x1 proxy", proxy.url("pg1"), pg[0].key, [pg[0]], proxy),
            Group("pg x2 proxy", proxy.url("pg2"), pg[0].key, pg, proxy),
        ]
        for replica in pg[1:]:
            _warm_every_id(wrk, Group(replica.log_path.stem, replica.base, replica.key, [replica]), args)
        for group in groups:
            _wrk(wrk, group, HEARTBEAT_PATH, args, 2, "warm-up")
        runs: dict[str, list[Measured]] = {group.label: [] for group in groups}
        for i in range(args.rounds):
            # Rotate which set-up goes first, so a drift in the machine's load hits all of them alike.
            for group in groups[i % len(groups) :] + groups[: i % len(groups)]:
                measured = _measure(
                    wrk, group, stack.postgres if group.label.startswith("pg") else None, args
                )
                runs[group.label].append(measured)
                print(
                    f"  round {i + 1} {group.label:<16} {measured.run.rps:>9,.0f} beats/s  "
                    f"p99 {measured.run.p99_ms:.1f} ms",
                    flush=True,
                )
        stack.stop_servers()
        summary, missed = _replicas_report(runs)
        print("\nchecks:")
        failures = _wrk_failures([m.run for label in runs.values() for m in label])
        failures += _persistence_failures("SQLite", _check_persistence(sqlite.db_path), args.ids)
        failures += _persistence_failures("PostgreSQL", _persisted(url), args.ids)
        return summary, failures, missed

    return _run(measure, args)


if __name__ == "__main__":
    try:
        sys.exit(replicas(_args()))
    except (BenchError, ClusterError) as exc:
        print(f"bench/replicas: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        print(f"bench/replicas: interrupted ({exc})", file=sys.stderr)
        sys.exit(130)
