"""Reconnection delays: exponential ceilings, full jitter below them, capped, reset after a connection."""

from __future__ import annotations

import random

import pytest

from worpen_agent.backoff import Backoff


def test_the_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=5.0, rng=random.Random(1))
    ceilings = []
    for _ in range(7):
        ceilings.append(backoff.ceiling)
        backoff.next_delay()
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_every_delay_lies_between_zero_and_its_ceiling() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(7))
    for _ in range(200):
        ceiling = backoff.ceiling
        assert 0 <= backoff.next_delay() <= ceiling <= 30.0


def test_the_jitter_is_full_delays_spread_over_the_whole_range() -> None:
    """Two agents that lost the same server do not retry in step: at the cap, delays cover [0, cap]."""
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(3))
    for _ in range(10):
        backoff.next_delay()
    delays = [backoff.next_delay() for _ in range(1000)]
    assert min(delays) < 0.8
    assert max(delays) > 7.2
    assert sum(delays) / len(delays) == pytest.approx(4.0, abs=0.5)


def test_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(5))
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert backoff.ceiling == 0.5
    assert backoff.next_delay() <= 0.5


def test_a_long_outage_never_overflows() -> None:
    backoff = Backoff(base=0.5, cap=1e300, rng=random.Random(2))
    for _ in range(5000):
        backoff.next_delay()
    assert backoff.ceiling <= 1e300
