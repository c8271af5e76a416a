"""ContainerRuntime on a Docker engine, through the docker SDK's low-level APIClient.

The SDK blocks, so every call runs on this node's thread pool, never on the event loop, and has a
timeout: the SDK's socket timeout, and above it a deadline on the awaiting side. Streams (logs, events,
pulls, terminals) use a second client without a socket timeout, since they may stay quiet for long;
closing one shuts its socket down, which frees the thread that reads it. A wait for a container's exit
blocks on a thread of its own, so that many of them never hold up the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import docker
import msgspec
import requests
from docker.auth import get_config_header, resolve_repository_name
from docker.errors import APIError, DockerException, create_api_error_from_http_exception
from docker.tls import TLSConfig
from docker.types import Mount as DockerMount
from docker.types.daemon import CancellableStream
from docker.utils import parse_repository_tag
from docker.utils.json_stream import json_stream

from worpen_core.containers.model import (
    Container,
    ContainerDetail,
    ContainerUsage,
    EngineEvent,
    EngineInfo,
    Image,
    LogLine,
    LogQuery,
    PruneReport,
    PruneRequest,
    PullProgress,
    WorkloadSpec,
)
from worpen_core.shared.errors import (
    Ambiguous,
    Conflict,
    EngineFailed,
    InvalidInput,
    NotFound,
    Unavailable,
    WorpenError,
)
from worpen_infra.docker import mapping
from worpen_infra.docker.mapping import LogParser

T = TypeVar("T")

LOG_READ_BYTES = 256 * 1024
"""Block size of a log read that does not follow (memory stays bounded by it, whatever the log's size)."""
LOG_BATCH_LINES = 1000
"""At most this many log lines cross from the reading thread to the event loop at once."""
ARCHIVE_BYTES_PER_SECOND = 10 * 1024 * 1024
"""An archive uploaded slower than this is taken for an engine that stopped answering: the deadline of a
copy into a container grows with the archive's size at this rate."""


@dataclass(frozen=True, slots=True)
class EngineAddress:
    """Where a node's engine listens: a docker URL (unix://, tcp://, https://) and TLS files if any."""

    node: str
    url: str
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify: bool = True

    def tls(self) -> TLSConfig | bool:
        if self.tls_cert is None and self.tls_ca is None:
            return self.url.startswith("https://")
        client_cert = (self.tls_cert, self.tls_key) if self.tls_cert and self.tls_key else None
        return TLSConfig(client_cert=client_cert, ca_cert=self.tls_ca, verify=self.tls_verify)


class DockerContainerRuntime:
    def __init__(self, address: EngineAddress, *, timeout: float, threads: int = 64) -> None:
        self.node = address.node
        self._address = address
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"docker-{address.node}")
        self._clients: dict[bool, docker.APIClient] = {}
        self._lock = threading.Lock()
        self._dependency = f"node {address.node} docker engine"

    async def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _client(self, streaming: bool = False) -> docker.APIClient:
        """The SDK client (created on first use, in a pool thread: it asks the engine for its API
        version, within the timeout); the streaming one then has no socket timeout."""
        with self._lock:
            client = self._clients.get(streaming)
            if client is None:
                client = docker.APIClient(
                    base_url=self._address.url,
                    version="auto",
                    timeout=self._timeout,  # type: ignore[arg-type]  # seconds, a float for requests
                    tls=self._address.tls(),
                )
                if streaming:
                    client.timeout = None  # type: ignore[assignment]  # the SDK reads it per request
                # No per-call lookups of proxy variables and ~/.netrc (costly, per profile): Worpen
                # talks to engines directly.
                client.trust_env = False
                self._clients[streaming] = client
            return client

    async def _run(
        self,
        call: Callable[[], T],
        *,
        kind: str = "container",
        ref: str = "",
        slack: float = 0,
        late: WorpenError | None = None,
    ) -> T:
        """Run a blocking SDK call on the pool, translating its failures, for at most the timeout
        (plus `slack`, for calls that wait on purpose, like a stop's grace period); past it, raise
        `late` (by default: the engine is unavailable)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._translating(call, kind, ref))
        deadline = self._timeout + slack + 1
        try:
            return await asyncio.wait_for(future, timeout=deadline)
        except TimeoutError:
            raise late or Unavailable(self._dependency, f"no answer within {deadline:g} s") from None

    def _translating(self, call: Callable[[], T], kind: str, ref: str) -> Callable[[], T]:
        def run() -> T:
            try:
                return call()
            except APIError as exc:
                raise self._api_error(exc, kind, ref) from exc
            except (requests.exceptions.RequestException, DockerException, OSError) as exc:
                raise Unavailable(self._dependency, _reason(exc)) from exc

        return run

    def _api_error(self, exc: APIError, kind: str, ref: str) -> WorpenError:
        message = str(exc.explanation or exc)
        status = exc.status_code or 500
        if "multiple ids found" in message.lower():
            return Ambiguous(ref)
        if status == 404:
            return NotFound(kind, ref) if ref else EngineFailed(self._dependency, message)
        if status == 409:
            return Conflict(message)
        if status == 400:
            return InvalidInput(message)
        return EngineFailed(self._dependency, message)

    async def info(self) -> EngineInfo:
        version = await self._run(lambda: self._client().version())
        counts = await self._run(lambda: self._client().info())
        return mapping.engine_info(version, counts)

    async def list_containers(self) -> list[Container]:
        # One list call, its JSON decoded by the mapping (not by the SDK's `containers()`: see there).
        def fetch() -> list[Container]:
            client = self._client()
            url = f"{client.base_url}/v{client.api_version}/containers/json"
            response = client.get(url, params={"all": 1}, timeout=self._timeout)
            _raise_for_status(response)
            return mapping.containers(response.content, self.node)

        return await self._run(fetch)

    async def inspect(self, ref: str) -> ContainerDetail:
        raw = await self._run(lambda: self._client().inspect_container(ref), ref=ref)
        return mapping.detail(raw, self.node)

    async def usage(self, ref: str) -> ContainerUsage:
        # one_shot: the engine answers at once instead of waiting a second for a reading to compare with
        raw = await self._run(lambda: self._client().stats(ref, stream=False, one_shot=True), ref=ref)
        return mapping.usage(raw)

    async def logs(self, ref: str, query: LogQuery) -> AsyncIterator[Sequence[LogLine]]:
        params: dict[str, Any] = {
            "stdout": int(query.stdout),
            "stderr": int(query.stderr),
            "timestamps": 1,
            "follow": int(query.follow),
            "tail": "all" if query.tail is None else str(query.tail),
        }
        if query.since is not None:
            params["since"] = f"{query.since.timestamp():.9f}"

        def open_log() -> tuple[CancellableStream[bytes], LogParser, _Batch | None]:
            client = self._client(streaming=True)
            url = f"{client.base_url}/v{client.api_version}/containers/{quote(ref, safe='')}/logs"
            response = client.get(url, params=params, stream=True, timeout=(self._timeout, None))
            _raise_for_status(response)
            if query.follow:  # hand over each chunk as it arrives
                return CancellableStream(response.iter_content(chunk_size=None), response), LogParser(), None
            # Otherwise read in large blocks, the first batch in this same call: one thread hop for a
            # short log instead of three (measured on logs?tail=100).
            stream = CancellableStream(_blocks(response), response)
            parser = LogParser()
            return stream, parser, _next_batch(stream, parser, follow=False)

        stream, parser, first = await self._run(open_log, ref=ref)
        return self._read_log(stream, parser, first, ref, follow=query.follow)

    async def _read_log(
        self,
        stream: CancellableStream[bytes],
        parser: LogParser,
        first: _Batch | None,
        ref: str,
        *,
        follow: bool,
    ) -> AsyncIterator[Sequence[LogLine]]:
        loop = asyncio.get_running_loop()
        read = self._translating(lambda: _next_batch(stream, parser, follow=follow), "container", ref)
        try:
            lines, ended = first or ([], False)
            while True:
                if lines:
                    yield lines
                if ended:
                    return
                lines, ended = await loop.run_in_executor(self._pool, read)
        finally:
            stream.close()

    async def start(self, ref: str) -> None:
        await self._run(lambda: self._client().start(ref), ref=ref)

    async def stop(self, ref: str, grace_seconds: int | None) -> None:
        grace = 10 if grace_seconds is None else grace_seconds
        await self._run(lambda: self._client().stop(ref, timeout=grace), ref=ref, slack=grace)

    async def restart(self, ref: str, grace_seconds: int | None) -> None:
        grace = 10 if grace_seconds is None else grace_seconds
        await self._run(lambda: self._client().restart(ref, timeout=grace), ref=ref, slack=grace)

    async def remove(self, ref: str, *, force: bool, volumes: bool) -> None:
        await self._run(lambda: self._client().remove_container(ref, v=volumes, force=force), ref=ref)

    async def prune(self, request: PruneRequest) -> PruneReport:
        if request.dry_run:

            def plan() -> PruneReport:
                client = self._client()
                return mapping.prune_plan(client.df(), client.networks(), request, self.node)

            return await self._run(plan, slack=self._timeout)
        client = self._client()
        # Each prune may walk the whole engine's storage: give them the timeout each.
        containers = await self._run(client.prune_containers, slack=self._timeout)
        images: dict[str, Any] = await self._run(
            lambda: client.prune_images(  # type: ignore[no-untyped-call]  # (missing from types-docker)
                filters={"dangling": not request.all}
            ),
            slack=self._timeout,
        )
        networks = await self._run(client.prune_networks, slack=self._timeout)
        builds = await self._run(lambda: client.prune_builds(all=request.all), slack=self._timeout)
        return mapping.prune_report(containers, images, networks, builds, self.node)

    async def list_images(self) -> list[Image]:
        summaries: list[dict[str, Any]] = await self._run(lambda: self._client().images(all=False))
        containers: list[dict[str, Any]] = await self._run(lambda: self._client().containers(all=True))
        histories: list[list[dict[str, Any]]] = await asyncio.gather(
            *(
                self._run(partial(self._history, image["Id"]), kind="image", ref=image["Id"])
                for image in summaries
            )
        )
        by_id = {summary["Id"]: history for summary, history in zip(summaries, histories, strict=True)}
        return mapping.images(summaries, containers, by_id, self.node)

    def _history(self, image_id: str) -> list[dict[str, Any]]:
        layers: list[dict[str, Any]] = self._client().history(image_id)  # type: ignore[no-untyped-call]
        return layers

    async def pull(self, image: str) -> AsyncIterator[PullProgress]:
        repository, tag = parse_repository_tag(image)

        def open_pull() -> tuple[Iterator[object], requests.Response]:
            # As the SDK's `pull`, but keeping the response, so that the pull can be abandoned.
            client = self._client(streaming=True)
            auth = get_config_header(client, resolve_repository_name(repository)[0])
            response = client.post(
                f"{client.base_url}/v{client.api_version}/images/create",
                params={"fromImage": repository, "tag": tag or "latest"},
                headers={"X-Registry-Auth": auth} if auth else {},
                stream=True,
                timeout=(self._timeout, None),
            )
            _raise_for_status(response)
            return json_stream(response.iter_content(chunk_size=None)), response

        registry = f"registry of {image!r} (via node {self.node})"
        # Reaching a registry may legitimately take longer than an engine call.
        slack = 2 * self._timeout
        late = EngineFailed(registry, f"no answer within {self._timeout + slack + 1:g} s")
        try:
            stream, response = await self._run(open_pull, kind="image", ref=image, slack=slack, late=late)
        except EngineFailed as exc:
            raise EngineFailed(registry, str(exc.detail).removeprefix(f"{self._dependency}: ")) from exc
        return self._progress(stream, response, registry)

    async def _progress(
        self, stream: Iterator[object], response: requests.Response, registry: str
    ) -> AsyncIterator[PullProgress]:
        """The pull's progress. Left before its end (the client went away, the pull stalled), the
        connection is shut down: the engine abandons the pull and the reading thread is freed."""
        loop = asyncio.get_running_loop()
        done = object()
        read = self._translating(lambda: next(stream, done), "image", "")
        try:
            while True:
                message = await loop.run_in_executor(self._pool, read)
                if message is done:
                    return
                assert isinstance(message, dict)
                yield mapping.pull_progress(message, registry)
        finally:
            CancellableStream(stream, response).close()

    async def exec(self, ref: str, command: Sequence[str]) -> DockerTerminal:
        def open_exec() -> Any:
            client = self._client(streaming=True)
            created = client.exec_create(
                ref, list(command), stdin=True, tty=True, environment={"TERM": "xterm"}
            )
            raw = client.exec_start(created["Id"], tty=True, socket=True)
            return raw

        raw = await self._run(open_exec, ref=ref)
        return DockerTerminal(raw, self._pool)

    async def events(self, since_nanos: int | None) -> AsyncIterator[EngineEvent]:
        # The SDK takes whole seconds: ask from the second, and skip what came before the nanosecond.
        since = None if since_nanos is None else since_nanos // 10**9
        stream = await self._run(lambda: self._client(streaming=True).events(since=since, decode=True))
        return self._read_events(stream, since_nanos or 0)

    async def _read_events(
        self, stream: CancellableStream[dict[str, Any]], since_nanos: int
    ) -> AsyncIterator[EngineEvent]:
        loop = asyncio.get_running_loop()
        done = object()
        try:
            while True:
                raw = await loop.run_in_executor(
                    self._pool, self._translating(lambda: next(stream, done), "", "")
                )
                if raw is done:
                    return
                assert isinstance(raw, dict)
                event = mapping.event(raw)
                if event.time_nanos >= since_nanos:
                    yield event
        finally:
            stream.close()

    async def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        def create() -> None:
            client = self._client()
            # The engine answers a create of an existing volume with that volume: look first.
            try:
                client.inspect_volume(name)
            except APIError as exc:
                if exc.status_code != 404:
                    raise
            else:
                raise Conflict(f"volume {name} exists on node {self.node}")
            client.create_volume(name, labels=dict(labels))

        await self._run(create, kind="volume", ref=name)

    async def remove_volume(self, name: str) -> None:
        await self._run(lambda: self._client().remove_volume(name), kind="volume", ref=name)

    async def volumes(self, label: str) -> list[str]:
        listed = await self._run(lambda: self._client().volumes(filters={"label": label}))
        return sorted(str(volume["Name"]) for volume in listed.get("Volumes") or ())

    async def create(self, spec: WorkloadSpec) -> str:
        # The host config is spelled out, so that a workload never gets more than this: no privileges, no
        # host paths or devices, no added capabilities, the default network, kept after it exits (its exit
        # code is read). An init process as PID 1 forwards signals, so a shell's commands get a stop's TERM.
        mounts = [DockerMount(spec.mount_path, spec.volume, type="volume")] if spec.volume else None

        def create() -> str:
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
                spec.image,
                list(spec.command[1:]),
                entrypoint=list(spec.command[:1]),
                environment=dict(spec.env),
                labels=dict(spec.labels),
                name=spec.name,
                working_dir=spec.mount_path,
                host_config=host_config,
            )
            return str(created["Id"])

        return await self._run(create, kind="image", ref=spec.image)

    async def put_archive(self, ref: str, path: str, archive: bytes) -> None:
        def put() -> None:
            try:
                self._client().put_archive(ref, path, archive)
            except APIError as exc:
                if exc.status_code == 404 and "no such container" not in str(exc.explanation).lower():
                    raise NotFound("path", f"{path} in container {ref}") from exc
                raise

        await self._run(put, ref=ref, slack=len(archive) / ARCHIVE_BYTES_PER_SECOND)

    async def wait(self, ref: str) -> int:
        """The exit code once the container is not running. A container created but never started is not
        running: wait after starting it. A container removed meanwhile was killed first (137)."""

        def open_wait() -> requests.Response:
            # The engine answers the headers at once and the body when the container exits.
            client = self._client(streaming=True)
            url = f"{client.base_url}/v{client.api_version}/containers/{quote(ref, safe='')}/wait"
            response = client.post(
                url, params={"condition": "not-running"}, stream=True, timeout=(self._timeout, None)
            )
            _raise_for_status(response)
            return response

        response = await self._run(open_wait, ref=ref)
        try:
            return await _own_thread(
                self._translating(partial(self._exit_code, response), "container", ref),
                name=f"docker-{self.node}-wait",
            )
        except asyncio.CancelledError:
            # Shut the connection down, which frees the waiting thread.
            with contextlib.suppress(OSError):
                CancellableStream(iter(()), response).close()
            raise

    def _exit_code(self, response: requests.Response) -> int:
        try:
            result = _WAIT_RESULT.decode(response.content)
        except msgspec.DecodeError as exc:
            raise Unavailable(self._dependency, "the answer to a wait ended early") from exc
        if result.Error is not None and result.Error.Message:
            raise EngineFailed(self._dependency, result.Error.Message)
        return result.StatusCode


class _WaitError(msgspec.Struct):
    Message: str = ""


class _WaitResult(msgspec.Struct):
    StatusCode: int
    Error: _WaitError | None = None


_WAIT_RESULT = msgspec.json.Decoder(_WaitResult)


async def _own_thread(call: Callable[[], T], *, name: str) -> T:
    """Run `call` on a thread of its own: for calls that block as long as they need to (a container's
    wait), which on the bounded pool could leave no thread for the calls that answer at once."""
    done: Future[T] = Future()

    def run() -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            done.set_result(call())
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await asyncio.wrap_future(done)


def _raise_for_status(response: requests.Response) -> None:
    """As the SDK does: an error status becomes its docker.errors exception (with the engine's message)."""
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as exc:
        raise create_api_error_from_http_exception(exc) from exc


def _blocks(response: requests.Response) -> Iterator[bytes]:
    while block := response.raw.read(LOG_READ_BYTES):
        yield block


class DockerTerminal:
    """A TTY exec session: the hijacked socket of `exec start`, read and written on the pool."""

    def __init__(self, raw: Any, pool: ThreadPoolExecutor) -> None:
        # On a unix socket the SDK hands back the socket's SocketIO (kept, with the response it holds,
        # so neither is collected and closes the socket); on TLS, the socket itself.
        self._raw = raw
        self._sock: socket.socket = getattr(raw, "_sock", raw)
        self._pool = pool
        self._closed = False

    async def read(self) -> bytes:
        if self._closed:
            return b""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._sock.recv, 65536)
        except OSError:
            return b""

    async def write(self, data: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._sock.sendall, data)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


_Batch = tuple[list[LogLine], bool]
"""Log lines read, and whether the log has ended."""


def _next_batch(stream: CancellableStream[bytes], parser: LogParser, *, follow: bool) -> _Batch:
    """Read until there are lines to hand over (following) or a batch is full, or the log ends."""
    batch: list[LogLine] = []
    for chunk in stream:
        batch.extend(parser.feed(chunk))
        if len(batch) >= LOG_BATCH_LINES or (follow and batch):
            return batch, False
    batch.extend(parser.end())
    return batch, True


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "Connection refused" in text or "FileNotFoundError" in text or "No such file" in text:
        return f"cannot connect ({text})"
    return text or type(exc).__name__
