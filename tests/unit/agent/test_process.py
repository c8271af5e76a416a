"""`worpen-agent` as an operator runs it: bad settings exit with 2, an unreachable server is retried with
growing delays, and SIGTERM ends it cleanly (exit 0)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

COMMAND = [sys.executable, "-c", "from worpen_agent.cli import main; main()"]


def environment(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("WORPEN_")}
    return {**env, **extra}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def key_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "agent.key"
    path.write_text("wpn_not_a_real_key\n")
    os.chmod(path, mode)
    return path


def test_the_command_answers_help() -> None:
    done = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, timeout=30, env=environment())
    assert done.returncode == 0
    assert "WORPEN_AGENT_SERVER" in done.stdout


def test_a_key_file_readable_by_others_stops_it_with_exit_code_2(tmp_path: Path) -> None:
    path = key_file(tmp_path, 0o644)
    done = subprocess.run(
        [*COMMAND, "--server", "127.0.0.1:1", "--id", "bee-001", "--key-file", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment(),
    )
    assert done.returncode == 2
    assert "accessible by group or others" in done.stderr
    assert "wpn_not_a_real_key" not in done.stderr


def test_an_unreachable_server_is_retried_with_growing_delays_until_sigterm(tmp_path: Path) -> None:
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *COMMAND,
                "--server",
                f"127.0.0.1:{closed_port()}",
                "--id",
                "bee-001",
                "--key-file",
                str(key_file(tmp_path)),
                "--docker-url",
                f"unix://{tmp_path}/no-docker.sock",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment(WORPEN_AGENT_BACKOFF_MAX="2"),
        )
    try:
        deadline = time.monotonic() + 30
        while len(re.findall(r"backoff up to", log_path.read_text())) < 5:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log_path.read_text()
    ceilings = [float(c) for c in re.findall(r"retry in [0-9.]+ s \(backoff up to ([0-9.]+) s\)", text)]
    assert ceilings[:5] == [0.5, 1.0, 2.0, 2.0, 2.0]
    delays = [float(d) for d in re.findall(r"retry in ([0-9.]+) s", text)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=False))
    assert "cannot connect (UNAVAILABLE)" in text
    assert "stopped" in text
    assert "wpn_not_a_real_key" not in text
