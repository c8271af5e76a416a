"""Helpers of the Docker tests: the local engine (never skipped: scripts/test starts one), the test image,
containers labelled for this session and always removed, an SSE reader, and a proxy in front of the
engine's socket that tests stop and start to make an engine go away and come back."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.models.containers import Container

ENGINE_SOCKET = "/var/run/docker.sock"
ENGINE_URL = f"unix://{ENGINE_SOCKET}"
TEST_IMAGE = os.environ.get("WORPEN_TEST_IMAGE", "worpen-test/busybox:1")
DOCKERFILE = Path(__file__).parent.parent / "docker" / "Dockerfile"
SESSION_LABEL = "worpen.test.session"
SESSION = uuid.uuid4().hex[:12]
"""The value of SESSION_LABEL on every container this test session creates."""


def engine() -> docker.DockerClient:
    """The local engine, or a failure that says how to get one (tests that need Docker never skip)."""
    client = docker.DockerClient(base_url=ENGINE_URL, timeout=60)
    try:
        client.ping()
    except Exception as exc:
        raise AssertionError(
            f"no Docker engine answers on {ENGINE_SOCKET} ({exc}): run the tests with scripts/test, "
            "which installs and starts one"
        ) from exc
    return client


def ensure_test_image(client: docker.DockerClient) -> None:
    """Build the FROM-scratch busybox image if scripts/test has not (no registry is reachable)."""
    try:
        client.images.get(TEST_IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(busybox, Path(context) / "busybox")
        shutil.copy(DOCKERFILE, Path(context) / "Dockerfile")
        client.images.build(path=context, tag=TEST_IMAGE, rm=True)


def _new_name() -> str:
    return f"wt-{SESSION}-{uuid.uuid4().hex[:8]}"


class Containers:
    """Creates containers labelled with this session (and a name prefix of its own), removed by
    `remove_all` even when a test fails."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    def run(self, script: str, *, name: str | None = None, **options: Any) -> Container:
        labels = {SESSION_LABEL: SESSION, **options.pop("labels", {})}
        options.setdefault("stop_signal", "SIGKILL")
        container: Container = self.client.containers.run(
            TEST_IMAGE, ["sh", "-c", script], name=name or _new_name(), labels=labels, detach=True, **options
        )
        return container

    def create(self, *, name: str | None = None) -> Container:
        container: Container = self.client.containers.create(
            TEST_IMAGE,
            ["sh", "-c", "true"],
            name=name or _new_name(),
            labels={SESSION_LABEL: SESSION},
        )
        return container

    def remove_all(self) -> None:
        for container in self.client.containers.list(
            all=True, filters={"label": f"{SESSION_LABEL}={SESSION}"}
        ):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)


def wait_for(condition: Any, what: str, seconds: float = 30.0) -> Any:
    """Poll `condition()` until it returns something truthy; a bound on a hang, not a timing test."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a Server-Sent Events response, as they arrive."""
    event, data = "message", ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data += line.partition(":")[2].strip()
        elif not line and data:
            yield event, json.loads(data)
            event, data = "message", ""


class EngineProxy:
    """A unix socket that forwards to the engine's while running: stopping it drops every connection
    and refuses new ones, as an engine that went away would.

    A request that contains one of `refused` is not forwarded: its connection is dropped (the caller sees
    an engine that went away) and the request is kept in `refusals`. One that contains one of `stalled` is
    not forwarded either, and never answered: an engine that hangs."""

    def __init__(self, path: Path, refused: tuple[bytes, ...] = (), stalled: tuple[bytes, ...] = ()) -> None:
        self.path = path
        self.refused = refused
        self.stalled = stalled
        self.refusals: list[bytes] = []
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        self.path.unlink(missing_ok=True)
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE_SOCKET)
            with self._lock:
                self._connections += [client, upstream]
            threading.Thread(
                target=self._pump, args=(client, upstream, self.refused, self.stalled), daemon=True
            ).start()
            threading.Thread(target=self._pump, args=(upstream, client, (), ()), daemon=True).start()

    def _pump(
        self,
        source: socket.socket,
        target: socket.socket,
        refused: tuple[bytes, ...],
        stalled: tuple[bytes, ...],
    ) -> None:
        seen = b""  # the end of what came before, so that a word split between two reads is still seen
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if any(word in seen + data for word in refused):
                    self.refusals.append(seen + data)
                    source.shutdown(socket.SHUT_RDWR)
                    break
                if any(word in seen + data for word in stalled):
                    continue
                target.sendall(data)
                seen = data[-256:]
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
