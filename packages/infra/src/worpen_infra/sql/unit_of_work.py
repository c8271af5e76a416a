"""UnitOfWork on one SQLAlchemy connection and transaction. Database failures leave it as core errors."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from worpen_core.access.ports import ApiKeyRepository
from worpen_core.audit.ports import AuditRepository
from worpen_core.automation.notify_ports import ChannelRepository, DeliveryRepository
from worpen_core.automation.ports import (
    ProgressRepository,
    RuleRepository,
    RunRepository,
    TargetStateRepository,
)
from worpen_core.events.ports import EventRepository
from worpen_core.fleet.ports import AgentRepository, SampleRepository
from worpen_core.incidents.ports import IncidentRepository
from worpen_core.logs.ports import LogRepository
from worpen_core.pipelines.ports import (
    PipelineRepository,
    PipelineRunRepository,
    SecretRepository,
    StageLogRepository,
)
from worpen_core.shared.errors import Conflict, Unavailable, WorpenError
from worpen_core.telemetry.ports import TelemetryStore
from worpen_infra.sql.agent_repository import SqlAlchemyAgentRepository
from worpen_infra.sql.api_key_repository import SqlAlchemyApiKeyRepository
from worpen_infra.sql.audit_repository import SqlAlchemyAuditRepository
from worpen_infra.sql.automation_repository import (
    SqlAlchemyProgressRepository,
    SqlAlchemyRuleRepository,
    SqlAlchemyRunRepository,
    SqlAlchemyTargetStateRepository,
)
from worpen_infra.sql.channel_repository import SqlAlchemyChannelRepository, SqlAlchemyDeliveryRepository
from worpen_infra.sql.event_repository import SqlAlchemyEventRepository
from worpen_infra.sql.incident_repository import SqlAlchemyIncidentRepository
from worpen_infra.sql.log_repository import SqlAlchemyLogRepository
from worpen_infra.sql.pipeline_repository import (
    SqlAlchemyPipelineRepository,
    SqlAlchemyPipelineRunRepository,
    SqlAlchemySecretRepository,
    SqlAlchemyStageLogRepository,
)
from worpen_infra.sql.sample_repository import SqlAlchemySampleRepository
from worpen_infra.sql.telemetry_repository import SqlAlchemyTelemetryStore

RETRYABLE = {"40001": "a concurrent change to the same data", "40P01": "a deadlock with a concurrent change"}
"""PostgreSQL's serialization failure and deadlock: the transaction lost a race and was rolled back whole,
so the request can be sent again as it is."""
STATEMENT_CANCELLED = "57014"
"""PostgreSQL's query_canceled: the statement ran past WORPEN_DATABASE_STATEMENT_TIMEOUT."""


def translate(exc: SQLAlchemyError | OSError) -> WorpenError:
    """A failure of the database as a core error: a clash with stored data or a lost race is a Conflict;
    anything else (no connection, a timeout, a locked SQLite file, the server shutting down) is the
    database being unavailable. OSError: asyncpg lets a refused or timed-out connection through as the
    socket's own error (TimeoutError included), which SQLAlchemy does not wrap."""
    if isinstance(exc, OSError):
        return Unavailable("database", str(exc) or f"no connection ({type(exc).__name__})")
    cause = getattr(exc, "orig", None) or exc
    code = getattr(cause, "sqlstate", None)
    if isinstance(exc, IntegrityError):
        return Conflict(f"conflicts with stored data: {cause}")
    if code in RETRYABLE:
        return Conflict(f"the change was rolled back after {RETRYABLE[code]}: try again")
    if code == STATEMENT_CANCELLED:
        return Unavailable("database", f"a statement ran past the statement timeout: {cause}")
    return Unavailable("database", str(cause) or type(cause).__name__)


class SqlAlchemyUnitOfWork:
    agents: AgentRepository
    samples: SampleRepository
    api_keys: ApiKeyRepository
    audit: AuditRepository
    telemetry: TelemetryStore
    events: EventRepository
    logs: LogRepository
    incidents: IncidentRepository
    rules: RuleRepository
    runs: RunRepository
    targets: TargetStateRepository
    progress: ProgressRepository
    channels: ChannelRepository
    deliveries: DeliveryRepository
    pipelines: PipelineRepository
    pipeline_runs: PipelineRunRepository
    stage_logs: StageLogRepository
    secrets: SecretRepository

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._transaction: AsyncTransaction | None = None

    async def __aenter__(self) -> Self:
        try:
            self._connection = await self._engine.connect()
            self._transaction = await self._connection.begin()
        except (SQLAlchemyError, OSError) as exc:
            await self._close()
            raise translate(exc) from exc
        self.agents = SqlAlchemyAgentRepository(self._connection)
        self.samples = SqlAlchemySampleRepository(self._connection)
        self.api_keys = SqlAlchemyApiKeyRepository(self._connection)
        self.audit = SqlAlchemyAuditRepository(self._connection)
        self.telemetry = SqlAlchemyTelemetryStore(self._connection)
        self.events = SqlAlchemyEventRepository(self._connection)
        self.logs = SqlAlchemyLogRepository(self._connection)
        self.incidents = SqlAlchemyIncidentRepository(self._connection)
        self.rules = SqlAlchemyRuleRepository(self._connection)
        self.runs = SqlAlchemyRunRepository(self._connection)
        self.targets = SqlAlchemyTargetStateRepository(self._connection)
        self.progress = SqlAlchemyProgressRepository(self._connection)
        self.channels = SqlAlchemyChannelRepository(self._connection)
        self.deliveries = SqlAlchemyDeliveryRepository(self._connection)
        self.pipelines = SqlAlchemyPipelineRepository(self._connection)
        self.pipeline_runs = SqlAlchemyPipelineRunRepository(self._connection)
        self.stage_logs = SqlAlchemyStageLogRepository(self._connection)
        self.secrets = SqlAlchemySecretRepository(self._connection)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                await self._transaction.rollback()
        except (SQLAlchemyError, OSError):
            # Nothing uncommitted survives a connection that cannot even roll back (the server ends the
            # transaction with it): what the block raised, or nothing, is what the caller must hear.
            pass
        finally:
            await self._close()
        if isinstance(exc, SQLAlchemyError):
            raise translate(exc) from exc

    async def commit(self) -> None:
        if self._transaction is None:
            raise RuntimeError("commit() outside the unit of work")
        try:
            await self._transaction.commit()
        except (SQLAlchemyError, OSError) as exc:
            raise translate(exc) from exc

    async def _close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._transaction = None


class SqlAlchemyUnitOfWorkFactory:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __call__(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self._engine)
