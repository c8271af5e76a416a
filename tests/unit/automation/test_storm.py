"""Storm protection: one state machine per (rule, target) that makes remediation loops impossible."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worpen_core.automation.model import StormPolicy, TargetState, Verdict
from worpen_core.shared.errors import InvalidInput

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_backoff_doubles_from_ten_seconds_to_five_minutes() -> None:
    storm = StormPolicy()
    assert [storm.backoff_after(n).total_seconds() for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


def test_a_target_that_keeps_failing_is_retried_with_growing_waits_then_given_up() -> None:
    storm = StormPolicy(cooldown_seconds=0, max_attempts=3)
    state = TargetState("r", "node/web")
    now = 0.0
    runs: list[float] = []
    verdicts: list[Verdict] = []
    while now < 600:
        decision = state.decide(at(now), storm, acts=True)
        verdicts.append(decision.verdict)
        if decision.verdict is Verdict.RUN:
            state.ran(at(now), storm, acts=True)
            runs.append(now)
        elif decision.verdict is Verdict.GIVE_UP:
            break
        now += 1  # the container dies again every second
    assert runs == [0, 10, 30]  # waits of 10 s, then 20 s
    assert verdicts[-1] is Verdict.GIVE_UP
    assert state.gave_up_at == at(31)
    assert state.decide(at(32), storm, acts=True).verdict is Verdict.SUPPRESS


def test_a_deferred_plan_is_due_when_the_backoff_ends() -> None:
    storm = StormPolicy(cooldown_seconds=0)
    state = TargetState("r", "web")
    state.ran(at(0), storm, acts=True)
    decision = state.decide(at(3), storm, acts=True)
    assert decision.verdict is Verdict.DEFER
    assert decision.due == at(10)
    state.defer(7, at(10))
    assert (state.pending_event_id, state.pending_due_at) == (7, at(10))
    assert state.decide(at(10), storm, acts=True).verdict is Verdict.RUN


def test_the_cooldown_spaces_runs_that_do_not_act_on_containers() -> None:
    storm = StormPolicy(cooldown_seconds=60)
    state = TargetState("r", "web")
    state.ran(at(0), storm, acts=False)
    assert state.attempts == []
    assert state.decide(at(30), storm, acts=False).verdict is Verdict.DEFER
    assert state.decide(at(60), storm, acts=False).verdict is Verdict.RUN


def test_a_quiet_target_starts_afresh() -> None:
    storm = StormPolicy(cooldown_seconds=0, max_attempts=1, reset_after_seconds=600)
    state = TargetState("r", "web")
    state.decide(at(0), storm, acts=True)
    state.ran(at(0), storm, acts=True)
    assert state.decide(at(20), storm, acts=True).verdict is Verdict.GIVE_UP
    assert state.decide(at(500), storm, acts=True).verdict is Verdict.SUPPRESS
    assert state.decide(at(1200), storm, acts=True).verdict is Verdict.RUN  # 700 s without a trigger
    assert state.attempts == []


def test_attempts_older_than_the_window_do_not_count() -> None:
    storm = StormPolicy(
        cooldown_seconds=0, max_attempts=2, attempt_window_seconds=100, reset_after_seconds=10_000
    )
    state = TargetState("r", "web")
    for second in (0, 60):
        assert state.decide(at(second), storm, acts=True).verdict is Verdict.RUN
        state.ran(at(second), storm, acts=True)
    assert state.decide(at(120), storm, acts=True).verdict is Verdict.RUN  # the attempt at 0 left the window


def test_policies_out_of_range_are_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidInput) as refused:
        StormPolicy(max_attempts=0)
    assert refused.value.field == "maxAttempts"
    with pytest.raises(InvalidInput) as refused:
        StormPolicy(backoff_seconds=100, max_backoff_seconds=10)
    assert refused.value.field == "maxBackoffSeconds"


@given(
    st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), min_size=1, max_size=300),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=0, max_value=60),
)
def test_no_event_stream_makes_more_attempts_than_allowed_in_a_window(
    gaps: list[float], max_attempts: int, backoff: int
) -> None:
    """Whatever the events, runs on one target never exceed maxAttempts within a window and are never
    closer than the backoff: storms are impossible by construction."""
    storm = StormPolicy(
        cooldown_seconds=0,
        max_attempts=max_attempts,
        attempt_window_seconds=3600,
        backoff_seconds=backoff,
        max_backoff_seconds=max(backoff, 300),
        reset_after_seconds=86_400,
    )
    state = TargetState("r", "web")
    now = 0.0
    runs: list[float] = []
    for gap in gaps:
        now += gap
        if state.decide(at(now), storm, acts=True).verdict is Verdict.RUN:
            state.ran(at(now), storm, acts=True)
            runs.append(now)
    assert len(runs) <= max_attempts
    for n, (first, second) in enumerate(itertools.pairwise(runs), start=1):
        assert second - first >= storm.backoff_after(n).total_seconds() - 1e-6
