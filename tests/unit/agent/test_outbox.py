"""The buffer of heartbeats and events: order kept, bounded by dropping the oldest, counted."""

from __future__ import annotations

import logging

import pytest

from worpen_agent.outbox import Outbox
from worpen_proto.v1 import agent_pb2


def event(n: int) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(engine_event=agent_pb2.EngineEvent(event_json=str(n).encode()))


def drain(outbox: Outbox) -> list[int]:
    sent = []
    while (head := outbox.head()) is not None:
        seq, message = head
        sent.append(int(message.engine_event.event_json))
        outbox.remove(seq)
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


def test_a_message_stays_until_it_is_written() -> None:
    """The head is only peeked: a write that fails leaves it first in line for the next stream."""
    outbox = Outbox(3)
    outbox.put(event(1))
    outbox.put(event(2))
    assert outbox.head() == outbox.head()
    assert drain(outbox) == [1, 2]


def test_a_message_dropped_while_being_written_is_not_removed_twice() -> None:
    outbox = Outbox(2)
    outbox.put(event(1))
    outbox.put(event(2))
    head = outbox.head()
    assert head is not None
    outbox.put(event(3))  # drops 1 while it is being written
    outbox.remove(head[0])
    assert drain(outbox) == [2, 3]


def test_each_put_wakes_the_writer() -> None:
    outbox = Outbox(2)
    wakes: list[None] = []
    outbox.on_put = lambda: wakes.append(None)
    outbox.put(event(1))
    outbox.put(event(2))
    assert len(wakes) == 2
