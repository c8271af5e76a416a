"""Real `worpen-agent` processes for the integration tests: each serves the local Docker engine (or a proxy
of it) to a test server over its gRPC stream, with its own key file and log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.integration.docker_support import ENGINE_URL
from tests.integration.support import DEADLINE_SECONDS, WorpenServer, base_env


def agent_command() -> list[str]:
    """The installed `worpen-agent` entry point of this environment (what an operator runs)."""
    script = Path(sys.executable).parent / "worpen-agent"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from worpen_agent.cli import main; main()"]


def agent_key(client: httpx.Client, *agent_ids: str) -> str:
    """A new agent key bound to `agent_ids`, made over the API by an admin."""
    answer = client.post(
        "/api/v1/apikeys", json={"name": f"agent {agent_ids[0]}", "role": "agent", "agents": list(agent_ids)}
    )
    assert answer.status_code == 201, answer.text
    secret: str = answer.json()["key"]
    return secret


@dataclass
class AgentProcess:
    agent_id: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, seconds: float = DEADLINE_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.log():
            assert time.monotonic() < deadline, f"no {text!r} in the agent's log:\n{self.log()}"
            time.sleep(0.05)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=DEADLINE_SECONDS)
        return self.process.returncode


def launch_agent(
    server: WorpenServer,
    agent_id: str,
    key: str,
    workdir: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    docker_url: str = ENGINE_URL,
) -> AgentProcess:
    """Start `worpen-agent` for `agent_id` against `server` without waiting for it to connect."""
    workdir.mkdir(parents=True, exist_ok=True)
    key_file = workdir / f"{agent_id}.key"
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    log_path = workdir / f"{agent_id}-{time.monotonic_ns()}.log"
    command = [
        *agent_command(),
        "--server",
        server.grpc_target,
        "--id",
        agent_id,
        "--key-file",
        str(key_file),
        "--docker-url",
        docker_url,
        *args,
    ]
    environment = {**base_env(), "WORPEN_AGENT_BACKOFF_MAX": "1", **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=environment, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT
        )
    return AgentProcess(agent_id, process, log_path)


def agent_view(client: httpx.Client, agent_id: str) -> dict[str, Any] | None:
    answer = client.get(f"/api/v1/agents/{agent_id}")
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view


def wait_connected(
    client: httpx.Client, agent: AgentProcess, seconds: float = DEADLINE_SECONDS
) -> dict[str, Any]:
    """The agent's view once it is connected over its stream (and its inventory arrived)."""
    deadline = time.monotonic() + seconds
    while True:
        view = agent_view(client, agent.agent_id)
        if view is not None and view.get("connected"):
            listed = client.get("/api/v1/containers", params={"node": agent.agent_id})
            if listed.status_code == 200:
                return view
        assert agent.process.poll() is None, (
            f"the agent exited with {agent.process.returncode}:\n{agent.log()}"
        )
        assert time.monotonic() < deadline, f"{agent.agent_id} did not connect:\n{agent.log()}"
        time.sleep(0.1)
