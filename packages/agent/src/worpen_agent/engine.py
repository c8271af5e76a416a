"""The node's Docker engine as the agent serves it: agent.proto's commands, run with the docker SDK.

Results are the Engine API's own JSON, so that the server reads them with the code that reads an engine
it drives directly. The SDK blocks: short calls run on a shared pool (with the SDK's socket timeout);
long ones (a follow, a pull, an exec, a wait, the event stream) read on a thread of their own, so that
many of them never hold the pool up, and cancelling one closes its connection, which frees its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import docker
import requests
from docker.auth import get_config_header, resolve_repository_name
from docker.errors import APIError, DockerException, create_api_error_from_http_exception
from docker.types import Mount
from docker.types.daemon import CancellableStream
from docker.utils import kwargs_from_env, parse_repository_tag
from docker.utils.json_stream import json_stream

from worpen_agent.shell import Shell
from worpen_proto.v1 import agent_pb2

T = TypeVar("T")
Send = Callable[[agent_pb2.AgentMessage], Awaitable[None]]
_Params = dict[str, Any]

LOG_BATCH_BYTES = 1024 * 1024
"""A log batch is sent once it holds this much..."""
LOG_BATCH_SECONDS = 1.0
"""...or this long after its first line."""
LOG_READ_BYTES = 256 * 1024
"""Block size of a log read that does not follow."""
EVENTS_RETRY_SECONDS = (0.5, 10.0)
"""First and longest wait before the event stream is opened again after the engine went away."""
DEFAULT_SHELL = ("/bin/sh",)
NO_SHELL = "this agent was not started with --allow-shell"

log = logging.getLogger(__name__)


class CommandFailed(Exception):
    """A command's end in error: CommandError's code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class _Job:
    """A command while it runs: what ends it early, and where its input goes."""

    task: asyncio.Task[object] | None = None
    cancelled: bool = False
    closers: list[Callable[[], None]] = field(default_factory=list)
    input: Callable[[bytes], Awaitable[None]] | None = None

    def close(self) -> None:
        closers, self.closers = self.closers, []
        for close in closers:
            with contextlib.suppress(OSError):
                close()


