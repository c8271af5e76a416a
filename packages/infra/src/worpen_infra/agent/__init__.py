"""The container runtime port on a node's engine served by its worpen-agent, over the agent's link."""

from worpen_infra.agent.runtime import AgentContainerRuntime

__all__ = ["AgentContainerRuntime"]
