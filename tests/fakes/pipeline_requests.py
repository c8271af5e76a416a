"""Requests between replicas in memory: one instance stands for the database of several replicas."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from worpen_core.pipelines.ports import PipelineRequest, RequestOutcome


@dataclass(slots=True)
class _Row:
    request: PipelineRequest
    taken: bool = False
    outcome: RequestOutcome | None = None


class FakePipelineRequests:
    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}

    async def add(self, request: PipelineRequest) -> None:
        self.rows[request.id] = _Row(request)

    async def open_for(self, run_ids: Collection[str]) -> list[PipelineRequest]:
        wanted = set(run_ids)
        open_ = [row.request for row in self.rows.values() if not row.taken and row.request.run_id in wanted]
        return sorted(open_, key=lambda request: (request.at, request.id))

    async def take(self, request_id: str) -> bool:
        row = self.rows.get(request_id)
        if row is None or row.taken:
            return False
        row.taken = True
        return True

    async def answer(self, request_id: str, outcome: RequestOutcome) -> None:
        row = self.rows.get(request_id)
        if row is not None:
            row.outcome = outcome

    async def outcome(self, request_id: str) -> RequestOutcome | None:
        row = self.rows.get(request_id)
        return row.outcome if row is not None else None

    async def withdraw(self, request_id: str) -> bool:
        row = self.rows.get(request_id)
        if row is None or row.taken:
            return False
        del self.rows[request_id]
        return True

    async def remove(self, request_id: str) -> None:
        self.rows.pop(request_id, None)
