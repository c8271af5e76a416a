"""What this agent program is: its version (reported in Hello and heartbeats) and its channel protocol."""

from __future__ import annotations

from importlib.metadata import version

PROTOCOL = 1
"""The version of agent.proto's channel this program speaks (Hello.protocol)."""


def agent_version() -> str:
    """The installed distribution's version, so a node reports what it really runs."""
    return version("worpen-agent")