class _Thread:
    """A thread of its own for the blocking reads of one long command."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_Handler = Callable[[agent_pb2.Command, _Params, Send, _Job], Coroutine[Any, Any, object]]


class Engine:
    def __init__(self, docker_url: str | None, *, allow_shell: bool, timeout: float = 30.0) -> None:
        self._url = docker_url
        self._allow_shell = allow_shell
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="engine")
        self._clients: dict[bool, docker.APIClient] = {}
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._handlers: dict[str, _Handler] = {
            "ping": self._ping,
            "engine.info": self._info,
            "containers.inspect": self._inspect,
            "containers.stats": self._stats,
            "containers.logs": self._logs,
            "containers.start": self._start,
            "containers.stop": self._stop,
            "containers.restart": self._restart,
            "containers.remove": self._remove,
            "containers.exec": self._exec,
            "containers.wait": self._wait,
            "containers.archive": self._archive,
            "workloads.create": self._create,
            "volumes.create": self._create_volume,
            "volumes.remove": self._remove_volume,
            "volumes.list": self._volumes,
            "images.list": self._images,
            "images.pull": self._pull,
            "system.prune": self._prune,
            "system.df": self._df,
            "shell.open": self._shell,
        }

    # ---- the agent's loop calls these ----

    async def handle(self, command: agent_pb2.Command, send: Send) -> None:
        """Run one command to its end: its outputs and its CommandResult go through `send`. Never raises
        for a command's failure: it becomes CommandResult(ok=False, error=CommandError(code, message))."""
        if command.kind == "stdin":
            await self._stdin(command)
            return
        if command.id in self._jobs:
            return
        job = _Job()
        self._jobs[command.id] = job
        try:
            result = await self._outcome(command, send, job)
        finally:
            del self._jobs[command.id]
            job.close()
        await send(agent_pb2.AgentMessage(result=result))

    def cancel(self, command_id: str) -> None:
        """End a running command (a follow, a pull, an exec or shell, a wait): it answers "cancelled"."""
        job = self._jobs.get(command_id)
        if job is None or job.task is None:
            return
        job.cancelled = True
        job.close()
        job.task.cancel()

    async def inventory(self) -> agent_pb2.Inventory:
        def take() -> tuple[bytes, bytes]:
            return self._raw_get("/containers/json", {"all": 1}), self._raw_get("/images/json", {})

        # Stamped before listing: a change during the listing is newer than the stamp, so the server
        # does not take this inventory as showing it.
        taken_at_ms = time.time_ns() // 1_000_000
        containers, images = await self._call(take)
        return agent_pb2.Inventory(containers_json=containers, images_json=images, taken_at_ms=taken_at_ms)

    async def events(self) -> AsyncGenerator[agent_pb2.EngineEvent, None]:
        """The engine's events from now on, forever: when the engine goes away, the stream is opened
        again (after a growing wait) from the last event's time, skipping what was already yielded."""
        last = 0  # the last event's time (engine clock, nanoseconds)...
        seen: set[bytes] = set()  # ...and the events of that nanosecond, yielded already
        opened = 0  # when the stream was first opened (agent clock), to resume from before any event
        retry = EVENTS_RETRY_SECONDS[0]
        while True:
            since = last or opened
            thread = _Thread("engine-events")
            stream: CancellableStream[dict[str, Any]] | None = None
            try:
                stream = await thread.run(
                    partial(self._open_events, f"{since // 10**9}.{since % 10**9:09d}" if since else None)
                )
                opened = opened or time.time_ns()
                while (raw := await thread.run(partial(next, stream, None))) is not None:
                    nanos = int(raw.get("timeNano") or int(raw.get("time") or 0) * 10**9)
                    encoded = json.dumps(raw).encode()
                    if nanos < last or (nanos == last and encoded in seen):
                        continue
                    if nanos > last:
                        last, seen = nanos, set()
                    seen.add(encoded)
                    retry = EVENTS_RETRY_SECONDS[0]
                    yield agent_pb2.EngineEvent(event_json=encoded)
                log.info("engine.events_ended")
            except Exception as exc:  # whatever ended the stream (the SDK lets some read errors through raw)
                log.warning("engine.events_lost reason=%s retry_in=%.1fs", _reason(exc), retry)
            finally:
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
                thread.close()
            await asyncio.sleep(retry)
            retry = min(retry * 2, EVENTS_RETRY_SECONDS[1])

    async def close(self) -> None:
        for job in list(self._jobs.values()):
            job.close()
            if job.task is not None:
                job.task.cancel()
        for client in self._clients.values():
            client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- running a command ----

    async def _outcome(self, command: agent_pb2.Command, send: Send, job: _Job) -> agent_pb2.CommandResult:
        handler = self._handlers.get(command.kind)
        if handler is None:
            return _failed(command.id, "unsupported", f"unknown command kind {command.kind!r}")
        deadline = asyncio.timeout(
            None if not command.deadline_ms else command.deadline_ms / 1000 - time.time()
        )
        try:
            params = _params(command.params_json)
            task: asyncio.Task[object] = asyncio.create_task(handler(command, params, send, job))
            job.task = task
            async with deadline:
                value = await task
        except CommandFailed as exc:
            return _failed(command.id, exc.code, exc.message)
        except TimeoutError as exc:
            if deadline.expired():
                return _failed(command.id, "timed_out", "the command's deadline passed")
            # A socket's own timeout: the engine did not answer in time.
            return _failed(command.id, "unavailable", f"the docker engine did not answer: {_reason(exc)}")
        except asyncio.CancelledError:
            if not job.cancelled:
                raise
            return _failed(command.id, "cancelled", "the command was cancelled")
        except APIError as exc:
            failure = _api_failure(exc)
            return _failed(command.id, failure.code, failure.message)
        except (requests.exceptions.RequestException, DockerException, OSError) as exc:
            return _failed(command.id, "unavailable", f"the docker engine cannot be reached: {_reason(exc)}")
        except Exception as exc:  # a command must end with a result, whatever went wrong
            log.exception("engine.command_failed kind=%s", command.kind)
            return _failed(command.id, "engine_failed", f"{type(exc).__name__}: {exc}")
        return agent_pb2.CommandResult(id=command.id, ok=True, result_json=json.dumps(value).encode())

    async def _stdin(self, command: agent_pb2.Command) -> None:
        try:
            target = _str(_params(command.params_json), "target")
        except CommandFailed:
            return
        job = self._jobs.get(target)
        if job is not None and job.input is not None:
            with contextlib.suppress(OSError):
                await job.input(command.data)

    def _client(self, streaming: bool = False) -> docker.APIClient:
        """The SDK client, created on first use (in a pool thread: it asks the engine for its API
        version); the streaming one has no socket timeout, since a stream may stay quiet for long."""
        with self._lock:
            client = self._clients.get(streaming)
            if client is None:
                options: dict[str, Any] = (
                    dict(kwargs_from_env()) if self._url is None else {"base_url": self._url}
                )
                client = docker.APIClient(version="auto", timeout=self._timeout, **options)  # type: ignore[arg-type]
                if streaming:
                    client.timeout = None  # type: ignore[assignment]  # the SDK reads it per request
                self._clients[streaming] = client
            return client

    async def _call(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _url_of(self, client: docker.APIClient, path: str) -> str:
        return f"{client.base_url}/v{client.api_version}{path}"

    def _raw_get(self, path: str, params: Mapping[str, Any]) -> bytes:
        """An Engine API answer's bytes as they came (nothing decoded and encoded again)."""
        client = self._client()
        response = client.get(self._url_of(client, path), params=dict(params), timeout=self._timeout)
        _raise_for_status(response)
        return response.content

    def _open_events(self, since: str | None) -> CancellableStream[dict[str, Any]]:
        # The engine also takes "seconds.nanoseconds" (the SDK's types say whole seconds only).
        client = self._client(streaming=True)
        stream: CancellableStream[dict[str, Any]] = client.events(since=since, decode=True)  # type: ignore[call-overload]
        return stream

    # ---- the kinds ----

    async def _ping(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        return {}

    async def _info(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        version = await self._call(lambda: self._client().version())
        info = await self._call(lambda: self._client().info())
        return {"version": version, "info": info}

    async def _inspect(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref = _str(params, "ref")
        return await self._call(lambda: self._client().inspect_container(ref))

    async def _stats(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref = _str(params, "ref")
        return await self._call(lambda: self._client().stats(ref, stream=False, one_shot=True))

    async def _start(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref = _str(params, "ref")
        await self._call(lambda: self._client().start(ref))
        return {}

    async def _stop(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref, grace = _str(params, "ref"), _grace(params)
        await self._call(lambda: self._client().stop(ref, timeout=grace))
        return {}

    async def _restart(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref, grace = _str(params, "ref"), _grace(params)
        await self._call(lambda: self._client().restart(ref, timeout=grace))
        return {}

    async def _remove(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref = _str(params, "ref")
        force, volumes = _bool(params, "force"), _bool(params, "volumes")
        await self._call(lambda: self._client().remove_container(ref, v=volumes, force=force))
        return {}

    async def _archive(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref, path = _str(params, "ref"), _str(params, "path")
        await self._call(lambda: self._client().put_archive(ref, path, command.data))
        return {}

    async def _create(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        # The host config is built here from these params only, as the server builds it for an engine it
        # drives: no privileges, no host paths or devices, no added capabilities, the default network,
        # kept after it exits; an init process as PID 1 forwards signals.
        name, image = _str(params, "name"), _str(params, "image")
        run = _strings(params, "command")
        env, labels = _mapping(params, "env"), _mapping(params, "labels")
        volume = params.get("volume")
        if volume is not None and not isinstance(volume, str):
            raise CommandFailed("invalid", "volume must be a string or null")
        mount_path = _str(params, "mountPath")
        mounts = [Mount(mount_path, volume, type="volume")] if volume else None

        def create() -> object:
            client = self._client()
            host_config = client.create_host_config(
                privileged=False,
                binds=None,
                devices=None,
                cap_add=None,
                network_mode=None,
                auto_remove=False,
                init=True,
                mounts=mounts,
            )
            created = client.create_container(
                image,
                run[1:],
                entrypoint=run[:1],
                environment=env,
                labels=labels,
                name=name,
                working_dir=mount_path,
                host_config=host_config,
            )
            return {"id": str(created["Id"])}

        return await self._call(create)

    async def _create_volume(
        self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job
    ) -> object:
        name, labels = _str(params, "name"), _mapping(params, "labels")

        def create() -> None:
            client = self._client()
            # The engine answers a create of an existing volume with that volume: look first.
            try:
                client.inspect_volume(name)
            except APIError as exc:
                if exc.status_code != 404:
                    raise
            else:
                raise CommandFailed("conflict", f"volume {name} exists")
            client.create_volume(name, labels=labels)

        await self._call(create)
        return {}

    async def _remove_volume(
        self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job
    ) -> object:
        name = _str(params, "name")
        await self._call(lambda: self._client().remove_volume(name))
        return {}

    async def _volumes(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        label = _str(params, "label")
        listed = await self._call(lambda: self._client().volumes(filters={"label": label}))
        return {"names": sorted(str(volume["Name"]) for volume in listed.get("Volumes") or ())}

    async def _images(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        images: list[dict[str, Any]] = await self._call(lambda: self._client().images(all=False))
        containers = await self._call(lambda: self._client().containers(all=True))
        histories = await asyncio.gather(
            *(self._call(partial(self._history, str(image["Id"]))) for image in images)
        )
        return {
            "images": images,
            "containers": containers,
            "histories": {image["Id"]: history for image, history in zip(images, histories, strict=True)},
        }

    def _history(self, image_id: str) -> object:
        return self._client().history(image_id)  # type: ignore[no-untyped-call]

    async def _prune(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        everything = _bool(params, "all")
        client = await self._call(self._client)
        containers = await self._call(client.prune_containers)
        images = await self._call(
            lambda: client.prune_images(filters={"dangling": not everything})  # type: ignore[no-untyped-call]
        )
        networks = await self._call(client.prune_networks)
        build = await self._call(lambda: client.prune_builds(all=everything))
        return {"containers": containers, "images": images, "networks": networks, "build": build}

    async def _df(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        df = await self._call(lambda: self._client().df())
        networks = await self._call(lambda: self._client().networks())
        return {"df": df, "networks": networks}

    async def _wait(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref = _str(params, "ref")

        def open_wait() -> requests.Response:
            # The engine answers the headers at once and the body when the container is not running.
            client = self._client(streaming=True)
            response = client.post(
                self._url_of(client, f"/containers/{quote(ref, safe='')}/wait"),
                params={"condition": "not-running"},
                stream=True,
                timeout=(self._timeout, None),
            )
            job.closers.append(_closing(response))
            _raise_for_status(response)
            return response

        thread = _Thread("engine-wait")
        job.closers.append(thread.close)
        response = await thread.run(open_wait)
        answer = json.loads(await thread.run(lambda: response.content))
        message = (answer.get("Error") or {}).get("Message")
        if message:
            raise CommandFailed("engine_failed", str(message))
        return {"exitCode": int(answer["StatusCode"])}

    async def _logs(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref = _str(params, "ref")
        follow = _bool(params, "follow")
        query: dict[str, Any] = {
            "stdout": int(_bool(params, "stdout", default=True)),
            "stderr": int(_bool(params, "stderr", default=True)),
            "timestamps": 1,
            "follow": int(follow),
            "tail": "all",
        }
        tail, since = params.get("tail"), params.get("since")
        if tail is not None:
            if not isinstance(tail, int) or isinstance(tail, bool) or tail < 0:
                raise CommandFailed("invalid", "tail must be a non-negative integer or null")
            query["tail"] = str(tail)
        if since is not None:
            if not isinstance(since, int | float) or isinstance(since, bool):
                raise CommandFailed("invalid", "since must be unix seconds or null")
            query["since"] = f"{since:.9f}"

        def open_log() -> Iterator[bytes]:
            client = self._client(streaming=True)
            url = self._url_of(client, f"/containers/{quote(ref, safe='')}/logs")
            response = client.get(url, params=query, stream=True, timeout=(self._timeout, None))
            job.closers.append(_closing(response))
            _raise_for_status(response)
            # Following, each chunk is handed over as it arrives; otherwise the log is read in blocks.
            return response.iter_content(chunk_size=None) if follow else _blocks(response)

        thread = _Thread("engine-logs")
        job.closers.append(thread.close)
        chunks = await thread.run(open_log)
        await send(agent_pb2.AgentMessage(log_batch=agent_pb2.LogBatch(command_id=command.id)))
        parser = _LogParser()
        batch = _LogBatcher(command.id, send)
        loop = asyncio.get_running_loop()
        reading = asyncio.ensure_future(thread.run(partial(next, chunks, None)))
        try:
            while True:
                wait = None if batch.due is None else max(0.0, batch.due - loop.time())
                finished, _ = await asyncio.wait({reading}, timeout=wait)
                if not finished:
                    await batch.flush()
                    continue
                chunk = reading.result()
                if chunk is None:
                    break
                reading = asyncio.ensure_future(thread.run(partial(next, chunks, None)))
                for stream, line in parser.feed(chunk):
                    await batch.add(stream, line, loop.time())
        finally:
            reading.cancel()
        for stream, line in parser.end():
            await batch.add(stream, line, loop.time())
        await batch.flush()
        return {}

    async def _pull(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        image = _str(params, "image")
        repository, tag = parse_repository_tag(image)

        def open_pull() -> Iterator[object]:
            # As the SDK's `pull`, but keeping the response, so that the pull can be abandoned.
            client = self._client(streaming=True)
            auth = get_config_header(client, resolve_repository_name(repository)[0])
            response = client.post(
                self._url_of(client, "/images/create"),
                params={"fromImage": repository, "tag": tag or "latest"},
                headers={"X-Registry-Auth": auth} if auth else {},
                stream=True,
                timeout=(self._timeout, None),
            )
            job.closers.append(_closing(response))
            _raise_for_status(response)
            return json_stream(response.iter_content(chunk_size=None))

        thread = _Thread("engine-pull")
        job.closers.append(thread.close)
        messages = await thread.run(open_pull)
        await send(agent_pb2.AgentMessage(output=agent_pb2.CommandOutput(id=command.id)))
        done = object()
        while (message := await thread.run(partial(next, messages, done))) is not done:
            if isinstance(message, dict) and message.get("error"):
                raise CommandFailed("engine_failed", str(message["error"]))
            data = json.dumps(message).encode()
            await send(agent_pb2.AgentMessage(output=agent_pb2.CommandOutput(id=command.id, data=data)))
        return {}

    async def _exec(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        ref, run = _str(params, "ref"), _strings(params, "command")
        if not run:
            raise CommandFailed("invalid", "command must not be empty")

        def open_exec() -> tuple[str, Any]:
            client = self._client(streaming=True)
            created = client.exec_create(ref, run, stdin=True, tty=True, environment={"TERM": "xterm"})
            raw = client.exec_start(created["Id"], tty=True, socket=True)
            return str(created["Id"]), raw

        thread = _Thread("engine-exec")
        job.closers.append(thread.close)
        exec_id, raw = await thread.run(open_exec)
        # On a unix socket the SDK hands back the socket's SocketIO (kept referenced, with the response
        # it holds, so that neither closes the socket); on TLS, the socket itself.
        sock: socket.socket = getattr(raw, "_sock", raw)
        job.closers.append(partial(_shut, sock, raw))

        async def write(data: bytes) -> None:
            await self._call(partial(sock.sendall, data))

        job.input = write
        await send(agent_pb2.AgentMessage(output=agent_pb2.CommandOutput(id=command.id)))
        while data := await thread.run(partial(_receive, sock)):
            await send(agent_pb2.AgentMessage(output=agent_pb2.CommandOutput(id=command.id, data=data)))
        job.input = None
        return {"exitCode": await self._exit_code(exec_id)}

    async def _exit_code(self, exec_id: str) -> int:
        """The exec's exit code: its output ends just before the engine records that it exited."""
        for _ in range(50):
            inspected = await self._call(lambda: self._client().exec_inspect(exec_id))
            if not inspected.get("Running") and inspected.get("ExitCode") is not None:
                return int(inspected["ExitCode"])
            await asyncio.sleep(0.05)
        raise CommandFailed("engine_failed", f"exec {exec_id} ended its output but is still running")

    async def _shell(self, command: agent_pb2.Command, params: _Params, send: Send, job: _Job) -> object:
        if not self._allow_shell:
            raise CommandFailed("forbidden", NO_SHELL)
        run = _strings(params, "command") if params.get("command") is not None else list(DEFAULT_SHELL)
        if not run:
            run = list(DEFAULT_SHELL)
        try:
            shell = Shell(run)
        except OSError as exc:
            raise CommandFailed("invalid", f"cannot start {run[0]}: {exc.strerror or exc}") from exc
        job.closers.append(shell.close)
        job.input = shell.write
        await send(agent_pb2.AgentMessage(output=agent_pb2.CommandOutput(id=command.id)))
        while data := await shell.read():
            await send(agent_pb2.AgentMessage(output=agent_pb2.CommandOutput(id=command.id, data=data)))
        job.input = None
        return {"exitCode": await shell.exit_code()}


class _LogBatcher:
    """Log lines on their way to the server: a batch leaves at 1 MiB, 1 s after its first line, or at the
    end."""

    def __init__(self, command_id: str, send: Send) -> None:
        self._command_id = command_id
        self._send = send
        self._lines: list[agent_pb2.LogChunk] = []
        self._bytes = 0
        self.due: float | None = None

    async def add(self, stream: int, line: bytes, now: float) -> None:
        if self._bytes + len(line) > LOG_BATCH_BYTES:
            await self.flush()
        self._lines.append(agent_pb2.LogChunk(stream=stream, line=line))
        self._bytes += len(line) + 8  # and the field's framing, roughly
        if self.due is None:
            self.due = now + LOG_BATCH_SECONDS

    async def flush(self) -> None:
        if not self._lines:
            return
        lines, self._lines, self._bytes, self.due = self._lines, [], 0, None
        await self._send(
            agent_pb2.AgentMessage(log_batch=agent_pb2.LogBatch(command_id=self._command_id, lines=lines))
        )


class _LogParser:
    """Docker's log stream: 8-byte frame headers (stream, size) unless the container has a TTY (then all
    of it is stdout). Each line starts with its timestamp, which we always ask for, so a raw stream never
    starts like a header."""

    def __init__(self) -> None:
        self._buffer = b""
        self._framed: bool | None = None
        self._partial: dict[int, bytes] = {1: b"", 2: b""}

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        self._buffer += chunk
        if self._framed is None:
            if len(self._buffer) < 8 and b"\n" not in self._buffer:
                return []
            head = self._buffer[:8]
            self._framed = len(head) == 8 and head[0] in (0, 1, 2) and head[1:4] == b"\0\0\0"
        if not self._framed:
            data, self._buffer = self._buffer, b""
            return self._lines(1, data)
        lines: list[tuple[int, bytes]] = []
        while len(self._buffer) >= 8:
            size = int.from_bytes(self._buffer[4:8], "big")
            if len(self._buffer) < 8 + size:
                break
            stream = 2 if self._buffer[0] == 2 else 1
            payload = self._buffer[8 : 8 + size]
            self._buffer = self._buffer[8 + size :]
            lines.extend(self._lines(stream, payload))
        return lines

    def end(self) -> list[tuple[int, bytes]]:
        if self._framed is None and self._buffer:  # a log shorter than a header: no header in it
            self._partial[1] += self._buffer
        rest = [(stream, line) for stream, line in self._partial.items() if line]
        self._partial = {1: b"", 2: b""}
        return rest

    def _lines(self, stream: int, data: bytes) -> list[tuple[int, bytes]]:
        *complete, rest = (self._partial[stream] + data).split(b"\n")
        self._partial[stream] = rest
        return [(stream, line) for line in complete]


def _failed(command_id: str, code: str, message: str) -> agent_pb2.CommandResult:
    return agent_pb2.CommandResult(
        id=command_id, ok=False, error=agent_pb2.CommandError(code=code, message=message)
    )


def _api_failure(exc: APIError) -> CommandFailed:
    """The engine's error answer as a command's error, as the server reads an engine's own errors."""
    message = str(exc.explanation or exc)
    status = exc.status_code or 500
    if "multiple ids found" in message.lower():
        return CommandFailed("ambiguous", message)
    code = {404: "not_found", 409: "conflict", 400: "invalid"}.get(status, "engine_failed")
    return CommandFailed(code, message)


def _raise_for_status(response: requests.Response) -> None:
    """As the SDK does: an error status becomes its docker.errors exception (with the engine's message)."""
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as exc:
        raise create_api_error_from_http_exception(exc) from exc


def _closing(response: requests.Response) -> Callable[[], None]:
    """Shuts a streamed response's connection down, which frees the thread reading it."""
    return CancellableStream(iter(()), response).close


def _shut(sock: socket.socket, raw: Any) -> None:
    """End an exec's connection: shut down (which frees the thread reading it), then close the socket
    and the SDK's file object over it (the socket is only closed once both are)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    raw.close()


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _blocks(response: requests.Response) -> Iterator[bytes]:
    while block := response.raw.read(LOG_READ_BYTES):
        yield block


def _params(raw: bytes) -> dict[str, Any]:
    try:
        params = json.loads(raw or b"{}")
    except ValueError as exc:
        raise CommandFailed("invalid", f"params_json is not JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise CommandFailed("invalid", "params_json must be a JSON object")
    return params


def _str(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise CommandFailed("invalid", f"{name} must be a non-empty string")
    return value


def _bool(params: Mapping[str, Any], name: str, *, default: bool = False) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise CommandFailed("invalid", f"{name} must be true or false")
    return value


def _grace(params: Mapping[str, Any]) -> int:
    value = params.get("grace")
    if value is None:
        return 10
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CommandFailed("invalid", "grace must be a non-negative integer or null")
    return value


def _strings(params: Mapping[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CommandFailed("invalid", f"{name} must be a list of strings")
    return list(value)


def _mapping(params: Mapping[str, Any], name: str) -> dict[str, str]:
    value = params.get(name) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise CommandFailed("invalid", f"{name} must be an object of strings")
    return {str(key): item for key, item in value.items()}


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
