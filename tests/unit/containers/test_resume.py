"""A new publisher of a configured engine's events resumes where the last one stopped: it reads the engine's
events again from the stored position (a little before it, never further back than the lookback), and
publishes what the journal lacks, once."""

from __future__ import annotations

import asyncio
from datetime import datetime

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from tests.unit.containers.test_attach import LiveRuntime, eventually
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.events import ContainerDied, ContainerStarted
from worpen_core.containers.model import EngineEvent
from worpen_core.containers.service import RESUME_LOOKBACK, ContainerLimits, Containers
from worpen_core.events.model import Event, EventRecord


def nanos(at: datetime) -> int:
    return int(at.timestamp()) * 10**9 + at.microsecond * 1000


def engine_event(action: str, container: str, at: datetime, **attributes: str) -> EngineEvent:
    return EngineEvent("container", action, container, {"name": container, **attributes}, nanos(at))


class Replica:
    """One replica's containers, following engine "a" with its own stream, publishing on its own bus."""

    def __init__(self, uow: FakeUnitOfWorkFactory, clock: FakeClock) -> None:
        self.uow = uow
        self.bus = FakeEventBus()
        self.engine = LiveRuntime("a")
        self.containers = Containers(
            [self.engine], AuditTrail(uow, clock, self.bus), clock, self.bus, ContainerLimits(), published=uow
        )
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def lead(self) -> None:
        """Follow the engine, then run the leader's job (publishing from where the last publisher stopped)."""
        self.tasks.append(
            asyncio.create_task(self.containers.watch(self.stopping, 0.01, 0.02, configured=False))
        )
        await asyncio.wait_for(self.engine.following.wait(), 5)
        self.engine.following.clear()
        self.tasks.append(asyncio.create_task(self.containers.publish(self.stopping)))
        await asyncio.wait_for(self.engine.following.wait(), 5)  # the stream opened again where it resumes

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 5)

    async def journal(self) -> None:
        """What this replica published reaches the journal (the central log's part)."""
        async with self.uow() as tx:
            await tx.events.append([EventRecord.of(event, event_time(event)) for event in self.bus.published])
            await tx.commit()


def event_time(event: Event) -> datetime:
    at = getattr(event, "at", None)
    assert isinstance(at, datetime)
    return at


def deaths(bus: FakeEventBus) -> list[str]:
    return [event.container_id for event in bus.published if isinstance(event, ContainerDied)]


async def test_the_next_publisher_publishes_what_the_last_did_not_and_nothing_twice(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    first = Replica(uow, clock)
    await first.lead()
    started_at = clock.now()
    first.engine.emit(engine_event("start", "web", started_at))
    first.engine.emit(engine_event("die", "web", started_at, exitCode="1"))
    await eventually(lambda: deaths(first.bus) == ["web"])
    await first.journal()
    await first.stop()  # as if killed: nothing more of it reaches the journal

    clock.advance(5)
    died_at = clock.now()
    clock.advance(5)
    second = Replica(uow, clock)
    await second.lead()
    # The engine sends again what happened from the resumed position on: the first's events, and the death
    # no replica published.
    for event in (
        engine_event("start", "web", started_at),
        engine_event("die", "web", started_at, exitCode="1"),
        engine_event("die", "api", died_at, exitCode="3"),
    ):
        second.engine.emit(event)
    await eventually(lambda: deaths(second.bus) == ["api"])
    second.engine.emit(engine_event("start", "later", clock.now()))
    await eventually(lambda: any(isinstance(e, ContainerStarted) for e in second.bus.published))
    await second.stop()

    engine_events = [e for e in second.bus.published if isinstance(e, ContainerDied | ContainerStarted)]
    assert [type(e).__name__ for e in engine_events] == ["ContainerDied", "ContainerStarted"]
    # From where the first started publishing: its stored position (less the margin) lies before that.
    assert second.engine.events_from[-1] == nanos(started_at)


async def test_a_publisher_never_resumes_further_back_than_the_lookback(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    first = Replica(uow, clock)
    await first.lead()
    await first.stop()

    clock.advance(RESUME_LOOKBACK.total_seconds() * 3)
    second = Replica(uow, clock)
    await second.lead()
    await second.stop()

    assert second.engine.events_from[-1] == nanos(clock.now() - RESUME_LOOKBACK)


async def test_a_leader_elected_again_skips_what_it_published_before_the_journal_has_it(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    replica = Replica(uow, clock)
    containers, engine = replica.containers, replica.engine
    watch = asyncio.create_task(containers.watch(replica.stopping, 0.01, 0.02, configured=False))
    await asyncio.wait_for(engine.following.wait(), 5)
    terms = [asyncio.Event(), asyncio.Event()]
    engine.following.clear()
    first = asyncio.create_task(containers.publish(terms[0]))
    await asyncio.wait_for(engine.following.wait(), 5)
    died_at = clock.now()
    engine.emit(engine_event("die", "web", died_at, exitCode="1"))
    await eventually(lambda: deaths(replica.bus) == ["web"])
    terms[0].set()  # deposed, before its central log wrote that death to the journal
    await asyncio.wait_for(first, 5)

    clock.advance(5)
    engine.following.clear()
    second = asyncio.create_task(containers.publish(terms[1]))  # and elected again
    await asyncio.wait_for(engine.following.wait(), 5)
    engine.emit(engine_event("die", "web", died_at, exitCode="1"))
    engine.emit(engine_event("die", "api", clock.now(), exitCode="3"))
    await eventually(lambda: "api" in deaths(replica.bus))
    terms[1].set()
    replica.stopping.set()
    await asyncio.wait_for(asyncio.gather(second, watch), 5)

    assert deaths(replica.bus) == ["web", "api"]
