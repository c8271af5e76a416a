"""What the benchmarks of PostgreSQL and replicas run Worpen on: a throwaway PostgreSQL cluster and a
round-robin proxy (nginx), both plain processes on free loopback ports in a temp dir, installed from
Debian's packages when missing (as the benches install wrk).

The cluster is set up as an operator would run it, not as the tests do: fsync and synchronous_commit on,
so every acknowledged commit waits for the disk. The proxy is one nginx with one listening port per
group of replicas, so a group of one and a group of two go through the same process and configuration:
their ratio measures the second replica, not the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import asyncpg

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In a child process: get SIGTERM if the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def apt_install(package: str) -> None:
    if os.geteuid() != 0:
        raise ClusterError(
            f"{package} is missing; install it (Debian: apt-get install -y {package}) or run as root"
        )
    print(f"{package} is missing; installing it with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=False, timeout=600).returncode:
        subprocess.run(
            ["apt-get", "update", "-qq"], check=True, timeout=300, env=env, stdout=subprocess.DEVNULL
        )
        subprocess.run(install, check=True, timeout=600, env=env, stdout=subprocess.DEVNULL)


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of a process and of its descendants (PostgreSQL's backends, nginx's workers), from
    /proc: the live ones, and those that exited and were waited for (their parent's cutime and cstime),
    so a backend that ends between two reads does not take its CPU with it."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            pid = int(stat.split("/")[2])
            parents[pid] = int(fields[1])
            cpu[pid] = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    total = 0.0
    for pid, seconds in cpu.items():
        walk = pid
        while walk > 1 and walk != root:
            walk = parents.get(walk, 0)
        if walk == root:
            total += seconds
    return total


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        apt_install("postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise ClusterError("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/pg_ctl")
    return Path(found[-1]).parent


class Postgres:
    """A throwaway cluster: initdb (as the `postgres` user when root: initdb refuses root) in a temp dir,
    trust authentication on loopback only, durable commits; `stop` removes it."""

    def __init__(self, max_connections: int = 200) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="worpen-bench-postgres-"))
        self.port = free_port()
        self._as_pg: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self._as_pg = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run(
            "initdb", "--pgdata", str(data), "--username", "postgres", "--auth", "trust", "--encoding", "UTF8"
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=on "
            f"-c synchronous_commit=on -c full_page_writes=on -c max_connections={max_connections}"
        )
        self._run(
            "pg_ctl",
            "--pgdata",
            str(data),
            "--log",
            str(self.dir / "server.log"),
            "--wait",
            "--timeout",
            "60",
            "-o",
            options,
            "start",
        )
        self.pid = int((data / "postmaster.pid").read_text().split()[0])

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as_pg, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode:
            log = self.dir / "server.log"
            raise ClusterError(
                f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}"
                + (log.read_text() if log.exists() else "")
            )

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        asyncio.run(execute(self.admin_url, f'CREATE DATABASE "{name}"'))
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def version(self) -> str:
        done = subprocess.run(
            [str(self.bin / "postgres"), "--version"], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def stop(self) -> None:
        with contextlib.suppress(ClusterError, subprocess.SubprocessError):
            self._run("pg_ctl", "--pgdata", str(self.dir / "data"), "--mode", "fast", "--wait", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def driver_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(driver_url(url))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def fetch_values(url: str, queries: Sequence[str]) -> list[int]:
    """The first column of the first row of each query."""
    connection = await asyncpg.connect(driver_url(url))
    try:
        return [int(await connection.fetchval(query)) for query in queries]
    finally:
        await connection.close()


class Proxy:
    """nginx as a plain process (not a service), with a generated configuration: for each named group of
    upstream ports, a listening port that spreads requests round robin over them, HTTP/1.1 and kept-alive
    connections to the upstreams (what a load balancer in front of replicas does). An idle connection to a
    replica is closed by nginx after 4 s, before uvicorn closes it (5 s): otherwise nginx may send a request
    on a connection the replica is closing at that moment, and answer 502 (a POST is not retried)."""

    def __init__(self, workdir: Path, groups: Mapping[str, Sequence[int]], workers: int = 1) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            apt_install("nginx-light")
        if not Path(binary).exists():
            raise ClusterError("apt-get installed nginx-light but there is no /usr/sbin/nginx")
        self.dir = workdir / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in groups}
        blocks = []
        for name, upstreams in groups.items():
            servers = "".join(f"    server 127.0.0.1:{port};\n" for port in upstreams)
            blocks.append(
                f"  upstream {name} {{\n{servers}    keepalive 128;\n    keepalive_timeout 4s;\n  }}\n"
                f"  server {{\n    listen 127.0.0.1:{self.ports[name]} backlog=4096;\n"
                f"    location / {{\n      proxy_pass http://{name};\n      proxy_http_version 1.1;\n"
                '      proxy_set_header Connection "";\n      proxy_set_header Host $host;\n'
                "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                "      proxy_read_timeout 60s;\n    }\n  }\n"
            )
        temp = self.dir / "temp"
        temp.mkdir(exist_ok=True)
        config = (
            f"worker_processes {workers};\npid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  keepalive_requests 1000000;\n"
            + "".join(
                f"  {kind}_temp_path {temp}/{kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + "".join(blocks)
            + "}\n"
        )
        self.config = self.dir / "nginx.conf"
        self.config.write_text(config)
        self._log: IO[bytes] = (self.dir / "stderr.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                "-p",
                str(self.dir),
                "-e",
                str(self.dir / "error.log"),
                "-c",
                str(self.config),
                "-g",
                "daemon off;",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._wait()

    def _wait(self, timeout: float = 10) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise ClusterError(f"nginx exited with {self.proc.returncode}: {self.errors()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", next(iter(self.ports.values()))), timeout=1),
            ):
                return
            time.sleep(0.1)
        raise ClusterError(f"nginx did not listen within {timeout:g}s: {self.errors()}")

    def errors(self) -> str:
        log = self.dir / "error.log"
        return (log.read_text() if log.exists() else "")[-2000:]

    def url(self, group: str) -> str:
        return f"http://127.0.0.1:{self.ports[group]}"

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise ClusterError(f"nginx died with {self.proc.returncode}: {self.errors()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGQUIT)  # graceful: workers finish what they serve
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
