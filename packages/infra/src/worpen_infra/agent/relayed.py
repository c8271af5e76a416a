"""ContainerRuntime on the engine of an agent whose stream another replica holds: the same commands as
AgentContainerRuntime, over a link that relays them to that replica (relay.proto). The container list is
the holder's inventory, asked for at each listing ("relay.inventory"): the holder knows when it is fresh.
Engine events are not followed here: the holder publishes them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from worpen_core.containers.model import Container
from worpen_infra.agent.runtime import FRESHNESS_WAIT, AgentContainerRuntime
from worpen_infra.docker import mapping

INVENTORY = "relay.inventory"


class RelayedContainerRuntime(AgentContainerRuntime):
    async def list_containers(self) -> list[Container]:
        result = await self._call(INVENTORY, {}, within=self._timeout + FRESHNESS_WAIT)
        containers = mapping.containers(
            json.dumps(self._part(result, "containers", INVENTORY)).encode(), self.node
        )
        self._taken_at = datetime.fromtimestamp(int(self._part(result, "takenAtMs", INVENTORY)) / 1000, UTC)
        return containers
