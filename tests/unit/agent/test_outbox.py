"""The buffer of heartbeats and events: order kept, each kept until acknowledged, bounded by dropping the
oldest, counted."""

from __future__ import annotations

import logging

import pytest

from worpen_agent.outbox import Outbox
from worpen_proto.v1 import agent_pb2


def event(n: int) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(engine_event=agent_pb2.EngineEvent(event_json=str(n).encode()))


def number(message: agent_pb2.AgentMessage) -> int:
    return int(message.engine_event.event_json)


def write_all(outbox: Outbox) -> list[int]:
    """Write every message not written yet to the stream, as the channel's writer does."""
    sent = []
    while (message := outbox.next_unwritten()) is not None:
        sent.append(number(message))
        outbox.written(message.seq)
    return sent


def drain(outbox: Outbox) -> list[int]:
    """Write everything and have it acknowledged."""
    sent = []
    while (message := outbox.next_unwritten()) is not None:
        sent.append(number(message))
        outbox.written(message.seq)
        outbox.acknowledge(message.seq)
    return sent


def test_messages_leave_in_the_order_they_were_put() -> None:
    outbox = Outbox(10)
    for n in range(5):
        outbox.put(event(n))
    assert drain(outbox) == [0, 1, 2, 3, 4]
    assert len(outbox) == 0


def test_a_full_outbox_drops_the_oldest_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="worpen_agent")
    outbox = Outbox(3)
    for n in range(8):
        outbox.put(event(n))
    assert drain(outbox) == [5, 6, 7]
    assert outbox.take_dropped() == 5
    assert outbox.take_dropped() == 0
    assert caplog.text.count("buffer full (3 messages): dropping the oldest") == 1


def test_messages_are_numbered_from_one_in_a_session_of_their_own() -> None:
    outbox, other = Outbox(10), Outbox(10)
    for n in range(3):
        outbox.put(event(n))
    numbers = []
    while (message := outbox.next_unwritten()) is not None:
        numbers.append(message.seq)
        outbox.written(message.seq)
    assert numbers == [1, 2, 3]
    assert outbox.session != other.session


def test_what_was_written_but_not_acknowledged_is_written_again_on_the_next_stream() -> None:
    outbox = Outbox(10)
    for n in range(1, 5):
        outbox.put(event(n))
    assert write_all(outbox) == [1, 2, 3, 4]
    outbox.acknowledge(2)  # the stream ended before the server acknowledged 3 and 4
    outbox.put(event(5))
    assert write_all(outbox) == [5]

    outbox.rewind()
    assert write_all(outbox) == [3, 4, 5]
    outbox.acknowledge(5)
    assert len(outbox) == 0
    outbox.rewind()
    assert write_all(outbox) == []


def test_a_message_dropped_while_being_written_is_not_written_twice() -> None:
    outbox = Outbox(2)
    outbox.put(event(1))
    outbox.put(event(2))
    first = outbox.next_unwritten()
    assert first is not None
    outbox.put(event(3))  # drops 1 while it is being written
    outbox.written(first.seq)
    assert write_all(outbox) == [2, 3]
    outbox.acknowledge(first.seq)
    assert len(outbox) == 2


def test_each_put_wakes_the_writer() -> None:
    outbox = Outbox(2)
    wakes: list[None] = []
    outbox.on_put = lambda: wakes.append(None)
    outbox.put(event(1))
    outbox.put(event(2))
    assert len(wakes) == 2
