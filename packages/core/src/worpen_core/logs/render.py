"""Domain events as lines a person reads in the central log: how serious, who said it, what happened."""

from __future__ import annotations

from dataclasses import dataclass

from worpen_core.audit.events import OperationAudited
from worpen_core.audit.model import Outcome
from worpen_core.containers.events import (
    ContainerDied,
    ContainerEvent,
    ContainerHealthChanged,
    ContainerOomKilled,
    ContainerRemoved,
    ContainerStarted,
    ContainerStopped,
    EngineAvailable,
    EngineUnavailable,
    ImagePulled,
)
from worpen_core.events.model import Event
from worpen_core.fleet.events import (
    AgentBecameCritical,
    AgentHealing,
    AgentMetricCleared,
    AgentMetricHigh,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
)
from worpen_core.logs.model import Level

WORPEN = "worpen"
"""The source of lines about Worpen itself (the operations made through it)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    level: Level
    source: str
    message: str


@dataclass(frozen=True, slots=True)
class Narrated(Event):
    """An event of a feature above the central log, which this module cannot name (features are layered):
    it says itself which line it makes."""

    def line(self) -> Rendered:
        raise NotImplementedError


_HEALTH_LEVELS = {"HEALTHY": Level.SUCCESS, "UNHEALTHY": Level.ERROR}


def render(event: Event) -> Rendered:
    """The line an event makes. Agents' events come from the agent, containers' and engines' from their
    node, audited operations from Worpen; an event this module does not know still makes a line."""
    match event:
        case AgentRegistered():
            return Rendered(Level.INFO, event.agent_id, f"{event.agent_id} registered ({event.status.value})")
        case AgentWentOffline():
            silent = round((event.at - event.last_seen).total_seconds())
            return Rendered(
                Level.WARN, event.agent_id, f"{event.agent_id} went OFFLINE (last seen {silent} s ago)"
            )
        case AgentBecameCritical():
            return Rendered(
                Level.ERROR,
                event.agent_id,
                f"{event.agent_id} became CRITICAL: {event.reason} (cpu {event.cpu:g}%, ram {event.ram:g}%)",
            )
        case AgentRecovered():
            return Rendered(
                Level.SUCCESS, event.agent_id, f"{event.agent_id} recovered (was {event.previous.value})"
            )
        case AgentHealing():
            return Rendered(Level.INFO, event.agent_id, f"{event.agent_id} is HEALING: {event.reason}")
        case AgentMetricHigh():
            line = f"{event.metric.value} high: {event.value:g}% (threshold {event.threshold:g}%)"
            return Rendered(Level.WARN, event.agent_id, f"{event.agent_id} {line}")
        case AgentMetricCleared():
            line = f"{event.metric.value} back to {event.value:g}% (threshold {event.threshold:g}%)"
            return Rendered(Level.SUCCESS, event.agent_id, f"{event.agent_id} {line}")
        case ContainerEvent():
            return _container(event)
        case ImagePulled():
            return Rendered(Level.INFO, event.node, f"image {event.image} pulled on {event.node}")
        case EngineUnavailable():
            return Rendered(
                Level.ERROR, event.node, f"Docker engine of {event.node} unavailable: {event.detail}"
            )
        case EngineAvailable():
            return Rendered(Level.SUCCESS, event.node, f"Docker engine of {event.node} reached")
        case OperationAudited():
            return _operation(event)
        case Narrated():
            return event.line()
    return Rendered(Level.INFO, WORPEN, f"{type(event).__name__}: {event.subject}")


def _container(event: ContainerEvent) -> Rendered:
    what = f"container {event.name or event.container_id[:12]} on {event.node}"
    match event:
        case ContainerStarted():
            return Rendered(Level.INFO, event.node, f"{what} started")
        case ContainerStopped():
            return Rendered(Level.INFO, event.node, f"{what} stopped")
        case ContainerDied(exit_code=0):
            return Rendered(Level.INFO, event.node, f"{what} exited with code 0")
        case ContainerDied(requested=True):
            return Rendered(Level.INFO, event.node, f"{what} stopped on request (exit {event.exit_code})")
        case ContainerDied():
            code = "an unknown code" if event.exit_code is None else f"code {event.exit_code}"
            return Rendered(Level.WARN, event.node, f"{what} died with exit {code}")
        case ContainerOomKilled():
            return Rendered(Level.ERROR, event.node, f"{what} was OOM-killed")
        case ContainerHealthChanged():
            level = _HEALTH_LEVELS.get(event.health, Level.INFO)
            return Rendered(level, event.node, f"{what} is {event.health}")
        case ContainerRemoved():
            return Rendered(Level.INFO, event.node, f"{what} removed")
    return Rendered(Level.INFO, event.node, f"{what}: {type(event).__name__}")


def _operation(event: OperationAudited) -> Rendered:
    where = "" if event.node is None else f" on {event.node}"
    done = f"{event.actor}: {event.action} {event.target}{where}"
    if event.outcome is Outcome.SUCCEEDED:
        return Rendered(Level.SUCCESS, WORPEN, f"{done} succeeded")
    return Rendered(Level.ERROR, WORPEN, f"{done} failed: {event.error}")
