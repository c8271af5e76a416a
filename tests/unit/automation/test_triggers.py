"""Which journal events fire which trigger, and what the script sees."""

from __future__ import annotations

from datetime import UTC, datetime

from worpen_core.automation.model import Trigger
from worpen_core.automation.triggers import event_types, occurrence_of
from worpen_core.events.model import JsonValue, RecordedEvent

AT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def event(kind: str, **payload: JsonValue) -> RecordedEvent:
    return RecordedEvent(42, AT, kind, "subject", payload)


CONTAINER: dict[str, JsonValue] = {
    "node": "edge-1",
    "container_id": "c" * 64,
    "name": "saleor-api",
    "image": "s:1",
}


def test_a_death_is_a_container_died_occurrence_with_its_exit_code() -> None:
    found = occurrence_of(event("ContainerDied", **CONTAINER, exit_code=137, requested=False))
    assert found is not None
    assert (found.trigger, found.target, found.node, found.key) == (
        Trigger.CONTAINER_DIED,
        "saleor-api",
        "edge-1",
        "edge-1/saleor-api",
    )
    assert found.context["service"] == "saleor-api"
    assert found.context["container_id"] == "c" * 64
    assert found.context["event"] == {
        "type": "ContainerDied",
        "id": 42,
        "time": "2026-12-01T03:00:00Z",
        "exit_code": 137,
        "trigger": "CONTAINER_DIED",
    }


def test_a_requested_stop_and_a_healthy_container_fire_nothing() -> None:
    assert occurrence_of(event("ContainerDied", **CONTAINER, exit_code=143, requested=True)) is None
    assert occurrence_of(event("ContainerHealthChanged", **CONTAINER, health="HEALTHY")) is None
    assert occurrence_of(event("ContainerStarted", **CONTAINER)) is None


def test_oom_unhealthy_and_agent_events_fire_their_triggers() -> None:
    oom = occurrence_of(event("ContainerOomKilled", **CONTAINER))
    unhealthy = occurrence_of(event("ContainerHealthChanged", **CONTAINER, health="UNHEALTHY"))
    offline = occurrence_of(event("AgentWentOffline", agent_id="bee-1", last_seen="2026-12-01T02:59:00Z"))
    disk = occurrence_of(
        event("AgentMetricHigh", agent_id="bee-1", metric="disk", value=93.5, threshold=90.0)
    )
    assert oom is not None
    assert oom.trigger is Trigger.CONTAINER_OOM_KILLED
    assert isinstance(oom.context["event"], dict)
    assert oom.context["event"]["exit_code"] == 137
    assert unhealthy is not None
    assert unhealthy.trigger is Trigger.CONTAINER_UNHEALTHY
    assert offline is not None
    assert (offline.trigger, offline.target, offline.node) == (Trigger.AGENT_OFFLINE, "bee-1", "bee-1")
    assert disk is not None
    assert disk.trigger is Trigger.DISK_USAGE_HIGH
    assert disk.context["metrics"] == {"disk_usage": 93.5}


def test_each_event_trigger_is_fired_by_some_journal_event_type() -> None:
    for trigger in Trigger:
        expected = trigger not in (Trigger.SCHEDULE, Trigger.MANUAL)
        assert bool(event_types(trigger)) is expected


def test_a_pipeline_run_that_failed_fires_pipeline_failed_and_one_that_succeeded_nothing() -> None:
    finished: dict[str, JsonValue] = {
        "run_id": "run_1",
        "pipeline_id": "shop",
        "number": 7,
        "node": "edge-1",
        "error": "stage test: exited with code 1",
        "duration_seconds": 12.5,
    }

    failed = occurrence_of(event("PipelineRunFinished", **finished, status="FAILED"))

    assert failed is not None
    assert (failed.trigger, failed.target, failed.node) == (Trigger.PIPELINE_FAILED, "shop", "edge-1")
    assert failed.issue == "pipeline run #7 FAILED: stage test: exited with code 1"
    assert failed.context["pipeline"] == {
        "id": "shop",
        "run": {"id": "run_1", "number": 7, "status": "FAILED", "error": "stage test: exited with code 1"},
    }
    assert occurrence_of(event("PipelineRunFinished", **finished, status="ERROR")) is not None
    assert occurrence_of(event("PipelineRunFinished", **finished, status="SUCCESS")) is None
    assert occurrence_of(event("PipelineRunFinished", **finished, status="CANCELLED")) is None
    assert event_types(Trigger.PIPELINE_FAILED) == {"PipelineRunFinished"}
