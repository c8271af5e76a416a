"""A node's container engine, as the domain needs it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

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
from worpen_core.events.ports import EventRepository
from worpen_core.shared.ports import UnitOfWork


class TerminalChannel(Protocol):
    """An interactive process (a shell with a TTY) running in a container."""

    async def read(self) -> bytes:
        """The next output; b"" once the process has ended."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class ContainerRuntime(Protocol):
    """One node's container engine. Failures come out as core errors: NotFound, Conflict, InvalidInput,
    Unavailable (the engine cannot be reached or did not answer in time) and EngineFailed (it answered
    with an error). Container references are full ids, unique id prefixes or names."""

    node: str

    async def info(self) -> EngineInfo: ...

    async def list_containers(self) -> list[Container]:
        """Every container, running or not, from one call to the engine."""
        ...

    async def inspect(self, ref: str) -> ContainerDetail: ...

    async def usage(self, ref: str) -> ContainerUsage:
        """The container's cumulative CPU time now, from one call (no waiting for a second reading)."""
        ...

    async def logs(self, ref: str, query: LogQuery) -> AsyncIterator[Sequence[LogLine]]:
        """Open the log (raising if the engine refuses) and return its lines in the batches they are
        read, never the whole log at once; with `query.follow`, new lines until the container stops or
        the iterator is closed."""
        ...

    async def start(self, ref: str) -> None: ...

    async def stop(self, ref: str, grace_seconds: int | None) -> None:
        """Ask it to stop, killing it after `grace_seconds` (the engine's default when None)."""
        ...

    async def restart(self, ref: str, grace_seconds: int | None) -> None:
        """Ask it to stop, killing it after `grace_seconds` (the engine's default when None)."""
        ...

    async def remove(self, ref: str, *, force: bool, volumes: bool) -> None: ...

    async def prune(self, request: PruneRequest) -> PruneReport: ...

    async def list_images(self) -> list[Image]: ...

    async def pull(self, image: str) -> AsyncIterator[PullProgress]:
        """Start pulling (raising if the engine refuses) and return its progress messages until the image
        is pulled; an error in the stream is raised as EngineFailed."""
        ...

    async def exec(self, ref: str, command: Sequence[str]) -> TerminalChannel:
        """Run `command` in the container with a TTY and stdin attached."""
        ...

    async def events(self, since_nanos: int | None) -> AsyncIterator[EngineEvent]:
        """Open the engine's event stream from `since_nanos` (or from now) on; it ends (or raises
        Unavailable) when the engine goes away."""
        ...

    async def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Create a named volume (Conflict if it exists)."""
        ...

    async def remove_volume(self, name: str) -> None:
        """Remove a named volume (NotFound if there is none; Conflict while a container uses it)."""
        ...

    async def volumes(self, label: str) -> list[str]:
        """Names of the volumes carrying `label` (`key` or `key=value`)."""
        ...

    async def create(self, spec: WorkloadSpec) -> str:
        """Create (not start) a container; its id. NotFound when the image is not on the node."""
        ...

    async def put_archive(self, ref: str, path: str, archive: bytes) -> None:
        """Extract a tar archive at `path` inside a container (created or running): into its volume when
        `path` is where the volume is mounted."""
        ...

    async def wait(self, ref: str) -> int:
        """Wait until the container exits (however long that takes); its exit code. Raises Unavailable
        when the engine goes away meanwhile."""
        ...


@runtime_checkable
class Inventoried(Protocol):
    """A runtime that lists containers from an inventory it keeps (an agent's), not by asking the engine."""

    def inventory_taken_at(self) -> datetime | None:
        """When the inventory it lists from was taken; None before the first."""
        ...


@dataclass(frozen=True, slots=True)
class SessionSlot:
    """A terminal session open (or being opened) on a replica, counted against its key's cap and the
    total one."""

    id: str
    key_id: str
    replica_id: str
    renewed_at: datetime
    """When it was taken, then when its replica last renewed it."""


@dataclass(frozen=True, slots=True)
class SlotsInUse:
    """Sessions open when a slot was refused: the key's, and all of them."""

    key: int
    total: int


class SessionSlots(Protocol):
    """Terminal sessions open on every replica of one database, so that the caps hold across them. A
    replica renews its slots every few seconds; a slot not renewed since `fresh_since` (its replica died)
    counts no more."""

    async def take(
        self, slot: SessionSlot, *, per_key: int, total: int, fresh_since: datetime
    ) -> SlotsInUse | None:
        """Take `slot` unless its key holds `per_key` slots or all hold `total`, counted in one
        transaction that no other take can interleave with: None when taken, else what was in use."""
        ...

    async def give_back(self, slot_id: str) -> None: ...

    async def renew(self, replica_id: str, held: Collection[str], at: datetime) -> None:
        """Mark `held` (the replica's slots) fresh at `at`, and drop the replica's other slots from before
        `at` (those it could not give back; not one taken since `held` was read)."""
        ...

    async def forget_replica(self, replica_id: str) -> None:
        """Drop every slot of the replica: at its start (left by an earlier run that died) and clean stop."""
        ...


class Positions(Protocol):
    """Named positions kept in the store (the automation feature's progress table)."""

    async def get(self, name: str) -> int | None: ...

    async def set(self, name: str, position: int) -> None: ...


class EngineEventsUnitOfWork(UnitOfWork, Protocol):
    """What publishing the configured engines' events across a change of leader reads and writes: how far
    each engine's events were published, and the journal they were published to."""

    @property
    def events(self) -> EventRepository: ...

    @property
    def progress(self) -> Positions: ...


EngineEventsUnitOfWorkFactory = Callable[[], EngineEventsUnitOfWork]
