"""Which events of the journal fire which trigger, and what a script sees of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worpen_core.automation.model import Trigger
from worpen_core.events.model import JsonValue, RecordedEvent, plain

TRIGGERS_OF: dict[str, frozenset[Trigger]] = {
    "ContainerDied": frozenset({Trigger.CONTAINER_DIED}),
    "ContainerOomKilled": frozenset({Trigger.CONTAINER_OOM_KILLED}),
    "ContainerHealthChanged": frozenset({Trigger.CONTAINER_UNHEALTHY}),
    "AgentWentOffline": frozenset({Trigger.AGENT_OFFLINE}),
    "AgentBecameCritical": frozenset({Trigger.AGENT_CRITICAL}),
    "AgentMetricHigh": frozenset({Trigger.CPU_HIGH, Trigger.MEMORY_HIGH, Trigger.DISK_USAGE_HIGH}),
    "PipelineRunFinished": frozenset({Trigger.PIPELINE_FAILED}),
}
"""The journal's event types that can fire a trigger."""
EVENT_TYPES = frozenset(TRIGGERS_OF)
METRIC_TRIGGERS = {"cpu": Trigger.CPU_HIGH, "memory": Trigger.MEMORY_HIGH, "disk": Trigger.DISK_USAGE_HIGH}
METRIC_NAMES = {"cpu": "cpu", "memory": "memory", "disk": "disk_usage"}
"""Each alerting metric's name in a script's `metrics`."""


def event_types(trigger: Trigger) -> frozenset[str]:
    """The journal's event types that may fire `trigger`."""
    return frozenset(name for name, triggers in TRIGGERS_OF.items() if trigger in triggers)


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One firing of a trigger: what happened, to what, and the context a script sees of it."""

    trigger: Trigger
    event_id: int | None
    at: datetime
    target: str
    """What a rule's targetService is matched against: the container's name, or the agent's id."""
    node: str
    container_id: str | None
    issue: str
    """What an incident opened for it says."""
    context: dict[str, JsonValue]

    @property
    def key(self) -> str:
        """The target of the storm protection: the same name on two nodes is two targets."""
        return f"{self.node}/{self.target}" if self.node else self.target


def occurrence_of(event: RecordedEvent) -> Occurrence | None:
    """The trigger `event` fires, if any (a requested stop, a healthy container, fire none)."""
    payload = event.payload
    base: dict[str, JsonValue] = {"type": event.type, "id": event.id, "time": plain(event.at)}
    match event.type:
        case "ContainerDied" if not payload.get("requested"):
            code = payload.get("exit_code")
            base |= {"exit_code": code}
            issue = f"container died with exit code {'unknown' if code is None else code}"
            return _container(event, Trigger.CONTAINER_DIED, issue, base)
        case "ContainerOomKilled":
            base |= {"exit_code": 137, "oom_killed": True}
            return _container(event, Trigger.CONTAINER_OOM_KILLED, "container was OOM-killed", base)
        case "ContainerHealthChanged" if payload.get("health") == "UNHEALTHY":
            base |= {"health": "UNHEALTHY"}
            return _container(event, Trigger.CONTAINER_UNHEALTHY, "container is unhealthy", base)
        case "AgentWentOffline":
            base |= {"last_seen": payload.get("last_seen")}
            return _agent(event, Trigger.AGENT_OFFLINE, "agent is offline", base, {})
        case "AgentBecameCritical":
            base |= {"reason": payload.get("reason")}
            metrics = {"cpu": payload.get("cpu"), "memory": payload.get("ram")}
            return _agent(event, Trigger.AGENT_CRITICAL, "agent is critical", base, metrics)
        case "AgentMetricHigh":
            metric = str(payload.get("metric"))
            trigger = METRIC_TRIGGERS.get(metric)
            if trigger is None:
                return None
            value, threshold = payload.get("value"), payload.get("threshold")
            base |= {"metric": METRIC_NAMES[metric], "value": value, "threshold": threshold}
            shown = f"{threshold:g}" if isinstance(threshold, int | float) else str(threshold)
            issue = f"{METRIC_NAMES[metric]} at or above {shown}%"
            return _agent(event, trigger, issue, base, {METRIC_NAMES[metric]: value})
        case "PipelineRunFinished" if payload.get("status") in ("FAILED", "ERROR"):
            return _pipeline(event, base)
    return None


def _container(event: RecordedEvent, trigger: Trigger, issue: str, base: dict[str, JsonValue]) -> Occurrence:
    payload = event.payload
    node, cid = str(payload.get("node", "")), str(payload.get("container_id", ""))
    name = str(payload.get("name") or cid[:12])
    container: dict[str, JsonValue] = {"id": cid, "name": name, "image": payload.get("image"), "node": node}
    context: dict[str, JsonValue] = {
        "event": {**base, "trigger": trigger.value},
        "container": container,
        "service": name,
        "container_id": cid,
        "node": node,
    }
    return Occurrence(trigger, event.id, event.at, name, node, cid, issue, context)


def _pipeline(event: RecordedEvent, base: dict[str, JsonValue]) -> Occurrence:
    payload = event.payload
    pipeline_id, node = str(payload.get("pipeline_id", "")), str(payload.get("node") or "")
    run: dict[str, JsonValue] = {
        "id": payload.get("run_id"),
        "number": payload.get("number"),
        "status": payload.get("status"),
        "error": payload.get("error"),
    }
    context: dict[str, JsonValue] = {
        "event": {**base, "trigger": Trigger.PIPELINE_FAILED.value, **run},
        "pipeline": {"id": pipeline_id, "run": run},
        "service": pipeline_id,
        "node": node,
    }
    issue = f"pipeline run #{payload.get('number')} {payload.get('status')}: {payload.get('error')}"
    return Occurrence(Trigger.PIPELINE_FAILED, event.id, event.at, pipeline_id, node, None, issue, context)


def _agent(
    event: RecordedEvent,
    trigger: Trigger,
    issue: str,
    base: dict[str, JsonValue],
    metrics: dict[str, JsonValue],
) -> Occurrence:
    agent_id = str(event.payload.get("agent_id", ""))
    context: dict[str, JsonValue] = {
        "event": {**base, "trigger": trigger.value},
        "agent": {"id": agent_id},
        "metrics": metrics,
        "service": agent_id,
        "node": agent_id,
    }
    return Occurrence(trigger, event.id, event.at, agent_id, agent_id, None, issue, context)
