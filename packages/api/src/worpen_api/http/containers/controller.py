"""Containers and images across the fleet's Docker engines, pruning, and the engines' state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import Body, FromQuery, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Stream

from worpen_api.http.containers.dto import (
    ActionIn,
    ContainerDetailOut,
    ContainerOut,
    EngineOut,
    ImageOut,
    LogLineOut,
    PruneIn,
    PruneOut,
    PullIn,
    PullOut,
    RemovedOut,
)
from worpen_api.http.errors import documented
from worpen_api.http.openapi import NDJSON, LinesOrStream, MayStream, OptionalBody
from worpen_api.http.parameters import ContainerRef, Node, Since, since_of
from worpen_api.http.security import browser_streams, principal_of, requires
from worpen_core.access.model import Permission
from worpen_core.containers.model import ContainerState, LogLine, LogQuery, PruneRequest, PullProgress
from worpen_core.containers.service import Containers
from worpen_core.shared.errors import WorpenError
from worpen_core.shared.streams import until

UNAVAILABLE_NODES = "X-Unavailable-Nodes"
"""Response header of the fleet-wide lists: the nodes whose engine could not be asked, comma-separated."""
INVENTORY_AS_OF = "X-Inventory-As-Of"
"""Response header of the container list: `node=<RFC 3339 time>` for each node listed from its agent's
last inventory rather than asked now, comma-separated."""
_encoder = msgspec.json.Encoder()
_encode = _encoder.encode


def _unavailable_header(unavailable: dict[str, str]) -> dict[str, str]:
    return {UNAVAILABLE_NODES: ", ".join(sorted(unavailable))} if unavailable else {}


def _inventory_header(as_of: dict[str, datetime]) -> dict[str, str]:
    taken = (
        f"{node}={at.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"
        for node, at in sorted(as_of.items())
    )
    return {INVENTORY_AS_OF: ", ".join(taken)} if as_of else {}


def _wants_stream(request: Request[Any, Any, Any]) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


class ContainerController(Controller):
    path = "/api/v1/containers"
    tags = ["containers"]

    @get(
        operation_id="listContainers",
        responses=documented(404, 422, 503),
        opt=requires(Permission.READ),
        summary="List the containers of every node",
        description="A bare array, by node then name, of containers running or not. A node whose engine "
        f"cannot be asked is left out and named in the {UNAVAILABLE_NODES} header (see "
        "/api/v1/docker/engines for why); asking for that node alone answers 503. The nodes served by "
        "agents are listed from each agent's last inventory, kept fresh by its engine's events: the "
        f"{INVENTORY_AS_OF} header says when each was taken, as `node=<RFC 3339 time>` pairs "
        "separated by commas.",
    )
    async def list_containers(
        self,
        containers: NamedDependency[Containers],
        node: Node = None,
        container_state: Annotated[ContainerState | None, QueryParameter(name="state")] = None,
        name: Annotated[str | None, QueryParameter(max_length=255, description="Part of the name")] = None,
    ) -> Response[list[ContainerOut]]:
        listing = await containers.list_containers(node, container_state, name)
        headers = _unavailable_header(listing.unavailable) | _inventory_header(listing.as_of)
        return Response([ContainerOut.of(c) for c in listing.items], headers=headers)

    @get(
        "/{container_id:str}",
        operation_id="inspectContainer",
        responses=documented(404, 409, 422, 502, 503),
        opt=requires(Permission.READ),
        summary="Inspect a container",
    )
    async def inspect(
        self, containers: NamedDependency[Containers], container_id: ContainerRef, node: Node = None
    ) -> ContainerDetailOut:
        return ContainerDetailOut.of_detail(await containers.inspect(container_id, node))

    @get(
        "/{container_id:str}/logs",
        operation_id="containerLogs",
        responses=documented(404, 409, 422, 502, 503),
        opt=browser_streams(Permission.READ),
        operation_class=LinesOrStream,
        summary="A container's logs",
        description="JSON lines (application/x-ndjson), one `{stream, line, ts}` object per line, streamed "
        "as read. With `follow=true`, a Server-Sent Events stream instead: a `log` event per line (its data "
        "the same object) until the container stops (an `end` event), the engine fails (an `error` event) or "
        "the client leaves.",
    )
    async def logs(
        self,
        containers: NamedDependency[Containers],
        draining: NamedDependency[asyncio.Event],
        container_id: ContainerRef,
        node: Node = None,
        tail: Annotated[
            str, QueryParameter(pattern=r"^(all|[0-9]{1,6})$", description="Last lines, or 'all'")
        ] = "100",
        since: Since = None,
        timestamps: FromQuery[bool] = True,
        stream: FromQuery[Literal["stdout", "stderr", "both"]] = "both",
        follow: FromQuery[bool] = False,
    ) -> Response[Any]:
        query = LogQuery(
            tail=None if tail == "all" else int(tail),
            since=since_of(since),
            stdout=stream != "stderr",
            stderr=stream != "stdout",
            follow=follow,
        )
        batches = await containers.logs(container_id, query, node)
        if follow:
            return ServerSentEvent(_log_events(batches, timestamps, draining))
        # A log that fits in one read is answered whole; a longer one is streamed as it is read.
        # The defaults are None, never a tuple: on CPython 3.11, anext() on an async generator that ends
        # without yielding raises SystemError instead of returning a tuple default (gh-128078).
        first = await anext(batches, None)
        second = None if first is None else await anext(batches, None)
        if first is None or second is None:
            return Response(_lines_json(first or (), timestamps), media_type=NDJSON)
        return Stream(_log_lines(_chain(first, second, batches), timestamps), media_type=NDJSON)

    @post(
        "/{container_id:str}/start",
        operation_id="startContainer",
        responses=documented(400, 404, 409, 422, 502, 503),
        opt=requires(Permission.OPERATE),
        status_code=200,
        summary="Start a container",
    )
    async def start(
        self,
        request: Request[Any, Any, Any],
        containers: NamedDependency[Containers],
        container_id: ContainerRef,
        node: Node = None,
    ) -> ContainerOut:
        return ContainerOut.of(await containers.start(principal_of(request), container_id, node))

    @post(
        "/{container_id:str}/stop",
        operation_id="stopContainer",
        responses=documented(400, 404, 409, 422, 502, 503),
        opt=requires(Permission.OPERATE),
        operation_class=OptionalBody,
        status_code=200,
        summary="Stop a container",
        description="SIGTERM, then SIGKILL after `timeout` seconds (10 by default).",
    )
    async def stop(
        self,
        request: Request[Any, Any, Any],
        containers: NamedDependency[Containers],
        container_id: ContainerRef,
        node: Node = None,
        data: Annotated[ActionIn, Body(examples=[Example(value={"timeout": 10})])] = ActionIn(),  # noqa: B008
    ) -> ContainerOut:
        stopped = await containers.stop(principal_of(request), container_id, node, data.timeout)
        return ContainerOut.of(stopped)

    @post(
        "/{container_id:str}/restart",
        operation_id="restartContainer",
        responses=documented(400, 404, 409, 422, 502, 503),
        opt=requires(Permission.OPERATE),
        operation_class=OptionalBody,
        status_code=200,
        summary="Restart a container",
        description="Stop (SIGKILL after `timeout` seconds, 10 by default), then start.",
    )
    async def restart(
        self,
        request: Request[Any, Any, Any],
        containers: NamedDependency[Containers],
        container_id: ContainerRef,
        node: Node = None,
        data: Annotated[ActionIn, Body(examples=[Example(value={"timeout": 10})])] = ActionIn(),  # noqa: B008
    ) -> ContainerOut:
        restarted = await containers.restart(principal_of(request), container_id, node, data.timeout)
        return ContainerOut.of(restarted)

    @delete(
        "/{container_id:str}",
        operation_id="removeContainer",
        responses=documented(404, 409, 422, 502, 503),
        opt=requires(Permission.ADMIN),
        status_code=200,
        summary="Remove a container",
        description="A running container is only removed with `force=true` (409 otherwise).",
    )
    async def remove(
        self,
        request: Request[Any, Any, Any],
        containers: NamedDependency[Containers],
        container_id: ContainerRef,
        node: Node = None,
        force: FromQuery[bool] = False,
        volumes: Annotated[bool, QueryParameter(description="Remove its anonymous volumes too")] = False,
    ) -> RemovedOut:
        removed = await containers.remove(
            principal_of(request), container_id, node, force=force, volumes=volumes
        )
        return RemovedOut(removed.id, removed.name, removed.node)


class ImageController(Controller):
    path = "/api/v1/images"
    tags = ["images"]

    @get(
        operation_id="listImages",
        responses=documented(404, 422, 502, 503),
        opt=requires(Permission.READ),
        summary="List the images of every node, with their layers",
        description=f"One entry per tag, as `docker images` shows. Nodes that cannot be asked are named "
        f"in the {UNAVAILABLE_NODES} header.",
    )
    async def list_images(
        self, containers: NamedDependency[Containers], node: Node = None
    ) -> Response[list[ImageOut]]:
        listing = await containers.images(node)
        return Response(
            [ImageOut.of(i) for i in listing.items], headers=_unavailable_header(listing.unavailable)
        )

    @post(
        "/pull",
        operation_id="pullImage",
        operation_class=MayStream,
        responses=documented(400, 404, 422, 502, 503, 504),
        opt=requires(Permission.OPERATE),
        status_code=200,
        summary="Pull an image on a node",
        description="With `Accept: text/event-stream`, the engine's progress as Server-Sent Events "
        "(`progress`, then `done` or `error`); otherwise the final result as JSON once pulled. A registry "
        "that cannot be reached answers 502. A pull that makes no progress for WORPEN_PULL_STALL_TIMEOUT "
        "seconds is abandoned: 504, or an `error` event saying it stalled once progress is streaming.",
    )
    async def pull(
        self,
        request: Request[Any, Any, Any],
        containers: NamedDependency[Containers],
        data: Annotated[PullIn, Body(examples=[Example(value={"image": "nginx:1.27", "node": "edge-7"})])],
    ) -> Response[Any]:
        node = containers.one_node(data.node, "pulls")
        progress = await containers.pull(principal_of(request), data.image, node)
        if _wants_stream(request):
            return ServerSentEvent(_pull_events(progress, data.image, node))
        last = PullProgress(status="")
        async for last in progress:  # noqa: B007 (only the last word is kept)
            pass
        return Response(PullOut(data.image, node, last.status))


class DockerController(Controller):
    path = "/api/v1/docker"
    tags = ["docker"]

    @post(
        "/prune",
        operation_id="pruneDocker",
        responses=documented(400, 404, 422, 502, 503),
        opt=requires(Permission.ADMIN),
        status_code=200,
        summary="Prune a node: stopped containers, unused images, networks and build cache",
        description="The body is required and must say `dryRun`: with `true`, reports what would be removed "
        "and the bytes it would free, removing nothing; with `false`, removes it. `all` removes every unused "
        "image, not only dangling ones.",
    )
    async def prune(
        self,
        request: Request[Any, Any, Any],
        containers: NamedDependency[Containers],
        data: Annotated[
            PruneIn,
            Body(examples=[Example(value={"all": True, "node": "edge-7", "dryRun": True})]),
        ],
    ) -> PruneOut:
        request_ = PruneRequest(all=data.all, dry_run=data.dry_run)
        return PruneOut.of(await containers.prune(principal_of(request), data.node, request_))

    @get(
        "/engines",
        operation_id="listEngines",
        responses=documented(),
        opt=requires(Permission.READ),
        summary="The Docker engine of every node: reachable or not, since when, and why",
        description="Engines of the configuration (WORPEN_DOCKER_HOSTS) and those of agents connected over "
        "the command channel (`viaAgent`), with the node's labels.",
        sync_to_thread=False,
    )
    def engines(self, containers: NamedDependency[Containers]) -> list[EngineOut]:
        return [EngineOut.of(status) for status in containers.engines()]


def _lines_json(batch: Sequence[LogLine], timestamps: bool) -> bytes:
    return _encoder.encode_lines([LogLineOut.of(line, timestamps) for line in batch])


async def _chain(
    first: Sequence[LogLine], second: Sequence[LogLine], rest: AsyncIterator[Sequence[LogLine]]
) -> AsyncIterator[Sequence[LogLine]]:
    yield first
    yield second
    async for batch in rest:
        yield batch


async def _log_lines(batches: AsyncIterator[Sequence[LogLine]], timestamps: bool) -> AsyncIterator[bytes]:
    async for batch in batches:
        yield _lines_json(batch, timestamps)


async def _log_events(
    batches: AsyncIterator[Sequence[LogLine]], timestamps: bool, draining: asyncio.Event
) -> AsyncIterator[ServerSentEventMessage]:
    try:
        async for batch in until(batches, draining):
            for line in batch:
                yield ServerSentEventMessage(
                    data=_encode(LogLineOut.of(line, timestamps)).decode(), event="log"
                )
    except WorpenError as exc:  # e.g. the engine went away mid-stream
        yield ServerSentEventMessage(data=_encode({"detail": exc.detail}).decode(), event="error")
        return
    reason = "Worpen is shutting down" if draining.is_set() else "the container stopped"
    yield ServerSentEventMessage(data=_encode({"reason": reason}).decode(), event="end")


async def _pull_events(
    progress: AsyncIterator[PullProgress], image: str, node: str
) -> AsyncIterator[ServerSentEventMessage]:
    last = ""
    try:
        async for step in progress:
            last = step.status
            yield ServerSentEventMessage(data=_encode(step).decode(), event="progress")
    except WorpenError as exc:
        yield ServerSentEventMessage(data=_encode({"detail": exc.detail}).decode(), event="error")
        return
    yield ServerSentEventMessage(data=_encode(PullOut(image, node, last)).decode(), event="done")
