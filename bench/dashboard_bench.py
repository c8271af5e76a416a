"""Dashboard latency at fleet scale, and what telemetry costs on disk, from one run.

For each fleet size (100 and 10,000 agents by default) it seeds a fresh SQLite database through
Worpen's own storage layer: the agents, 24 hours of 10-second heartbeat samples for up to 1,000 of them
(a daily cpu wave, network counters that grow and sometimes reset), then the telemetry rollups made by
Worpen's own rollup use case. It starts a real `worpen serve` on that database and times, in interleaved
rounds, each dashboard endpoint against two floors measured in the same run:

- `GET /health` through the same server (what any request costs there);
- the SQL the network and load series need (the fleet's 1-minute rollups over 24 h), run straight on
  the database with the standard library's sqlite3 (what the data costs to read at all).

It prints the medians, the 10,000/100 ratio of each endpoint (target <= 2, and < 50 ms at 10,000 for
stats, network?range=24h and load?range=24h), and the bytes on disk per raw sample and per rollup row
(SQLite's dbstat: table and index pages). See bench/README.md.

With --database postgresql, each fleet seeded on SQLite is also copied, row for row, into a database on a
throwaway PostgreSQL cluster (bench/cluster.py: durable commits) migrated by Worpen, with PostgreSQL's COPY:
the same agents, samples, rollups and rollup progress, so both backends serve the same data. It is served
by one and by two `worpen serve` replicas behind a round-robin proxy (nginx), and timed in the same
interleaved rounds as SQLite: it prints p50 and p99 of each endpoint per set-up at each size, and the ratio
of PostgreSQL to SQLite; the SQL floor runs the same query through asyncpg, and the bytes per row come from
pg_total_relation_size.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import random
import signal
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypedDict

import asyncpg
import httpx
from cluster import Postgres, Proxy, driver_url
from worpen_process import admin_key, start_worpen

from worpen_core.fleet.model import Agent, FleetPolicy, TelemetrySample
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.telemetry.model import TelemetryPolicy
from worpen_core.telemetry.service import Telemetry
from worpen_infra.bus.in_process import InProcessEventBus
from worpen_infra.clock import SystemClock
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory

TARGET_MS = 50.0
TARGET_RATIO = 2.0
INTERVAL = 10
"""Seconds between an agent's samples."""
CHUNK = 100_000
"""Samples per seeding transaction."""
ENDPOINTS = {
    "stats": ("/api/v1/dashboard/stats", {}),
    "network?range=24h": ("/api/v1/dashboard/network", {"range": "24h"}),
    "load?range=24h": ("/api/v1/dashboard/load", {"range": "24h"}),
    "network?range=1h&node": ("/api/v1/dashboard/network", {"range": "1h", "node": "agent-00000"}),
    "services": ("/api/v1/dashboard/services", {}),
}
TARGETED = ("stats", "network?range=24h", "load?range=24h")
SETTINGS = {
    "WORPEN_DOCKER_HOSTS": "none",
    "WORPEN_AGENT_TTL": "86400",  # the seeded fleet stays as seeded while it is measured
    "WORPEN_LOG_LEVEL": "warning",
}


class Measured(TypedDict):
    medians: dict[str, float]
    """Median ms by endpoint."""
    bytes_per_row: dict[str, float]


def agent_id(number: int) -> str:
    return f"agent-{number:05d}"


def samples(number: int, now: datetime, hours: int) -> Iterator[TelemetrySample]:
    """One agent's samples every INTERVAL seconds over `hours`: cpu on a daily wave with noise, ram
    steady, network counters growing at the agent's own pace and reset once (a restart)."""
    rng = random.Random(number)
    count = hours * 3600 // INTERVAL
    start = now - timedelta(seconds=count * INTERVAL)
    rx = tx = 0
    pace = rng.uniform(1e3, 1e6)
    reset_at = rng.randrange(count)
    for index in range(count):
        at = start + timedelta(seconds=index * INTERVAL)
        day = (at.hour * 3600 + at.minute * 60 + at.second) / 86400
        cpu = min(100.0, max(0.0, 40 + 25 * math.sin(2 * math.pi * day) + rng.uniform(-5, 5)))
        if index == reset_at:
            rx = tx = 0
        rx += int(pace * INTERVAL * rng.uniform(0.5, 1.5))
        tx += int(pace * INTERVAL * rng.uniform(0.2, 0.8))
        yield TelemetrySample(agent_id(number), at, Readings(cpu, 50.0, 60.0, rx, tx, index * INTERVAL))


