"""The central log's repository, in memory, with a small full-text query language of its own: words (all
of them must appear), "phrases" and prefix* words; an unbalanced quote is a query it cannot read."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import datetime

from tests.fakes.store import Store
from worpen_core.logs.model import LogEntry, LogFilter, LogLine, LogQuery
from worpen_core.logs.ports import Pruned
from worpen_core.shared.errors import InvalidInput

_WORD = re.compile(r"\w+")


def _matches(message: str, terms: list[str]) -> bool:
    words = _WORD.findall(message.lower())
    text = " ".join(words)
    for term in terms:
        wanted = " ".join(_WORD.findall(term.lower()))
        if term.endswith("*"):
            if not any(word.startswith(wanted) for word in words):
                return False
        elif f" {wanted} " not in f" {text} ":
            return False
    return True


class FakeLogRepository:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._appended: list[LogEntry] = []
        self._sizes: dict[int, int] = {}
        self._pruned: set[int] = set()

    async def append(self, lines: Sequence[LogLine]) -> list[int]:
        ids = []
        for line in lines:
            self._store.last_log_id += 1
            ids.append(self._store.last_log_id)
            self._appended.append(LogEntry.numbered(self._store.last_log_id, line))
            self._sizes[self._store.last_log_id] = line.size
        return ids

    def _visible(self) -> list[LogEntry]:
        return [entry for entry in [*self._store.logs, *self._appended] if entry.id not in self._pruned]

    async def query(self, query: LogQuery) -> list[LogEntry]:
        terms: list[str] | None = None
        if query.text is not None:
            try:
                terms = shlex.split(query.text)
            except ValueError as exc:
                raise InvalidInput(f"not a full-text query this store reads: {exc}", "q") from exc
        found = [
            entry
            for entry in reversed(self._visible())
            if query.filter.keeps(entry)
            and (query.before is None or entry.id < query.before)
            and (query.since is None or entry.timestamp >= query.since)
            and (query.until is None or entry.timestamp < query.until)
            and (terms is None or _matches(entry.message, terms))
        ]
        return found[: query.limit]

    async def after(self, after: int, limit: int, kept: LogFilter) -> list[LogEntry]:
        return [entry for entry in self._visible() if entry.id > after and kept.keeps(entry)][:limit]

    async def size(self) -> int:
        sizes = {**self._store.log_sizes, **self._sizes}
        return sum(sizes[entry.id] for entry in self._visible())

    async def prune(self, before: datetime, excess: int, limit: int) -> Pruned:
        sizes = {**self._store.log_sizes, **self._sizes}
        freed = count = 0
        for entry in self._visible()[:limit]:
            if entry.timestamp >= before and freed >= excess:
                break
            self._pruned.add(entry.id)
            freed += sizes[entry.id]
            count += 1
        return Pruned(count, freed)

    def commit(self) -> None:
        self._store.logs = [e for e in [*self._store.logs, *self._appended] if e.id not in self._pruned]
        self._store.log_sizes.update(self._sizes)
        for entry_id in self._pruned:
            self._store.log_sizes.pop(entry_id, None)
        self.discard()

    def discard(self) -> None:
        self._appended.clear()
        self._sizes.clear()
        self._pruned.clear()
