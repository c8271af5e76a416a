"""Shells on agents' nodes through their streams: only where the agent allows them, within the terminal
limits the container terminals have, audited."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fakes.agents import FakeAgentLink, agent_world
from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.access.model import Principal, Role
from worpen_core.agents.model import DOCKER, SHELL, CommandRefused
from worpen_core.audit.model import AuditQuery, Outcome
from worpen_core.containers.model import Container, ContainerState
from worpen_core.containers.service import ContainerLimits
from worpen_core.shared.errors import Forbidden, NotFound, RateLimited, Unavailable

OPERATOR = Principal("key-1", "ops", Role.OPERATOR)
SH = ["/bin/sh"]


async def test_a_shell_on_an_agent_that_is_not_connected_is_unavailable_naming_its_node(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus, ContainerLimits(terminals_per_key=1))
    await world.heard_from("bee-002")

    with pytest.raises(Unavailable, match="node bee-002 agent") as unavailable:
        await world.agents.open_shell(OPERATOR, "bee-002", SH)
    with pytest.raises(NotFound):
        await world.agents.open_shell(OPERATOR, "bee-404", SH)

    assert unavailable.value.dependency == "node bee-002 agent"
    await world.agents.attach(FakeAgentLink("bee-002", {SHELL}), "peer")
    assert (await world.agents.open_shell(OPERATOR, "bee-002", SH)).node == "bee-002"  # no slot held


async def test_an_agent_started_without_allow_shell_opens_no_shell(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    link = FakeAgentLink("bee-001", {DOCKER})
    await world.agents.attach(link, "peer")

    with pytest.raises(Forbidden, match="--allow-shell"):
        await world.agents.open_shell(OPERATOR, "bee-001", SH)

    assert link.calls == []
    assert world.containers.terminals() == []


async def test_a_shell_reads_what_the_node_writes_and_writes_what_the_user_types(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    link = FakeAgentLink("bee-001", {SHELL})
    await world.agents.attach(link, "peer")

    session = await world.agents.open_shell(OPERATOR, "bee-001", ["/bin/bash", "-l"])
    [stream] = link.streams
    await session.channel.write(b"echo hi\n")
    stream.feed(b"", b"$ echo hi\r\n", b"hi\r\n")
    stream.finish({"exit_code": 0})

    assert [(kind, params) for kind, params, _ in link.calls] == [
        ("shell.open", {"command": ["/bin/bash", "-l"]})
    ]
    assert stream.written == [b"echo hi\n"]
    assert await session.channel.read() == b"$ echo hi\r\n"
    assert await session.channel.read() == b"hi\r\n"
    assert await session.channel.read() == b""  # the shell exited
    assert (session.node, session.container_name, session.actor) == ("bee-001", "node shell", "ops")
    assert session.command == ("/bin/bash", "-l")
    assert [s.id for s in world.containers.terminals()] == [session.id]
    await world.containers.close_terminal(session)
    assert stream.closed
    assert world.containers.terminals() == []


async def test_a_shell_whose_agent_goes_away_ends(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    link = FakeAgentLink("bee-001", {SHELL})
    await world.agents.attach(link, "peer")
    session = await world.agents.open_shell(OPERATOR, "bee-001", SH)

    link.disconnect()

    assert await session.channel.read() == b""


async def test_an_agent_shell_is_audited_as_such(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    link = FakeAgentLink("bee-001", {SHELL})
    await world.agents.attach(link, "peer")

    await world.agents.open_shell(OPERATOR, "bee-001", SH)
    link.refusals["shell.open"] = CommandRefused("internal", "no pty left")
    with pytest.raises(Unavailable, match="node bee-001 agent unavailable: no pty left"):
        await world.agents.open_shell(OPERATOR, "bee-001", SH)

    entries = await world.audit.query(AuditQuery(action="agent.shell"))
    assert {(e.outcome, e.actor, e.node, e.error) for e in entries} == {
        (Outcome.SUCCEEDED, "ops", "bee-001", None),
        (Outcome.FAILED, "ops", "bee-001", "node bee-001 agent unavailable: no pty left"),
    }
    assert all("bee-001" in entry.target for entry in entries)


async def test_the_agents_refusals_of_a_shell_keep_their_meaning(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    link = FakeAgentLink("bee-001", {SHELL})
    await world.agents.attach(link, "peer")

    link.refusals["shell.open"] = CommandRefused("forbidden", "shells are disabled on this node")
    with pytest.raises(Forbidden, match="shells are disabled on this node"):
        await world.agents.open_shell(OPERATOR, "bee-001", SH)
    link.refusals["shell.open"] = CommandRefused("not_found", "/bin/zsh")
    with pytest.raises(NotFound, match="/bin/zsh"):
        await world.agents.open_shell(OPERATOR, "bee-001", ["/bin/zsh"])


async def test_agent_shells_count_against_the_terminal_limits_with_container_terminals(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus, ContainerLimits(terminals_per_key=1, terminals=2))
    world.engine.held = [
        Container(
            "c0ffee" + "0" * 58,
            "web",
            "img:1",
            ContainerState.RUNNING,
            "Up",
            "engine-1",
            datetime(2026, 1, 1, tzinfo=UTC),
        )
    ]
    link = FakeAgentLink("bee-001", {SHELL})
    await world.agents.attach(link, "peer")
    other, third = Principal("key-2", "ci", Role.OPERATOR), Principal("key-3", "ci", Role.OPERATOR)

    link.refusals["shell.open"] = CommandRefused("internal", "no pty left")
    with pytest.raises(Unavailable):  # a shell that fails to open holds no place
        await world.agents.open_shell(OPERATOR, "bee-001", SH)
    del link.refusals["shell.open"]
    first = await world.agents.open_shell(OPERATOR, "bee-001", SH)
    with pytest.raises(RateLimited, match="of this key"):
        await world.agents.open_shell(OPERATOR, "bee-001", SH)
    await world.containers.open_terminal(other, "web", None, SH)
    with pytest.raises(RateLimited, match="the most this server allows"):
        await world.agents.open_shell(third, "bee-001", SH)

    await world.containers.close_terminal(first)
    assert (await world.agents.open_shell(third, "bee-001", SH)).key_id == "key-3"


async def test_the_audit_trail_names_the_whole_node_a_shell_was_opened_on(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    await world.agents.attach(FakeAgentLink("edge-frankfurt-01", {SHELL}), "peer")

    await world.agents.open_shell(OPERATOR, "edge-frankfurt-01", SH)

    [entry] = await world.audit.query(AuditQuery(action="agent.shell"))
    assert "edge-frankfurt-01" in entry.target
