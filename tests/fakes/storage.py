"""The fake database: what every unit of work made from one factory shares, and the unit of work."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from tests.fakes.access import FakeApiKeyRepository
from tests.fakes.audit import FakeAuditRepository
from tests.fakes.automation import FakeAutomation
from tests.fakes.events import FakeEventRepository
from tests.fakes.fleet import FakeAgentRepository, FakeSampleRepository
from tests.fakes.incidents import FakeIncidentRepository
from tests.fakes.logs import FakeLogRepository
from tests.fakes.notifications import FakeNotifications
from tests.fakes.pipelines import FakePipelines
from tests.fakes.store import Store
from tests.fakes.telemetry import FakeTelemetryStore
from worpen_core.access.model import ApiKey
from worpen_core.access.ports import ApiKeyRepository
from worpen_core.audit.model import AuditEntry
from worpen_core.audit.ports import AuditRepository
from worpen_core.automation.notify_ports import ChannelRepository, DeliveryRepository
from worpen_core.automation.ports import (
    ProgressRepository,
    RuleRepository,
    RunRepository,
    TargetStateRepository,
)
from worpen_core.events.ports import EventRepository
from worpen_core.fleet.model import Agent, TelemetrySample
from worpen_core.fleet.ports import AgentRepository, SampleRepository
from worpen_core.incidents.ports import IncidentRepository
from worpen_core.logs.ports import LogRepository
from worpen_core.pipelines.ports import (
    PipelineRepository,
    PipelineRunRepository,
    SecretRepository,
    StageLogRepository,
)
from worpen_core.shared.errors import Unavailable
from worpen_core.telemetry.ports import TelemetryStore


class FakeUnitOfWork:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.committed = False
        self._agents: dict[str, Agent] = {}
        self._samples: list[TelemetrySample] = []
        self._keys: dict[str, ApiKey] = {}
        self._audit: dict[str, AuditEntry] = {}
        self.agents: AgentRepository = FakeAgentRepository(store, self._agents, self._samples)
        self.samples: SampleRepository = FakeSampleRepository(self._samples, store)
        self.api_keys: ApiKeyRepository = FakeApiKeyRepository(store, self._keys)
        self.audit: AuditRepository = FakeAuditRepository(store, self._audit)
        self._events = FakeEventRepository(store)
        self.events: EventRepository = self._events
        self._logs = FakeLogRepository(store)
        self.logs: LogRepository = self._logs
        self._telemetry = FakeTelemetryStore(store)
        self.telemetry: TelemetryStore = self._telemetry
        self._notifications = FakeNotifications(store)
        self.channels: ChannelRepository = self._notifications.channels
        self.deliveries: DeliveryRepository = self._notifications.deliveries
        self._incidents = FakeIncidentRepository(store)
        self.incidents: IncidentRepository = self._incidents
        self._automation = FakeAutomation(store)
        self.rules: RuleRepository = self._automation.rules
        self.runs: RunRepository = self._automation.runs
        self.targets: TargetStateRepository = self._automation.targets
        self.progress: ProgressRepository = self._automation.progress
        self._pipelines = FakePipelines(store)
        self.pipelines: PipelineRepository = self._pipelines.pipelines
        self.pipeline_runs: PipelineRunRepository = self._pipelines.runs
        self.stage_logs: StageLogRepository = self._pipelines.logs
        self.secrets: SecretRepository = self._pipelines.secrets

    async def __aenter__(self) -> Self:
        if self._store.broken:
            raise Unavailable("database", "the fake database is broken")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._agents.clear()
        self._samples.clear()
        self._keys.clear()
        self._audit.clear()
        self._events.discard()
        self._logs.discard()
        self._telemetry.discard()
        self._notifications.discard()
        self._incidents.discard()
        self._automation.discard()
        self._pipelines.discard()

    async def commit(self) -> None:
        if self._store.broken:
            raise Unavailable("database", "the fake database is broken")
        self._incidents.commit()  # first: it may refuse, as a unique index would
        self._store.agents.update(self._agents)
        self._store.add_samples(self._samples)
        self._telemetry.commit()
        self._store.api_keys.update(self._keys)
        self._store.audit.update(self._audit)
        self._events.commit()
        self._logs.commit()
        self._notifications.commit()
        self._automation.commit()
        self._pipelines.commit()
        self.committed = True


class FakeUnitOfWorkFactory:
    def __init__(self) -> None:
        self.store = Store()
        self.made: list[FakeUnitOfWork] = []

    def __call__(self) -> FakeUnitOfWork:
        uow = FakeUnitOfWork(self.store)
        self.made.append(uow)
        return uow
