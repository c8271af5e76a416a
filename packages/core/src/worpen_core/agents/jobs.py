"""The agents feature's background work: with replicas, keeping the registry of agents' streams and this
replica's view of it current."""

from __future__ import annotations

from worpen_core.agents.service import Agents
from worpen_core.shared.jobs import Job, Periodic


def agent_jobs(agents: Agents, *, refresh_every: float) -> list[Job]:
    """Every replica runs it: each records and forgets its own streams and learns the others'."""
    return [Periodic("agents.registry", refresh_every, agents.refresh)]
