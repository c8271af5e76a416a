"""What pipelines need from the outside: storage, a cipher for secrets and a way to fetch sources."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from worpen_core.pipelines.model import (
    Pipeline,
    PipelineRun,
    PipelineSecret,
    RunQuery,
    Source,
    StageLogLine,
)
from worpen_core.shared.ports import UnitOfWork


class PipelineRepository(Protocol):
    async def add(self, pipeline: Pipeline) -> None:
        """Store a new definition (an id already taken raises Conflict)."""
        ...

    async def update(self, pipeline: Pipeline) -> None: ...

    async def get(self, pipeline_id: str) -> Pipeline | None: ...

    async def list_all(self) -> list[Pipeline]:
        """Every definition, ordered by id."""
        ...

    async def delete(self, pipeline_id: str) -> bool: ...

    async def claim_cron_slot(self, pipeline_id: str, slot: datetime) -> bool:
        """Record `slot` as the pipeline's last cron slot if it is later than the one recorded (or none
        is): True when this call claimed it, so a slot starts one run however many ask."""
        ...

    async def cron_slot(self, pipeline_id: str) -> datetime | None:
        """The last cron slot claimed for the pipeline."""
        ...


class PipelineRunRepository(Protocol):
    async def add(self, run: PipelineRun) -> int:
        """Store a new run with its stages, numbered after the pipeline's last run; returns its number."""
        ...

    async def save(self, run: PipelineRun) -> None:
        """Write the run's fields and its stages' (all but their log line counts, which `append` keeps)."""
        ...

    async def get(self, run_id: str) -> PipelineRun | None: ...

    async def query(self, query: RunQuery) -> list[PipelineRun]:
        """Newest first."""
        ...

    async def latest(self) -> dict[str, PipelineRun]:
        """Each pipeline's newest run, by pipeline id."""
        ...

    async def pending(self) -> list[PipelineRun]:
        """Runs waiting for a node, oldest first."""
        ...

    async def active(self) -> list[PipelineRun]:
        """Runs RUNNING or BLOCKED (holding their node's slot)."""
        ...

    async def used_slots(self) -> dict[str, int]:
        """Active runs by node."""
        ...

    async def reserve(self, run_id: str, node: str, limit: int, at: datetime) -> bool:
        """Atomically move a PENDING run to RUNNING on `node` if fewer than `limit` runs are active there;
        False (nothing changed) when the node is full or the run is no longer PENDING."""
        ...

    async def cancel_pending(self, run_id: str, by: str, at: datetime) -> bool:
        """Atomically mark a PENDING run (and its stages) CANCELLED; False when it is not PENDING."""
        ...

    async def extend_lease(self, run_id: str, stage: str, until: datetime) -> None: ...

    async def expired(self, now: datetime) -> list[tuple[str, str]]:
        """(run id, stage name) of RUNNING stages whose lease ended before `now`."""
        ...


class StageLogRepository(Protocol):
    async def append(self, run_id: str, stage: str, lines: Sequence[StageLogLine]) -> None:
        """Store lines (numbered by the caller, after the stored ones) and raise the stage's line count."""
        ...

    async def read(self, run_id: str, stage: str, after: int, limit: int) -> list[StageLogLine]:
        """Lines numbered above `after`, in order, at most `limit`."""
        ...


class SecretRepository(Protocol):
    async def put(self, secret: PipelineSecret) -> bool:
        """Insert or replace; True when it is new."""
        ...

    async def get_many(self, names: Sequence[str]) -> dict[str, PipelineSecret]: ...

    async def list_all(self) -> list[PipelineSecret]:
        """Ordered by name."""
        ...

    async def delete(self, name: str) -> bool: ...


class PipelinesUnitOfWork(UnitOfWork, Protocol):
    pipelines: PipelineRepository
    pipeline_runs: PipelineRunRepository
    stage_logs: StageLogRepository
    secrets: SecretRepository


PipelinesUnitOfWorkFactory = Callable[[], PipelinesUnitOfWork]


class SecretCipher(Protocol):
    """Authenticated encryption of secrets at rest."""

    def seal(self, value: str) -> bytes: ...

    def open(self, sealed: bytes) -> str:
        """The value; InvalidInput when `sealed` was not sealed with this key (or was altered)."""
        ...


class SourceFetcher(Protocol):
    def check(self, repository: str) -> str | None:
        """Why Worpen may not fetch `repository` (a scheme it does not speak, a local path outside the
        allowed directories), or None."""
        ...

    async def fetch(self, repository: str, branch: str, commit: str | None) -> Source:
        """The files at `commit` (a full or abbreviated sha), or at the head of `branch` when None.
        Raises InvalidInput when the repository is not allowed, NotFound for an unknown branch or commit,
        Unavailable when it cannot be reached, TooLarge beyond the size limit."""
        ...


RequestAction = Literal["cancel", "approve", "decline"]


@dataclass(frozen=True, slots=True)
class PipelineRequest:
    """A cancel or an approval decision asked on a replica that does not drive the run, for the one that
    does (several replicas on one database)."""

    id: str
    run_id: str
    action: RequestAction
    stage: str | None
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    conflict: str | None
    """The driver's Conflict message, or None when the request was carried out."""


class PipelineRequests(Protocol):
    """Requests between replicas: the asker adds one and waits for its outcome, the replica driving the
    run takes it, applies it and answers."""

    async def add(self, request: PipelineRequest) -> None: ...

    async def open_for(self, run_ids: Collection[str]) -> list[PipelineRequest]:
        """Requests no replica took yet for these runs, oldest first."""
        ...

    async def take(self, request_id: str) -> bool:
        """Claim an open request; False when another replica took it or its asker withdrew it."""
        ...

    async def answer(self, request_id: str, outcome: RequestOutcome) -> None: ...

    async def outcome(self, request_id: str) -> RequestOutcome | None:
        """None while the request is unanswered (or gone)."""
        ...

    async def withdraw(self, request_id: str) -> bool:
        """Delete the request unless a replica took it: True when none did (and now none will)."""
        ...

    async def remove(self, request_id: str) -> None: ...
