"""Container use cases across the fleet's engines: listing, inspecting, lifecycle, logs, images, prune and
terminals."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from worpen_core.access.model import Principal
from worpen_core.audit.model import AuditEntry
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.events import (
    ENGINE_EVENT_TYPES,
    ContainerEvent,
    EngineAvailable,
    EngineUnavailable,
    ImagePulled,
    StopRequests,
    domain_event,
)
from worpen_core.containers.model import (
    Container,
    ContainerDetail,
    ContainerState,
    ContainerUsage,
    EngineInfo,
    Image,
    LogLine,
    LogQuery,
    PruneReport,
    PruneRequest,
    PullProgress,
)
from worpen_core.containers.ports import (
    ContainerRuntime,
    EngineEventsUnitOfWorkFactory,
    Inventoried,
    SessionSlot,
    SessionSlots,
    TerminalChannel,
)
from worpen_core.events.model import Event, RecordedEvent
from worpen_core.events.ports import EventBus
from worpen_core.shared.errors import (
    Ambiguous,
    InvalidInput,
    NotFound,
    RateLimited,
    Unavailable,
    WorpenError,
    failure_reason,
)
from worpen_core.shared.listing import Listing
from worpen_core.shared.ports import Clock
from worpen_core.shared.streams import stall_deadline, until

Item = TypeVar("Item")
T = TypeVar("T")
MIN_PREFIX = 4
"""Like the docker CLI, an id prefix must have at least this many characters."""
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,253}$"
"""A container reference: a full id, an id prefix or a name (Docker's name rule)."""
IMAGE_PATTERN = r"^[a-z0-9]+(?:[._/:@-][A-Za-z0-9_.+-]+)*$"
"""A loose image reference: [registry[:port]/]name[:tag][@digest]."""
_reference = re.compile(REFERENCE_PATTERN)
_image = re.compile(IMAGE_PATTERN)
_hex = re.compile(r"^[0-9a-f]+$")
SLOT_RENEW_SECONDS = 5.0
"""With several replicas, how often each renews the session slots it holds in the database."""
RESUME_LOOKBACK = timedelta(minutes=5)
"""A new publisher of a configured engine's events (a new leader, a restarted server) resumes where the last
one stopped, but never further back than this: it covers a handover (a lease and a bid) and a restart or an
upgrade many times over, while a container that died an hour ago is old news that a rule should not act on
now (it may restart the container or page someone)."""
RESUME_MARGIN = timedelta(seconds=30)
"""How far before the stored position a new publisher reads again: what the last publisher handed to the
bus shortly before it died may never have reached the journal (the journal tells what did)."""
POSITION_EVERY = 10**9
"""Nanoseconds of engine time between two writes of an engine's position (a lagging position costs a few
events read again, never one lost or published twice)."""
JOURNAL_SCAN = 5000
"""How many of the newest engine events in the journal a new publisher reads to know what was published."""
SLOT_STALE = timedelta(seconds=30)
"""A slot not renewed for this long belongs to a replica that died: it counts no more. (The replicas'
clocks must agree to within a few seconds.)"""


def check_reference(ref: str) -> str:
    ref = ref.removeprefix("/")
    if not _reference.match(ref):
        raise InvalidInput("must be a container id, an id prefix or a name", "id")
    return ref


def check_image(image: str) -> str:
    if len(image) > 512 or not _image.match(image):
        raise InvalidInput("must be an image reference such as 'repo/name:tag'", "image")
    return image


@dataclass(slots=True)
class EngineStatus:
    node: str
    available: bool | None = None
    """None until Worpen has tried to reach the engine."""
    since: datetime | None = None
    detail: str | None = None
    info: EngineInfo | None = None
    outage: Unavailable | None = None
    """Why the engine is out of reach, while it is (calls to it fail at once with this)."""
    labels: dict[str, str] = field(default_factory=dict)
    """The node's labels (an agent's --labels), for placing work on it."""
    via_agent: bool = False
    """Served by a connected agent over its command channel, not dialled directly."""


@dataclass(frozen=True, slots=True)
class ContainerLimits:
    """Bounds on what the container use cases hold open."""

    terminals_per_key: int = 8
    """Terminal sessions one API key may have open at once."""
    terminals: int = 32
    """Terminal sessions open at once in all (each holds one of its engine's worker threads)."""
    pull_stall_seconds: float = 60.0
    """A pull that makes no progress for this long is abandoned."""


SessionTarget = tuple[str, str, str, str, Callable[[], Awaitable[TerminalChannel]]]
"""Where an interactive session opens: node, target id, target name, how the audit names it, the opener."""


@dataclass(slots=True)
class TerminalSession:
    id: str
    node: str
    container_id: str
    container_name: str
    actor: str
    key_id: str
    command: tuple[str, ...]
    opened_at: datetime
    channel: TerminalChannel = field(repr=False)


class Containers:
    """Every node's containers and images as one fleet. Container references are resolved across the
    nodes (or on the one given): a full id, a unique prefix of at least four characters, or a name."""

    def __init__(
        self,
        runtimes: Sequence[ContainerRuntime],
        audit: AuditTrail,
        clock: Clock,
        bus: EventBus,
        limits: ContainerLimits,
        *,
        slots: SessionSlots | None = None,
        replica_id: str = "",
        published: EngineEventsUnitOfWorkFactory | None = None,
    ) -> None:
        """`published`: where the configured engines' publishing keeps its position and finds what it
        published, so that a new publisher resumes where the last stopped (see `publish`)."""
        self._runtimes = {runtime.node: runtime for runtime in runtimes}
        self._direct = frozenset(self._runtimes)
        """The engines of the configuration (WORPEN_DOCKER_HOSTS), as opposed to agents' engines."""
        self._audit = audit
        self._clock = clock
        self._bus = bus
        self._limits = limits
        self._status = {runtime.node: EngineStatus(runtime.node) for runtime in runtimes}
        self._terminals: dict[str, TerminalSession] = {}
        self._terminal_slots: Counter[str] = Counter()
        """Terminal sessions open or being opened, by API key id (one replica alone)."""
        self._slots = slots
        """With several replicas on one database: the sessions open on every one, which the caps count."""
        self._replica_id = replica_id
        self._held: set[str] = set()
        """The ids of this replica's sessions open or being opened, whose slots it renews."""
        self._watch: _Watch | None = None
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._publishing = False
        """Whether the configured engines' events are published (by one replica: see `publish`)."""
        self._watch_publishes = False
        """Whether `watch` publishes the configured engines' events itself (one replica, no resuming)."""
        self._published = published
        self._resume: dict[str, _Resume] = {}
        """Where each configured engine's stream resumes when publishing starts, and what to skip there."""
        self._positions: dict[str, int] = {}
        """The position last stored for each configured engine."""
        self._recent: dict[str, deque[tuple[str, str, str, int]]] = {
            node: deque(maxlen=JOURNAL_SCAN) for node in self._direct
        }
        """What this replica published of each configured engine lately: when it leads again, some may not
        have reached the journal yet."""

    def serves_directly(self, node: str) -> bool:
        """Whether `node` is one of the configured engines (an agent may not take its name)."""
        return node in self._direct

    def attach(self, runtime: ContainerRuntime, labels: Mapping[str, str], *, follow: bool = True) -> None:
        """Serve the engine of an agent that connected (in place of its previous connection's), with the
        node's labels; its events are followed from now on, unless `follow` is False: another replica
        holds the agent's stream and publishes them."""
        node = runtime.node
        self._runtimes[node] = runtime
        status = self._status.setdefault(node, EngineStatus(node))
        status.labels = dict(labels)
        status.via_agent = True
        status.outage = None
        if not follow:
            watcher = self._watchers.pop(node, None)
            if watcher is not None:
                watcher.cancel()
        elif self._watch is not None:
            self._follow(runtime, self._watch)

    def labels(self, node: str) -> dict[str, str]:
        status = self._status.get(node)
        return {} if status is None else status.labels

    def runtime(self, node: str) -> ContainerRuntime:
        try:
            return self._runtimes[node]
        except KeyError:
            raise NotFound("node", node) from None

    def engines(self) -> list[EngineStatus]:
        return list(self._status.values())

    def _targets(self, node: str | None) -> list[ContainerRuntime]:
        return [self.runtime(node)] if node is not None else list(self._runtimes.values())

    async def list_containers(
        self, node: str | None = None, state: ContainerState | None = None, name: str | None = None
    ) -> Listing[Container]:
        """Containers of every node (or of one), by node then name; see `_from_each` for failures. An
        agent's node is listed from its last inventory, whose time is in `as_of`."""
        listing: Listing[Container] = await self._from_each(node, lambda runtime: runtime.list_containers())
        as_of = {
            runtime.node: taken
            for runtime in self._targets(node)
            if runtime.node not in listing.unavailable
            and isinstance(runtime, Inventoried)
            and (taken := runtime.inventory_taken_at()) is not None
        }
        kept = [
            c
            for c in listing.items
            if (state is None or c.state is state) and (name is None or name in c.name)
        ]
        kept.sort(key=lambda c: (c.node, c.name))
        return Listing(kept, listing.unavailable, as_of)

    async def inspect(self, ref: str, node: str | None = None) -> ContainerDetail:
        return (await self._locate(ref, node))[1]

    async def usage(self, container: Container) -> ContainerUsage:
        """The container's CPU reading now, from its node's engine (see ContainerUsage.cpu_percent)."""
        return await self._unless_known_down(self.runtime(container.node), lambda r: r.usage(container.id))

    async def logs(
        self, ref: str, query: LogQuery, node: str | None = None
    ) -> AsyncIterator[Sequence[LogLine]]:
        """Open the container's log (errors are raised here, before any line) and return its lines."""
        ref = check_reference(ref)
        targets = self._targets(node)
        if len(targets) == 1 and len(ref) >= MIN_PREFIX:
            # One engine to ask: it resolves the reference itself, which saves a round trip.
            try:
                return await targets[0].logs(ref, query)
            except Ambiguous:
                await self._ambiguous(ref, targets)
        runtime, detail = await self._locate(ref, node)
        return await runtime.logs(detail.container.id, query)

    async def start(self, principal: Principal, ref: str, node: str | None = None) -> Container:
        runtime, detail = await self._locate(ref, node)
        return await self._act(principal, "container.start", runtime, detail, runtime.start)

    async def stop(
        self, principal: Principal, ref: str, node: str | None = None, grace_seconds: int | None = None
    ) -> Container:
        runtime, detail = await self._locate(ref, node)
        return await self._act(
            principal, "container.stop", runtime, detail, lambda cid: runtime.stop(cid, grace_seconds)
        )

    async def restart(
        self, principal: Principal, ref: str, node: str | None = None, grace_seconds: int | None = None
    ) -> Container:
        runtime, detail = await self._locate(ref, node)
        return await self._act(
            principal, "container.restart", runtime, detail, lambda cid: runtime.restart(cid, grace_seconds)
        )

    async def remove(
        self, principal: Principal, ref: str, node: str | None = None, *, force: bool, volumes: bool
    ) -> Container:
        runtime, detail = await self._locate(ref, node)
        container = detail.container
        await self._audit.run(
            principal,
            "container.remove",
            _describe(container),
            runtime.node,
            lambda: runtime.remove(container.id, force=force, volumes=volumes),
        )
        return container

    async def prune(self, principal: Principal, node: str | None, request: PruneRequest) -> PruneReport:
        node = self.one_node(node, "to prune")
        runtime = self.runtime(node)
        if request.dry_run:
            return await runtime.prune(request)
        action = "docker.prune.all" if request.all else "docker.prune"
        return await self._audit.run(principal, action, node, node, lambda: runtime.prune(request))

    async def images(self, node: str | None = None) -> Listing[Image]:
        listing: Listing[Image] = await self._from_each(node, lambda runtime: runtime.list_images())
        listing.items.sort(key=lambda i: (i.node, i.name, i.tag))
        return listing

    async def _unless_known_down(
        self, runtime: ContainerRuntime, call: Callable[[ContainerRuntime], Awaitable[T]]
    ) -> T:
        """`call(runtime)`, unless the watch knows the engine is out of reach: then fail at once, rather
        than let a hung engine hold every fleet-wide request for the whole timeout."""
        outage = self._status[runtime.node].outage
        if outage is not None:
            raise Unavailable(outage.dependency, outage.reason)
        return await call(runtime)

    async def _from_each(
        self, node: str | None, fetch: Callable[[ContainerRuntime], Awaitable[list[Item]]]
    ) -> Listing[Item]:
        """What `fetch` gets from every node concurrently (or from one). A node whose engine fails is
        left out and named in `unavailable`; when that node alone was asked for, its error is raised."""
        targets = self._targets(node)
        results = await asyncio.gather(
            *(self._unless_known_down(runtime, fetch) for runtime in targets), return_exceptions=True
        )
        items: list[Item] = []
        unavailable: dict[str, str] = {}
        for runtime, result in zip(targets, results, strict=True):
            if isinstance(result, WorpenError) and node is None:
                unavailable[runtime.node] = result.detail
            elif isinstance(result, BaseException):
                raise result
            else:
                items.extend(result)
        return Listing(items, unavailable)

    async def pull(self, principal: Principal, image: str, node: str | None) -> AsyncIterator[PullProgress]:
        """Start a pull on one node (the only one, when there is one) and return its progress. An engine
        that refuses the pull raises here; a pull with no progress for the limit's time is abandoned
        (TimedOut); the audit entry ends with the stream."""
        image = check_image(image)
        runtime = self.runtime(self.one_node(node, "pulls"))
        entry = await self._audit.begin(principal, "image.pull", image, runtime.node)
        try:
            stream = await runtime.pull(image)
        except BaseException as exc:
            await self._audit.end(entry, failure_reason(exc))
            raise
        what = f"the pull of {image!r} on node {runtime.node}"
        return self._audited(entry, stall_deadline(stream, self._limits.pull_stall_seconds, what))

    async def _audited(self, entry: AuditEntry, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        error: str | None = "the client left before the operation ended"
        try:
            async for item in stream:
                yield item
            error = None
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = failure_reason(exc)
            raise
        finally:
            await self._audit.end(entry, error)

    def one_node(self, node: str | None, verb: str) -> str:
        """`node`, or the only node there is; with several, the caller must say which `verb`."""
        if node is not None:
            return node
        if len(self._runtimes) != 1:
            raise InvalidInput(f"say which node {verb} (one of {', '.join(sorted(self._runtimes))})", "node")
        return next(iter(self._runtimes))

    async def open_terminal(
        self, principal: Principal, ref: str, node: str | None, command: Sequence[str]
    ) -> TerminalSession:
        """A shell in the container, within the limits on open sessions (RateLimited beyond them)."""

        async def target() -> SessionTarget:
            runtime, detail = await self._locate(ref, node)
            container = detail.container
            return (
                runtime.node,
                container.id,
                container.name,
                _describe(container),
                lambda: runtime.exec(container.id, command),
            )

        return await self.open_session(principal, "terminal.open", command, target)

    async def open_session(
        self,
        principal: Principal,
        action: str,
        command: Sequence[str],
        target: Callable[[], Awaitable[SessionTarget]],
    ) -> TerminalSession:
        """An interactive session within the limits on open sessions (RateLimited beyond them): `target`
        says where (node, target id, target name, how the audit trail names it) and how to open it; the
        opening is audited as `action`."""
        key = principal.key_id
        session_id = secrets.token_hex(8)
        await self._take_slot(key, session_id)  # held while the session opens, so concurrent opens count too
        try:
            node, target_id, target_name, what, opener = await target()
            channel = await self._audit.run(principal, action, what, node, opener)
        except BaseException:
            await self._release_slot(key, session_id)
            raise
        session = TerminalSession(
            id=session_id,
            node=node,
            container_id=target_id,
            container_name=target_name,
            actor=principal.name,
            key_id=key,
            command=tuple(command),
            opened_at=self._clock.now(),
            channel=channel,
        )
        self._terminals[session.id] = session
        return session

    async def close_terminal(self, session: TerminalSession) -> None:
        opened = self._terminals.pop(session.id, None) is not None
        try:
            await session.channel.close()
        finally:
            if opened:
                await self._release_slot(session.key_id, session.id)

    async def _take_slot(self, key: str, session_id: str) -> None:
        """A slot for a session of `key`, or RateLimited: counted here with one replica, in the database
        (across the replicas) with several."""
        if self._slots is None:
            self._refuse_beyond(self._terminal_slots[key], self._terminal_slots.total())
            self._terminal_slots[key] += 1
            return
        now = self._clock.now()
        self._held.add(session_id)  # renewed from now on, should the take outlast a renewal
        try:
            in_use = await self._slots.take(
                SessionSlot(session_id, key, self._replica_id, now),
                per_key=self._limits.terminals_per_key,
                total=self._limits.terminals,
                fresh_since=now - SLOT_STALE,
            )
        except BaseException:
            self._held.discard(session_id)
            raise
        if in_use is not None:
            self._held.discard(session_id)
            self._refuse_beyond(in_use.key, in_use.total)

    def _refuse_beyond(self, of_key: int, total: int) -> None:
        if of_key >= self._limits.terminals_per_key:
            raise RateLimited(
                f"terminal sessions of this key: {of_key} open, the most it may have; close one first"
            )
        if total >= self._limits.terminals:
            raise RateLimited(
                f"terminal sessions: {total} open, the most this server allows; try again when one closes"
            )

    async def _release_slot(self, key: str, session_id: str) -> None:
        if self._slots is None:
            self._terminal_slots[key] -= 1
            if not self._terminal_slots[key]:
                del self._terminal_slots[key]
            return
        self._held.discard(session_id)
        # Out of `_held`, a slot the database could not take back now goes at this replica's next renewal.
        with contextlib.suppress(Unavailable):
            await self._slots.give_back(session_id)

    async def renew_slots(self) -> None:
        """With several replicas: keep this replica's slots counted, and drop those it could not give back."""
        if self._slots is not None:
            await self._slots.renew(self._replica_id, set(self._held), self._clock.now())

    async def forget_slots(self) -> None:
        """With several replicas: drop every slot under this replica's id, at its start (left by an
        earlier run that died) and at a clean stop (its sessions end with it)."""
        if self._slots is not None:
            await self._slots.forget_replica(self._replica_id)

    def terminals(self) -> list[TerminalSession]:
        return sorted(self._terminals.values(), key=lambda s: s.opened_at)

    async def watch(
        self, stopping: asyncio.Event, first_retry: float, max_retry: float, *, configured: bool = True
    ) -> None:
        """Follow every engine's events until `stopping` is set (see `_watch_one`), agents' engines too as
        they attach. The configured engines' events are published only when `configured` (one replica
        alone), or while `publish` runs (several replicas: the leader's); every replica follows every
        engine all the same, for its state (reachable, how to fail fast) and to publish at once when it
        becomes the leader. An agent's engine is published by the replica that holds its stream."""
        self._watch = _Watch(stopping, first_retry, max_retry)
        if configured:
            self._watch_publishes = True
        for runtime in list(self._runtimes.values()):
            self._follow(runtime, self._watch)
        try:
            await stopping.wait()
        finally:
            if configured:
                self._watch_publishes = False
            self._watch = None
            watchers = list(self._watchers.values())
            self._watchers.clear()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def publish(self, stopping: asyncio.Event) -> None:
        """Publish the configured engines' events (followed by `watch`) until `stopping` is set: the
        leader's job, so that each of their events reaches the journal once however many replicas run.

        It first resumes each engine's stream where the last publisher stopped (a leader killed, a server
        restarted), at most RESUME_LOOKBACK back, skipping what the journal holds already: what happened
        while no replica published is published once, nothing twice. The store out of reach, it waits for
        it (what happens meanwhile is read again once it answers)."""
        delay = 0.5
        while not stopping.is_set():
            try:
                self._resume = await self._resume_points()
                break
            except WorpenError:
                if await _stopped_within(stopping, delay):
                    return
                delay = min(delay * 2, 30.0)
        self._publishing = True
        try:
            if self._watch is not None:
                for node in self._direct:
                    runtime = self._runtimes.get(node)
                    if runtime is not None:
                        self._follow(runtime, self._watch)
            await stopping.wait()
        finally:
            self._publishing = False
            self._resume = {}

    async def _resume_points(self) -> dict[str, _Resume]:
        """Where each configured engine's stream resumes, and the events the journal holds from there on;
        the first time an engine is published, from now, and that is stored as its start."""
        if self._published is None or not self._direct:
            return {}
        now = _nanos(self._clock.now())
        earliest = now - _span(RESUME_LOOKBACK)
        points: dict[str, _Resume] = {}
        async with self._published() as tx:
            recorded = await tx.events.latest(JOURNAL_SCAN, ENGINE_EVENT_TYPES)
            for node in sorted(self._direct):
                start = await tx.progress.get(_start_name(node))
                position = await tx.progress.get(_position_name(node))
                if start is None:
                    await tx.progress.set(_start_name(node), now)
                    await tx.progress.set(_position_name(node), now)
                    self._positions[node] = now
                    continue
                self._positions[node] = position if position is not None else start
                since = max(start, earliest, self._positions[node] - _span(RESUME_MARGIN))
                skip = {key for event in recorded if (key := _recorded_key(node, event, since)) is not None}
                points[node] = _Resume(since, frozenset(skip.union(self._recent[node])))
            await tx.commit()
        return points

    async def _store_position(self, node: str, nanos: int) -> None:
        """Keep how far `node`'s events were published, at most once a POSITION_EVERY of engine time."""
        if self._published is None or nanos - self._positions.get(node, 0) < POSITION_EVERY:
            return
        self._positions[node] = nanos
        # A write that fails is made again a POSITION_EVERY later: meanwhile a next publisher would read
        # a little more again, which the journal tells it to skip.
        with contextlib.suppress(WorpenError):
            async with self._published() as tx:
                await tx.progress.set(_position_name(node), nanos)
                await tx.commit()

    def _publishes(self, node: str) -> bool:
        return self._publishing or self._watch_publishes or node not in self._direct

    def _follow(self, runtime: ContainerRuntime, watch: _Watch) -> None:
        """Follow `runtime`'s events, in place of its node's previous runtime's."""
        previous = self._watchers.pop(runtime.node, None)
        if previous is not None:
            previous.cancel()
        resume = self._resume.pop(runtime.node, None) if runtime.node in self._direct else None
        self._watchers[runtime.node] = asyncio.create_task(
            self._watch_one(runtime, watch.stopping, watch.first_retry, watch.max_retry, resume),
            name=f"engine-watch-{runtime.node}",
        )

    async def _watch_one(
        self,
        runtime: ContainerRuntime,
        stopping: asyncio.Event,
        first_retry: float,
        max_retry: float,
        resume: _Resume | None = None,
    ) -> None:
        """Publish the engine's events as domain events (from `resume`'s time, skipping what it names,
        when publishing resumes). When the engine goes away, mark it unavailable and retry with
        exponential backoff; on reconnect, resume from the last event seen."""
        status = self._status[runtime.node]
        since: int | None = resume.since if resume is not None else None
        skip = resume.skip if resume is not None else frozenset()
        direct = runtime.node in self._direct
        delay = first_retry
        requests = StopRequests()
        current = asyncio.current_task()
        # A watcher replaced by another stops at its next step, even if its cancellation was lost (on
        # Python 3.11 `wait_for` can swallow one that comes as its call completes): never two streams.
        while not stopping.is_set() and self._watchers.get(runtime.node) is current:
            try:
                status.info = await runtime.info()
                if since is None:
                    since = int(self._clock.now().timestamp() * 1e9)
                stream = await runtime.events(since)
                await self._mark(status, available=True)
                status.outage = None
                delay = first_retry
                async for raw in until(stream, stopping):
                    if self._watchers.get(runtime.node) is not current:
                        return
                    since = raw.time_nanos + 1
                    event = domain_event(runtime.node, raw, requests.observe(raw))
                    if event is None or not self._publishes(runtime.node) or _key(event) in skip:
                        continue
                    await self._bus.publish([event])
                    if direct and self._publishing:
                        self._recent[runtime.node].append(_key(event))
                        await self._store_position(runtime.node, raw.time_nanos)
                if stopping.is_set():
                    return
                raise Unavailable(f"node {runtime.node} docker engine", "the event stream ended")
            except WorpenError as exc:
                await self._mark(status, available=False, detail=exc.detail)
                status.outage = exc if isinstance(exc, Unavailable) else None
            try:
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            except TimeoutError:
                delay = min(delay * 2, max_retry)

    async def _mark(self, status: EngineStatus, *, available: bool, detail: str | None = None) -> None:
        changed = status.available is not available
        status.detail = detail
        if not changed:
            return
        status.available = available
        status.since = self._clock.now()
        event: Event = (
            EngineAvailable(status.node, status.since)
            if available
            else EngineUnavailable(status.node, detail or "", status.since)
        )
        if self._publishes(status.node):
            await self._bus.publish([event])

    async def _act(
        self,
        principal: Principal,
        action: str,
        runtime: ContainerRuntime,
        detail: ContainerDetail,
        operation: Callable[[str], Awaitable[None]],
    ) -> Container:
        container = detail.container
        await self._audit.run(
            principal, action, _describe(container), runtime.node, lambda: operation(container.id)
        )
        return (await runtime.inspect(container.id)).container

    async def _locate(self, ref: str, node: str | None) -> tuple[ContainerRuntime, ContainerDetail]:
        """Find the one container `ref` names, on `node` or on any node."""
        ref = check_reference(ref)
        targets = self._targets(node)
        results = await asyncio.gather(
            *(self._unless_known_down(r, lambda r: r.inspect(ref)) for r in targets), return_exceptions=True
        )
        found: list[tuple[ContainerRuntime, ContainerDetail]] = []
        failed: list[WorpenError] = []
        for runtime, result in zip(targets, results, strict=True):
            if isinstance(result, Ambiguous):
                if len(ref) < MIN_PREFIX:
                    raise InvalidInput(f"an id prefix needs at least {MIN_PREFIX} characters", "id")
                await self._ambiguous(ref, [runtime])
            elif isinstance(result, NotFound):
                continue
            elif isinstance(result, WorpenError):
                failed.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                found.append((runtime, result))
        if len(found) > 1:
            candidates = tuple(f"{r.node}/{d.container.name} ({d.container.id[:12]})" for r, d in found)
            raise Ambiguous(ref, candidates, "; add ?node= to choose")
        if found:
            runtime, detail = found[0]
            container = detail.container
            if len(ref) < MIN_PREFIX and ref not in (container.name, container.id):
                raise InvalidInput(f"an id prefix needs at least {MIN_PREFIX} characters", "id")
            return runtime, detail
        if failed:
            raise failed[0]
        raise NotFound("container", ref)

    async def _ambiguous(self, ref: str, targets: Sequence[ContainerRuntime]) -> None:
        listings = await asyncio.gather(*(r.list_containers() for r in targets))
        candidates = tuple(
            f"{c.node}/{c.name} ({c.id[:12]})"
            for listing in listings
            for c in listing
            if c.id.startswith(ref) or c.name == ref
        )
        raise Ambiguous(ref, candidates)


@dataclass(frozen=True, slots=True)
class _Watch:
    stopping: asyncio.Event
    first_retry: float
    max_retry: float


@dataclass(frozen=True, slots=True)
class _Resume:
    since: int
    """Engine time (ns) from which the stream is read again."""
    skip: frozenset[tuple[str, str, str, int]]
    """The events from then on that the journal holds already (see `_key`)."""


def _position_name(node: str) -> str:
    return f"engines.{node}"


def _start_name(node: str) -> str:
    return f"engines.{node}.start"


def _nanos(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def _span(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1) * 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _key(event: ContainerEvent | ImagePulled) -> tuple[str, str, str, int]:
    """What tells one engine event from another in the journal: its type, node, container (or image) and
    time to the microsecond the journal keeps."""
    actor = event.container_id if isinstance(event, ContainerEvent) else event.image
    return type(event).__name__, event.node, actor, _nanos(event.at)


def _recorded_key(node: str, event: RecordedEvent, since: int) -> tuple[str, str, str, int] | None:
    """`event`'s key (see `_key`) if it is one of `node`'s from `since` on."""
    payload = event.payload
    at = event.at if event.at.tzinfo is not None else event.at.replace(tzinfo=UTC)
    if payload.get("node") != node or _nanos(at) < since - 1000:
        return None
    actor = payload.get("container_id") or payload.get("image") or ""
    return event.type, node, str(actor), _nanos(at)


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def _describe(container: Container) -> str:
    return f"{container.name} ({container.id[:12]})"