async def seed(database: Path | str, size: int, with_samples: int, hours: int) -> dict[str, float]:
    """The fleet, its samples and their rollups, through Worpen's storage layer and rollup use case.
    `database`: an SQLite file, or the URL of an empty PostgreSQL database."""
    engine = create_engine(database if isinstance(database, str) else f"sqlite+aiosqlite:///{database}")
    await upgrade_database(engine)
    uow = SqlAlchemyUnitOfWorkFactory(engine)
    now = datetime.now(UTC)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    agents = [
        Agent(
            id=agent_id(n),
            name=agent_id(n),
            status=AgentStatus.ONLINE,
            reported_status=AgentStatus.ONLINE,
            readings=Readings(30.0, 50.0),
            last_seen=now,
            registered_at=now - timedelta(days=1),
            version=f"1.{n % 3}.0",
        )
        for n in range(size)
    ]
    async with uow() as work:
        await work.agents.save(agents)
        await work.commit()
    written = 0
    batch: list[TelemetrySample] = []
    for number in range(min(size, with_samples)):
        for sample in samples(number, now, hours):
            batch.append(sample)
            if len(batch) == CHUNK:
                written += await _write(uow, batch)
                batch = []
    written += await _write(uow, batch)
    timings["samples"] = written
    timings["seed_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    clock = SystemClock()
    fleet = Fleet(uow, InProcessEventBus(), clock, FleetPolicy())
    telemetry = Telemetry(uow, clock, fleet, TelemetryPolicy(batch=50_000))
    rolled = await telemetry.roll_up()
    timings["rollup_seconds"] = time.perf_counter() - started
    timings["rolled"] = rolled
    await engine.dispose()
    return timings


async def _write(uow: SqlAlchemyUnitOfWorkFactory, batch: list[TelemetrySample]) -> int:
    if not batch:
        return 0
    async with uow() as work:
        await work.samples.add(batch)
        await work.commit()
    return len(batch)


def disk_cost(database: Path) -> dict[str, float]:
    """Bytes on disk (table and index pages) per raw sample and per rollup row."""
    with sqlite3.connect(database) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        indexes = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'").fetchall())
        pages: dict[str, int] = {}
        for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            owner = indexes.get(name, name)
            pages[owner] = pages.get(owner, 0) + size
        cost: dict[str, float] = {}
        for table in ("agent_samples", *(t for t in tables if "rollup" in t)):
            rows = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            if rows:
                cost[table] = round(pages.get(table, 0) / rows, 1)
        return cost


def fleet_rollups_query(database: Path) -> Callable[[], object]:
    """The SQL behind the fleet's 24 h series, straight on the database with the standard library's sqlite3:
    the fleet's 1-minute buckets of the last day merged into 480 buckets of 3 minutes, every stored value
    aggregated (what the network and load endpoints ask the database for)."""
    db = sqlite3.connect(database, check_same_thread=False)
    columns = [row[1] for row in db.execute("PRAGMA table_info(telemetry_rollups)")][3:]
    merged = ", ".join(
        f"{'min' if name.endswith('_min') else 'max' if name.endswith('_max') else 'sum'}({name})"
        for name in columns
    )
    step = 180
    origin = (int(time.time()) - 24 * 3600) // step * step
    sql = (
        f"SELECT (start - ?) / ?, {merged} FROM telemetry_rollups "  # column names from the schema
        "WHERE tier = 60 AND series = '*' AND start >= ? AND start < ? GROUP BY 1"
    )

    def query() -> object:
        return db.execute(sql, (origin, step, origin, origin + 480 * step)).fetchall()

    return query


async def copy_to_postgres(database: Path, url: str) -> dict[str, float]:
    """Every table the seed filled, copied from the SQLite file into the empty PostgreSQL database `url`
    once Worpen's migrations made its schema, with COPY (asyncpg's binary copy_records_to_table), and the
    sequences set past the copied ids. Writing 8.64 million samples through the storage layer, then
    rolling them up, takes PostgreSQL far longer than this, and yields the same rows. SQLite's values are
    turned into what PostgreSQL's column holds: timestamps from SQLAlchemy's text, booleans from integers;
    JSON stays text (asyncpg's jsonb codec takes text)."""
    started = time.perf_counter()
    engine = create_engine(url)
    await upgrade_database(engine)
    await engine.dispose()
    source = sqlite3.connect(database)
    connection = await asyncpg.connect(driver_url(url))
    rows: dict[str, float] = {}
    try:
        types = {
            (table, column): kind
            for table, column, kind in await connection.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        }
        tables = {table for table, _ in types} - {"alembic_version"}
        for (table,) in source.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            if table not in tables or not source.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone():
                continue
            columns = [row[1] for row in source.execute(f'PRAGMA table_info("{table}")')]
            converters = [_to_postgres(types[(table, column)]) for column in columns]
            listed = ", ".join(f'"{column}"' for column in columns)
            cursor = source.execute(f'SELECT {listed} FROM "{table}"')  # names from the schema
            records = (
                tuple(
                    value if convert is None or value is None else convert(value)
                    for value, convert in zip(row, converters, strict=True)
                )
                for row in cursor
            )
            await connection.copy_records_to_table(table, records=records, columns=columns)
            rows[table] = await connection.fetchval(f'SELECT count(*) FROM "{table}"')
            for column in columns:
                sequence = await connection.fetchval("SELECT pg_get_serial_sequence($1, $2)", table, column)
                if sequence is not None:
                    await connection.execute(
                        f'SELECT setval($1::regclass, (SELECT max("{column}") FROM "{table}"))', sequence
                    )
    finally:
        await connection.close()
        source.close()
    rows["copy_seconds"] = time.perf_counter() - started
    return rows


def _to_postgres(kind: str) -> Callable[[object], object] | None:
    """How a value read from SQLite becomes what asyncpg writes into a PostgreSQL column of `kind`."""
    if kind == "timestamp without time zone":
        return lambda value: datetime.fromisoformat(str(value))
    if kind == "timestamp with time zone":
        return lambda value: datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
    if kind == "boolean":
        return bool
    return None


def postgres_disk_cost(url: str) -> dict[str, float]:
    """Bytes on disk (table, its indexes and TOAST) per raw sample and per rollup row, on PostgreSQL."""

    async def read() -> dict[str, float]:
        connection = await asyncpg.connect(driver_url(url))
        try:
            await connection.execute("VACUUM ANALYZE")
            cost: dict[str, float] = {}
            for table in ("agent_samples", "telemetry_rollups"):
                rows = await connection.fetchval(f'SELECT count(*) FROM "{table}"')
                size = await connection.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
                if rows:
                    cost[table] = round(size / rows, 1)
            return cost
        finally:
            await connection.close()

    return asyncio.run(read())


class PostgresQuery:
    """The SQL floor of fleet_rollups_query on PostgreSQL: the same query through asyncpg, in a loop of
    its own (the timing loop is synchronous)."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._connection = self._loop.run_until_complete(asyncpg.connect(driver_url(url)))
        columns = self._loop.run_until_complete(
            self._connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'telemetry_rollups' "
                "ORDER BY ordinal_position"
            )
        )
        merged = ", ".join(
            f"{'min' if name.endswith('_min') else 'max' if name.endswith('_max') else 'sum'}({name})"
            for name in (row[0] for row in columns[3:])
        )
        self._step = 180
        self._origin = (int(time.time()) - 24 * 3600) // self._step * self._step
        self._sql = (
            f"SELECT (start - $1) / $2, {merged} FROM telemetry_rollups "  # column names from the schema
            "WHERE tier = 60 AND series = '*' AND start >= $1 AND start < $3 GROUP BY 1"
        )

    def __call__(self) -> object:
        end = self._origin + 480 * self._step
        return self._loop.run_until_complete(self._connection.fetch(self._sql, self._origin, self._step, end))

    def close(self) -> None:
        self._loop.run_until_complete(self._connection.close())
        self._loop.close()


def timed(call: Callable[[], object], samples: list[float]) -> None:
    started = time.perf_counter()
    result = call()
    samples.append((time.perf_counter() - started) * 1000)
    if isinstance(result, httpx.Response) and result.status_code != 200:
        raise SystemExit(f"{result.request.url} answered {result.status_code}: {result.text[:300]}")


def measure(calls: dict[str, Callable[[], object]], rounds: int, per_round: int) -> dict[str, float]:
    return {
        name: statistics.median(values) for name, values in measure_samples(calls, rounds, per_round).items()
    }


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def measure_samples(
    calls: dict[str, Callable[[], object]], rounds: int, per_round: int
) -> dict[str, list[float]]:
    """Every call's latencies in ms, in interleaved rounds after a warm-up."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(3):
            call()
    for number in range(rounds):
        order = list(calls.items()) if number % 2 == 0 else list(reversed(calls.items()))
        for name, call in order:
            for _ in range(per_round):
                timed(call, samples[name])
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--with-samples", type=int, default=1000, help="agents with sample history")
    parser.add_argument("--hours", type=int, default=24, help="hours of samples per agent")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="postgresql: also on PostgreSQL, with 1 and 2 replicas behind a proxy, against SQLite",
    )
    parser.add_argument(
        "--database-url",
        help="with --database postgresql: the admin URL of a cluster to create the fleets' databases on "
        "(postgresql+asyncpg://...), instead of a throwaway cluster",
    )
    parser.add_argument("--proxy-workers", type=int, default=1, help="nginx worker processes (default 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 20 agents with 2 h of samples, 3 rounds of 5 requests",
    )
    args = parser.parse_args()
    if args.quick:
        args.with_samples, args.hours, args.rounds, args.per_round = 20, 2, 3, 5
    if args.database == "postgresql":
        on_postgresql(args)
        return

    results: dict[int, Measured] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            database = Path(workdir) / f"fleet-{size}.db"
            seeded = asyncio.run(seed(database, size, args.with_samples, args.hours))
            print(
                f"fleet of {size}: {int(seeded['samples']):,} samples seeded in "
                f"{seeded['seed_seconds']:.0f} s, rolled up in {seeded['rollup_seconds']:.0f} s",
                flush=True,
            )
            cost = disk_cost(database)
            process, url, log_path = start_worpen(
                Path(workdir), {**SETTINGS, "WORPEN_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
            )
            key = admin_key(log_path)
            api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
            try:
                calls: dict[str, Callable[[], object]] = {
                    name: partial(api.get, path, params=params) for name, (path, params) in ENDPOINTS.items()
                }
                calls["(floor) GET /health"] = partial(api.get, "/health")
                calls["(floor) fleet rollups SQL"] = fleet_rollups_query(database)
                medians = measure(calls, args.rounds, args.per_round)
            finally:
                api.close()
                process.send_signal(signal.SIGINT)
                process.wait(timeout=60)
            results[size] = {"medians": medians, "bytes_per_row": cost}

    sizes = args.sizes
    by_size = {size: results[size]["medians"] for size in sizes}
    print(f"\nmedian latency, ms ({args.rounds} rounds of {args.per_round} requests each)")
    print(f"{'endpoint':<28}" + "".join(f"{size:>12,}" for size in sizes) + f"{'ratio':>9}")
    summary: dict[str, dict[str, float | bool]] = {}
    for name in by_size[sizes[0]]:
        values = [by_size[size][name] for size in sizes]
        ratio = values[-1] / values[0]
        met = ratio <= TARGET_RATIO and (name not in TARGETED or values[-1] < TARGET_MS)
        flag = "" if name.startswith("(floor)") else ("  ok" if met else "  MISSED")
        print(f"{name:<28}" + "".join(f"{value:>12.2f}" for value in values) + f"{ratio:>8.2f}x{flag}")
        summary[name] = {"ms": round(values[-1], 3), "ratio": round(ratio, 3), "met": met}
    cost = results[sizes[-1]]["bytes_per_row"]
    print(
        "\nbytes on disk per row (table and its indexes): " + ", ".join(f"{t} {b}" for t, b in cost.items())
    )
    print(
        json.dumps(
            {"targets": {"ms": TARGET_MS, "ratio": TARGET_RATIO}, "summary": summary, "bytes_per_row": cost}
        )
    )


# --- --database postgresql ----------------------------------------------------------------------------------

SETUPS = ("sqlite x1", "pg x1 proxy", "pg x2 proxy")


def _setup_calls(
    setup: str, url: str, key: str, clients: list[httpx.Client]
) -> dict[str, Callable[[], object]]:
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    clients.append(api)
    calls: dict[str, Callable[[], object]] = {
        f"{name} @ {setup}": partial(api.get, path, params=params)
        for name, (path, params) in ENDPOINTS.items()
    }
    calls[f"(floor) GET /health @ {setup}"] = partial(api.get, "/health")
    return calls


def _measure_size(
    workdir: Path, size: int, args: argparse.Namespace, pg_url: str
) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    """The fleet seeded on SQLite and copied to PostgreSQL; SQLite's server, PostgreSQL's two replicas and the
    proxy started; every endpoint of every set-up timed in the same interleaved rounds."""
    database = workdir / f"fleet-{size}.db"
    costs: dict[str, dict[str, float]] = {}
    seeded = asyncio.run(seed(database, size, args.with_samples, args.hours))
    print(
        f"fleet of {size} on SQLite: {int(seeded['samples']):,} samples seeded in "
        f"{seeded['seed_seconds']:.0f} s, rolled up in {seeded['rollup_seconds']:.0f} s",
        flush=True,
    )
    copied = asyncio.run(copy_to_postgres(database, pg_url))
    print(
        f"fleet of {size} copied to PostgreSQL in {copied.pop('copy_seconds'):.0f} s: "
        + ", ".join(f"{table} {int(count):,}" for table, count in copied.items()),
        flush=True,
    )
    costs["SQLite"] = disk_cost(database)
    costs["PostgreSQL"] = postgres_disk_cost(pg_url)
    processes = []
    clients: list[httpx.Client] = []
    proxy = None
    floor = None
    try:
        process, sqlite_url, log_path = start_worpen(
            workdir, {**SETTINGS, "WORPEN_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
        )
        processes.append(process)
        sqlite_key = admin_key(log_path)
        replica = {
            **SETTINGS,
            "WORPEN_DATABASE_URL": pg_url,
            "WORPEN_SECRETS_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        first, first_url, log_path = start_worpen(workdir, {**replica, "WORPEN_REPLICA_ID": "pg-a"})
        processes.append(first)
        pg_key = admin_key(log_path)
        second, second_url, _ = start_worpen(workdir, {**replica, "WORPEN_REPLICA_ID": "pg-b"})
        processes.append(second)
        ports = [int(first_url.rsplit(":", 1)[1]), int(second_url.rsplit(":", 1)[1])]
        proxy = Proxy(workdir / f"proxy-{size}", {"pg1": ports[:1], "pg2": ports}, args.proxy_workers)
        calls = _setup_calls("sqlite x1", sqlite_url, sqlite_key, clients)
        calls |= _setup_calls("pg x1 proxy", proxy.url("pg1"), pg_key, clients)
        calls |= _setup_calls("pg x2 proxy", proxy.url("pg2"), pg_key, clients)
        calls["(floor) fleet rollups SQL @ sqlite x1"] = fleet_rollups_query(database)
        floor = PostgresQuery(pg_url)
        calls["(floor) fleet rollups SQL @ pg"] = floor
        return measure_samples(calls, args.rounds, args.per_round), costs
    finally:
        for client in clients:
            client.close()
        if floor is not None:
            floor.close()
        if proxy is not None:
            proxy.stop()
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait(timeout=60)


def on_postgresql(args: argparse.Namespace) -> None:
    postgres = None if args.database_url else Postgres()
    admin = args.database_url or (postgres.admin_url if postgres else "")
    if postgres is not None:
        print(
            f"{postgres.version()} on 127.0.0.1:{postgres.port} (fsync and synchronous_commit on)", flush=True
        )
    results: dict[int, dict[str, list[float]]] = {}
    costs: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for size in args.sizes:
                name = f"worpen_dashboard_{size}_{os.getpid()}"

                async def create(database: str = name) -> None:
                    connection = await asyncpg.connect(driver_url(admin))
                    try:
                        await connection.execute(f'CREATE DATABASE "{database}"')
                    finally:
                        await connection.close()

                asyncio.run(create())
                results[size], costs = _measure_size(
                    Path(workdir), size, args, f"{admin.rsplit('/', 1)[0]}/{name}"
                )
    finally:
        if postgres is not None:
            postgres.stop()
    _postgres_report(args, results, costs)


def _postgres_report(
    args: argparse.Namespace, results: dict[int, dict[str, list[float]]], costs: dict[str, dict[str, float]]
) -> None:
    largest = args.sizes[-1]
    summary: dict[str, object] = {}
    names = [*ENDPOINTS, "(floor) GET /health"]
    for size in args.sizes:
        samples = results[size]
        print(f"\n{size:,} agents: p50 / p99 ms ({args.rounds} rounds of {args.per_round} requests each)")
        print(
            f"{'endpoint':<26}" + "".join(f"{setup:>20}" for setup in SETUPS) + f"{'pg x1/sqlite':>14}"
            f"{'pg x2/sqlite':>14}"
        )
        for name in names:
            figures = {setup: samples[f"{name} @ {setup}"] for setup in SETUPS}
            medians = {setup: statistics.median(values) for setup, values in figures.items()}
            line = "".join(f"{medians[setup]:>11.2f} /{p99(figures[setup]):>7.2f}" for setup in SETUPS)
            one, two = (medians[setup] / medians["sqlite x1"] for setup in SETUPS[1:])
            flag = ""
            if size == largest and name in TARGETED:
                worst = max(p99(figures["pg x1 proxy"]), p99(figures["pg x2 proxy"]))
                flag = (
                    "  ok" if max(medians["pg x1 proxy"], medians["pg x2 proxy"]) < TARGET_MS else "  MISSED"
                )
                summary[name] = {
                    **{f"{setup} p50_ms": round(medians[setup], 2) for setup in SETUPS},
                    **{f"{setup} p99_ms": round(p99(figures[setup]), 2) for setup in SETUPS},
                    "pg_x1_over_sqlite": round(one, 3),
                    "pg_x2_over_sqlite": round(two, 3),
                    "worst_pg_p99_ms": round(worst, 2),
                }
            print(f"{name:<26}{line}{one:>14.2f}{two:>14.2f}{flag}")
        for label in ("sqlite x1", "pg"):
            values = samples[f"(floor) fleet rollups SQL @ {label}"]
            print(
                f"(floor) fleet rollups SQL on {label}: "
                f"{statistics.median(values):.2f} / {p99(values):.2f} ms"
            )
    print(
        f"\ntarget: the median of stats, network?range=24h and load?range=24h under {TARGET_MS:g} ms at "
        f"{largest:,} agents on PostgreSQL, with 1 and 2 replicas"
    )
    for label, cost in costs.items():
        print(f"bytes on disk per row, {label}: " + ", ".join(f"{t} {b}" for t, b in cost.items()))
    print(json.dumps({"target_ms": TARGET_MS, "agents": largest, "summary": summary, "bytes_per_row": costs}))


if __name__ == "__main__":
    main()
