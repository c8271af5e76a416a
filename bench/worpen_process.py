"""A real `worpen serve` for the benchmarks that time requests through it: started on free loopback ports
with the settings given (and none inherited from the caller's WORPEN_* variables), waited for, and its
initial admin key read from its output."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

SECRET = re.compile(r"wpn_[A-Za-z0-9_-]{20,}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_worpen(workdir: Path, settings: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    """The process, its URL and its log file (in `workdir`), once it answers /health."""
    port = free_port()
    log_path = workdir / f"worpen-{port}.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WORPEN_")},
        "WORPEN_LOG_FORMAT": "json",
        **settings,
    }
    worpen = Path(sys.executable).parent / "worpen"
    command = [str(worpen), "serve", "--port", str(port), "--grpc-port", str(free_port())]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return process, url, log_path
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"worpen serve did not start:\n{log_path.read_text()}")


def admin_key(log_path: Path) -> str:
    """The admin key a server on a database without keys printed when it started."""
    found = SECRET.search(log_path.read_text())
    if found is None:
        raise SystemExit(f"no admin key in the server's output:\n{log_path.read_text()}")
    return found.group(0)
