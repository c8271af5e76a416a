"""What happens to pipeline runs: domain events, so they reach the journal (where automation rules can
react to them), the central log and the live stream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worpen_core.logs.model import Level
from worpen_core.logs.render import Narrated, Rendered
from worpen_core.pipelines.model import RunStatus, StageStatus, TriggerKind

_RUN_LEVELS = {
    RunStatus.SUCCESS: Level.SUCCESS,
    RunStatus.FAILED: Level.ERROR,
    RunStatus.ERROR: Level.ERROR,
    RunStatus.CANCELLED: Level.WARN,
}
_STAGE_LEVELS = {
    StageStatus.SUCCESS: Level.SUCCESS,
    StageStatus.FAILED: Level.ERROR,
    StageStatus.ERROR: Level.ERROR,
    StageStatus.CANCELLED: Level.WARN,
    StageStatus.SKIPPED: Level.INFO,
}
SOURCE = "pipelines"


@dataclass(frozen=True, slots=True)
class PipelineEvent(Narrated):
    run_id: str
    pipeline_id: str
    number: int
    at: datetime

    @property
    def subject(self) -> str:
        return self.pipeline_id

    @property
    def _what(self) -> str:
        return f"pipeline {self.pipeline_id} #{self.number} ({self.run_id})"


@dataclass(frozen=True, slots=True)
class PipelineRunStarted(PipelineEvent):
    node: str
    commit: str | None
    trigger: TriggerKind
    triggered_by: str

    def line(self) -> Rendered:
        commit = f" at {self.commit[:12]}" if self.commit else ""
        by = f"{self.trigger.value.lower()} by {self.triggered_by}"
        return Rendered(Level.INFO, SOURCE, f"{self._what} started on {self.node}{commit} ({by})")


@dataclass(frozen=True, slots=True)
class PipelineStageFinished(PipelineEvent):
    stage: str
    status: StageStatus
    exit_code: int | None
    node: str | None
    error: str | None

    def line(self) -> Rendered:
        code = f", exit code {self.exit_code}" if self.exit_code is not None else ""
        reason = f": {self.error}" if self.error else ""
        return Rendered(
            _STAGE_LEVELS.get(self.status, Level.INFO),
            SOURCE,
            f"{self._what} stage {self.stage} {self.status.value}{code}{reason}",
        )


@dataclass(frozen=True, slots=True)
class PipelineRunFinished(PipelineEvent):
    status: RunStatus
    node: str | None
    error: str | None
    duration_seconds: float | None

    def line(self) -> Rendered:
        took = f" in {self.duration_seconds:.1f} s" if self.duration_seconds is not None else ""
        reason = f": {self.error}" if self.error else ""
        return Rendered(
            _RUN_LEVELS.get(self.status, Level.INFO),
            SOURCE,
            f"{self._what} {self.status.value}{took}{reason}",
        )
