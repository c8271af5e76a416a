"""The rule engine: follows the journal of events, runs each matching rule's script in the sandbox, and
applies the plan through the same use cases (and audit trail) as the API — with storm protection between
the plan and its application.

Events are taken from the journal, not from the bus: the engine resumes after a restart where it left off
(its cursor is stored), and what it did for an event is recorded (a run), so no event is handled twice.
Each rule has its own queue and worker: a slow or failing rule delays only itself, never heartbeats or
other rules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from worpen_core.access.model import Permission, Principal, Role
from worpen_core.automation.commands import Backtest, ManualRun
from worpen_core.automation.events import RemediationGaveUp, RuleRan, ScriptLogged
from worpen_core.automation.model import (
    EVENT_TRIGGERS,
    AppliedAction,
    AutomationRule,
    AutomationRun,
    Decision,
    RunStatus,
    TargetState,
    Trigger,
    Verdict,
)
from worpen_core.automation.notifications import Notifications
from worpen_core.automation.plan import Action, ActionType, ScriptOutcome, ScriptStatus
from worpen_core.automation.ports import AutomationUnitOfWorkFactory, ScriptSandbox
from worpen_core.automation.service import Automation
from worpen_core.automation.triggers import EVENT_TYPES, METRIC_NAMES, Occurrence, event_types, occurrence_of
from worpen_core.containers.model import PruneRequest
from worpen_core.containers.service import Containers
from worpen_core.events.journal import EventJournal
from worpen_core.events.model import Event, JsonValue, RecordedEvent, plain
from worpen_core.events.ports import EventBus
from worpen_core.fleet.service import Fleet
from worpen_core.incidents.model import IncidentReport, ResolutionMethod, Severity
from worpen_core.incidents.service import Incidents
from worpen_core.shared.broadcast import FellBehind
from worpen_core.shared.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    WorpenError,
)
from worpen_core.shared.ports import Clock, CronSchedule
from worpen_core.shared.streams import until

T = TypeVar("T")
log = logging.getLogger(__name__)
CURSOR = "automation.engine"
"""The progress entry holding the id of the last journal event the engine is done with."""
SCHEDULE_PREFIX = "schedule:"
DOCKER_ACTIONS = frozenset({ActionType.DOCKER_RESTART, ActionType.DOCKER_STOP, ActionType.DOCKER_START})
CONTAINER_ACTIONS = DOCKER_ACTIONS | {ActionType.DOCKER_PRUNE}
NOTIFY_ACTIONS = frozenset({ActionType.NOTIFY_WEBHOOK, ActionType.NOTIFY_SLACK})


@dataclass(frozen=True, slots=True)
class _Item:
    occurrence: Occurrence
    deferred: bool = False
    """A deferred plan whose wait is over (its event was recorded DEFERRED when it came)."""


@dataclass(frozen=True, slots=True)
class BacktestItem:
    """What the rule would have done for one event (or, `deferred`, when a deferred plan's wait ended)."""

    event_id: int | None
    at: datetime
    trigger: str
    target: str
    node: str
    verdict: str
    """RUN, DEFER, SUPPRESS or GIVE_UP (storm protection), NO_ACTION, or ERROR (the script failed)."""
    reason: str | None
    outcome: ScriptOutcome
    deferred: bool = False


@dataclass(frozen=True, slots=True)
class BacktestReport:
    rule: str
    since: datetime
    until: datetime
    events_matched: int
    items: tuple[BacktestItem, ...]
    runs: int
    """Plans that would have been applied."""
    actions: dict[str, int]
    """Actions that would have been applied, by type."""
    targets: tuple[str, ...]
    """Targets (node/name) that would have been acted on."""
    deferred: int
    suppressed: int
    """Plans the storm protection would not have applied: deferred and then superseded by a later event,
    suppressed after a give-up, or given up on."""
    gave_up: int
    errors: int
    truncated: bool


class RuleEngine:
    def __init__(
        self,
        uow: AutomationUnitOfWorkFactory,
        automation: Automation,
        journal: EventJournal,
        sandbox: ScriptSandbox,
        cron: CronSchedule,
        fleet: Fleet,
        containers: Containers,
        incidents: Incidents,
        notifications: Notifications,
        bus: EventBus,
        clock: Clock,
        *,
        queue: int = 1000,
        retry_seconds: float = 1.0,
    ) -> None:
        self._uow = uow
        self._automation = automation
        self._journal = journal
        self._sandbox = sandbox
        self._cron = cron
        self._fleet = fleet
        self._containers = containers
        self._incidents = incidents
        self._notifications = notifications
        self._bus = bus
        self._clock = clock
        self._queue_size = queue
        self._retry = retry_seconds
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._pending: Counter[int] = Counter()
        """Event ids dispatched and not yet handled by every rule they went to, with how many rules."""
        self._queued_deferred: set[tuple[str, str]] = set()
        self._dispatched = 0
        self._saved = -1
        self._recheck_up_to = 0
        """Events up to this id may have been handled before this process started (a run says so); those
        after it are new, and need no look in the store."""
        self.events_seen = 0
        """Journal events of a trigger's type taken in since this process started."""
        self.runs_recorded = 0
        self.failures = 0
        """Occurrences a rule's worker could not handle because of an unexpected error (a bug)."""
        self.claims_refused = 0
        """Runs not recorded nor applied because another leader term had claimed their event."""
        self.following = asyncio.Event()
        """Set once the engine follows the journal (events committed from then on reach it)."""
        self._closed = False
        """Set when the engine stopped (this replica stopped leading): nothing more is queued."""

    # -- the journal ------------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Recover what a crash interrupted, then follow the journal until `stopping` is set; a lost
        database is retried. Each call starts from the store, not from what this process did before: with
        several replicas, another one may have led (and handled events) since this one last did."""
        self._forget()
        while not stopping.is_set():
            try:
                if self._saved < 0:
                    await self.recover()
                await self._consume(stopping)
            except (WorpenError, FellBehind):
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._retry)
        await self.close()

    def _forget(self) -> None:
        """Drop what this process knew of its progress: the store says where to resume, and which events
        were handled already (their runs)."""
        self._closed = False
        self._saved = -1
        self._dispatched = 0
        self._recheck_up_to = 0
        self._pending.clear()
        self._queued_deferred.clear()
        self.following.clear()

    async def _consume(self, stopping: asyncio.Event) -> None:
        after = await self._position()
        stream = await self._journal.follow(after, EVENT_TYPES)
        self.following.set()
        async for event in until(stream, stopping):
            await self._dispatch(event)

    async def _position(self) -> int:
        """Where to resume: what this process dispatched already, else the stored cursor, else (the very
        first start) the newest event: history before automation existed is not replayed."""
        if self._dispatched:
            return self._dispatched
        async with self._uow() as tx:
            stored = await tx.progress.get(CURSOR)
        if stored is None:
            newest = await self._journal.read(None, 1)
            stored = newest[-1].id if newest else 0
            await self._save_cursor(stored)
        self._dispatched = self._saved = stored
        return stored

    async def _dispatch(self, event: RecordedEvent) -> None:
        if event.id <= self._dispatched:
            return  # this process dispatched it already
        self.events_seen += 1
        occurrence = occurrence_of(event)
        rules = (
            []
            if occurrence is None
            else [
                rule
                for rule in self._automation.active()
                if rule.fires_on(occurrence.trigger, occurrence.target)
            ]
        )
        self._dispatched = event.id
        if occurrence is None or not rules:
            return
        self._pending[event.id] += len(rules)
        for rule in rules:
            queue = self._queue(rule.id)
            if queue is not None:
                await queue.put(_Item(occurrence))

    def cursor(self) -> int:
        """The id up to which every event was handled by every rule it went to."""
        return min(self._pending) - 1 if self._pending else self._dispatched

    async def save_cursor(self) -> None:
        """Store the cursor if it moved (a periodic job: a restart resumes from there; events after it
        that were already handled are recognised by their runs)."""
        if self._saved >= 0 and self.cursor() != self._saved:
            await self._save_cursor(self.cursor())

    async def _save_cursor(self, position: int) -> None:
        async with self._uow() as tx:
            await tx.progress.set(CURSOR, position)
            await tx.commit()
        self._saved = position

    def _queue(self, rule_id: str) -> asyncio.Queue[_Item] | None:
        """The rule's queue (and worker), or None once the engine is closed: a periodic step that ends
        after the engine stopped must not start workers that outlive it."""
        if self._closed:
            return None
        queue = self._queues.get(rule_id)
        if queue is None:
            queue = self._queues[rule_id] = asyncio.Queue(self._queue_size)
            self._workers[rule_id] = asyncio.create_task(self._work(rule_id, queue), name=f"rule {rule_id}")
        return queue

    async def _work(self, rule_id: str, queue: asyncio.Queue[_Item]) -> None:
        while True:
            item = await queue.get()
            try:
                await self._handle_retrying(rule_id, item)
            except Exception:  # a bug: counted (/metrics), and the rule's worker goes on
                self.failures += 1
            finally:
                self._done(rule_id, item)
                queue.task_done()

    async def _handle_retrying(self, rule_id: str, item: _Item) -> None:
        """Handle one item; while the database is unavailable, try again (the rule waits, the others
        do not)."""
        await self._until_written(lambda: self._handle(rule_id, item, actor="automation"))

    def _done(self, rule_id: str, item: _Item) -> None:
        event_id = item.occurrence.event_id
        if item.deferred:
            self._queued_deferred.discard((rule_id, item.occurrence.key))
        elif event_id is not None:
            self._pending[event_id] -= 1
            if self._pending[event_id] <= 0:
                del self._pending[event_id]

    async def close(self) -> None:
        """Stop the workers; a plan being applied is left RUNNING, and recorded INTERRUPTED at the next
        start."""
        self._closed = True
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._workers.clear()
        self._queues.clear()

    def queued(self) -> int:
        """Occurrences waiting for their rule's worker."""
        return sum(queue.qsize() for queue in self._queues.values())

    async def idle(self) -> None:
        """Wait until every queued item was handled (for tests and benchmarks)."""
        await asyncio.gather(*(queue.join() for queue in list(self._queues.values())))

    # -- recovery, deferred plans, schedules --------------------------------------------------------------

    async def recover(self) -> int:
        """Record as INTERRUPTED the runs a crash left RUNNING, and give every node a remediation was left
        on back to its heartbeats (see Fleet.end_leftover_healing: this starts a term, no plan of this
        engine is being applied); how many runs."""
        async with self._uow() as tx:
            running = await tx.runs.running()
        now = self._clock.now()
        for run in running:
            interrupted = run.finish(
                RunStatus.INTERRUPTED,
                now,
                reason="Worpen stopped while the plan was applied; actions not listed as applied were not",
            )
            async with self._uow() as tx:
                await tx.runs.update(interrupted)
                await tx.commit()
            await self._bus.publish([RuleRan.of(interrupted)])
        await self._fleet.end_leftover_healing()
        async with self._uow() as tx:
            self._recheck_up_to = await tx.runs.newest_event_id() or 0
        if self._saved < 0:
            await self._position()
        return len(running)

    async def fire_due(self) -> int:
        """Queue the deferred plans whose wait is over; how many."""
        now = self._clock.now()
        async with self._uow() as tx:
            due = await tx.targets.due(now, 100)
        fired = 0
        for state in due:
            key = (state.rule_id, state.target)
            if key in self._queued_deferred:
                continue
            rule = self._automation.cached(state.rule_id)
            event = await self._event(state.pending_event_id)
            occurrence = None if event is None else occurrence_of(event)
            if rule is None or not rule.active or occurrence is None:
                state.pending_event_id = state.pending_due_at = None
                async with self._uow() as tx:
                    await tx.targets.save(state)
                    await tx.commit()
                continue
            queue = self._queue(rule.id)
            if queue is None:
                break
            self._queued_deferred.add(key)
            await queue.put(_Item(occurrence, deferred=True))
            fired += 1
        return fired

    async def _event(self, event_id: int | None) -> RecordedEvent | None:
        if event_id is None:
            return None
        found = await self._journal.read(event_id - 1, 1)
        return found[0] if found and found[0].id == event_id else None

    async def fire_schedules(self) -> int:
        """Run each SCHEDULE rule whose next cron slot has come, once: slots missed while Worpen was down
        are not replayed in a burst. How many were queued."""
        now = self._clock.now()
        fired = 0
        for rule in self._automation.active():
            if rule.trigger is not Trigger.SCHEDULE or rule.schedule is None:
                continue
            name = SCHEDULE_PREFIX + rule.id
            async with self._uow() as tx:
                last = await tx.progress.get(name)
            since = rule.updated_at if last is None else datetime.fromtimestamp(last, tz=now.tzinfo)
            slot = self._cron.next_after(rule.schedule, max(since, rule.updated_at))
            if slot > now or self._closed:
                continue
            async with self._uow() as tx:
                # The slot is claimed in the store: of two engines that saw it due (a leader deposed
                # while it looked, and the next), one fires it.
                claimed = await tx.progress.advance(name, last, int(now.timestamp()))
                await tx.commit()
            if not claimed:
                continue
            context: dict[str, JsonValue] = {
                "event": {
                    "type": "SCHEDULE",
                    "trigger": "SCHEDULE",
                    "time": plain(slot),
                    "schedule": rule.schedule,
                },
                "service": rule.target_service,
            }
            occurrence = Occurrence(
                Trigger.SCHEDULE, None, slot, rule.target_service, "", None, "scheduled run", context
            )
            queue = self._queue(rule.id)
            if queue is None:
                break
            await queue.put(_Item(occurrence))
            fired += 1
        return fired

    async def run_manual(self, principal: Principal, rule_id: str, command: ManualRun) -> AutomationRun:
        """An operator runs a MANUAL rule now; the finished run."""
        if not principal.can(Permission.OPERATE):
            raise Forbidden("running a rule needs the operator role")
        rule = await self._automation.get(rule_id)
        if rule.trigger is not Trigger.MANUAL:
            raise Conflict(f"only MANUAL rules are run by hand; {rule.name!r} fires on {rule.trigger.value}")
        if not rule.active:
            raise Conflict(f"rule {rule.name!r} is not active")
        now = self._clock.now()
        context: dict[str, JsonValue] = {
            "service": rule.target_service,
            **(command.context or {}),
            "event": {"type": "MANUAL", "trigger": "MANUAL", "time": plain(now), "by": principal.name},
        }
        node = context.get("node")
        occurrence = Occurrence(
            Trigger.MANUAL,
            None,
            now,
            str(context.get("service") or rule.target_service),
            node if isinstance(node, str) else "",
            None,
            "manual run",
            context,
        )
        run = await self._handle(rule.id, _Item(occurrence), actor=principal.name, rule=rule)
        if run is None:
            raise NotFound("rule", rule_id)
        return run

    # -- one occurrence ---------------------------------------------------------------------------------

    async def _handle(
        self, rule_id: str, item: _Item, *, actor: str, rule: AutomationRule | None = None
    ) -> AutomationRun | None:
        rule = rule or self._automation.cached(rule_id)
        if rule is None or not rule.active:
            return None
        occurrence = item.occurrence
        paced = occurrence.trigger in EVENT_TRIGGERS
        state: TargetState | None = None
        if item.deferred:
            state = await self._state(rule, occurrence)
            if state.pending_event_id != occurrence.event_id:
                return None  # superseded by a newer event, or cleared
        elif paced and occurrence.event_id is not None and occurrence.event_id <= self._recheck_up_to:
            async with self._uow() as tx:
                if await tx.runs.exists_for_event(rule.id, occurrence.event_id):
                    return None
        context, outcome = await self.evaluate(rule, occurrence)
        if paced and state is None and outcome.actions:
            state = await self._state(rule, occurrence)
        now = self._clock.now()
        run = AutomationRun(
            id="run_" + secrets.token_hex(8),
            rule_id=rule.id,
            rule_name=rule.name,
            trigger=occurrence.trigger.value,
            event_id=occurrence.event_id,
            target=occurrence.target,
            node=occurrence.node or None,
            status=RunStatus.RUNNING,
            matched=bool(outcome.actions),
            reason=None,
            context=context,
            plan=outcome.actions,
            applied=(),
            logs=outcome.logs,
            actor=actor,
            incident_id=None if state is None else state.incident_id,
            started_at=now,
            claim=_claim(item, state) if paced and occurrence.event_id is not None else None,
        )
        if item.deferred and state is not None and outcome.status is not ScriptStatus.SUCCESS:
            state.pending_event_id = state.pending_due_at = None  # tried once: not again every tick
        if outcome.status is not ScriptStatus.SUCCESS:
            return await self._finish(run.finish(RunStatus.FAILED, now, reason=_why(outcome)), state, outcome)
        if not outcome.actions:
            if item.deferred and state is not None:
                state.pending_event_id = state.pending_due_at = None
            return await self._finish(run.finish(RunStatus.NO_ACTION, now), state, outcome)
        missing = await self._notifications.missing(
            action.target for action in outcome.actions if action.type in NOTIFY_ACTIONS
        )
        if missing:
            if item.deferred and state is not None:
                state.pending_event_id = state.pending_due_at = None
            reason = f"the plan names channels that do not exist: {', '.join(missing)}"
            return await self._finish(run.finish(RunStatus.FAILED, now, reason=reason), state, outcome)
        acts = _acts(outcome.actions)
        decision = Decision(Verdict.RUN)
        claimed = False
        if state is not None:
            decision = state.decide(now, rule.storm, acts=acts)
            if not item.deferred:
                # The run is claimed before the incident is reported: a claim refused (another leader
                # term took this event) leaves no trace. From here on nothing retries the whole item.
                if await self._finish(run, None, None) is None:
                    return None
                claimed = True
                incident = await self._until_written(
                    lambda: self._incidents.report(
                        IncidentReport(
                            service=occurrence.target,
                            node=occurrence.node,
                            issue=occurrence.issue,
                            action=_summary(outcome.actions),
                            trigger=occurrence.trigger.value,
                            rule_id=rule.id,
                            message=f"{occurrence.issue}; rule {rule.name}: {decision.verdict.value.lower()}",
                        )
                    )
                )
                state.incident_id = incident.id
                run = replace(run, incident_id=incident.id)
        match decision.verdict:
            case Verdict.DEFER:
                assert state is not None
                assert decision.due is not None
                state.defer(occurrence.event_id, decision.due)
                deferred = run.finish(RunStatus.DEFERRED, now, reason=decision.reason)
                return await self._record(deferred, state, outcome, claimed=claimed)
            case Verdict.SUPPRESS:
                suppressed = run.finish(RunStatus.SUPPRESSED, now, reason=decision.reason)
                return await self._record(suppressed, state, outcome, claimed=claimed)
            case Verdict.GIVE_UP:
                assert state is not None
                gave_up = run.finish(RunStatus.GAVE_UP, now, reason=decision.reason)
                finished = await self._record(gave_up, state, outcome, claimed=claimed)
                if finished is not None:
                    await self._give_up(rule, occurrence, state, decision.reason or "")
                return finished
        if state is not None:
            state.ran(now, rule.storm, acts=acts)
        # RUNNING, written before anything is applied
        if await self._record(run, state, outcome, claimed=claimed) is None:
            return None
        applied, failure, incident_id = await self._apply(rule, occurrence, run)
        if state is not None:
            state.incident_id = incident_id
        status = RunStatus.FAILED if failure else RunStatus.SUCCEEDED
        done = run.finish(status, self._clock.now(), reason=failure, applied=applied, incident_id=incident_id)
        # The plan was applied: record how it ended (never apply it again, as a retry of the whole
        # occurrence would).
        return await self._until_written(lambda: self._finish(done, state, None, update=True))

    async def _until_written(self, write: Callable[[], Awaitable[T]]) -> T:
        """`write()`, tried again while the store is unavailable (the rule's worker waits, not others)."""
        delay = self._retry
        while True:
            try:
                return await write()
            except WorpenError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)

    async def _record(
        self, run: AutomationRun, state: TargetState | None, outcome: ScriptOutcome, *, claimed: bool
    ) -> AutomationRun | None:
        """Record the run: a run already claimed is updated (retried while the store is unavailable, as
        its claim is taken), otherwise its insert is the claim (None when refused)."""
        if claimed:
            return await self._until_written(lambda: self._finish(run, state, outcome, update=True))
        return await self._finish(run, state, outcome)

    async def _state(self, rule: AutomationRule, occurrence: Occurrence) -> TargetState:
        async with self._uow() as tx:
            found = await tx.targets.get(rule.id, occurrence.key)
        return found or TargetState(rule.id, occurrence.key)

    async def _finish(
        self,
        run: AutomationRun,
        state: TargetState | None,
        outcome: ScriptOutcome | None,
        *,
        update: bool = False,
    ) -> AutomationRun | None:
        """Record the run (and the target's state, and the rule's last run) in one transaction, then tell
        the log. None when the store refused the run's claim: another leader term recorded a run of this
        rule for the same event (and so applied it, or will), so nothing of this one is written."""
        async with self._uow() as tx:
            if update:
                await tx.runs.update(run)
            elif not await tx.runs.add(run):
                self.claims_refused += 1
                log.info(
                    "automation.claim_refused rule=%s event=%s claim=%r: handled by another leader term",
                    run.rule_name,
                    run.event_id,
                    run.claim,
                )
                return None
            else:
                await tx.rules.mark_run(run.rule_id, run.started_at)
            if state is not None:
                await tx.targets.save(state)
            await tx.commit()
        if not update:
            self.runs_recorded += 1
            self._automation.ran(run.rule_id, run)
        events: list[Event] = []
        if outcome is not None:
            events.extend(
                ScriptLogged(run.id, run.rule_name, line.level, line.message, run.started_at)
                for line in outcome.logs
            )
        if run.status not in (RunStatus.RUNNING, RunStatus.NO_ACTION):
            events.append(RuleRan.of(run))
        if events:
            await self._bus.publish(events)
        return run

    async def _give_up(
        self, rule: AutomationRule, occurrence: Occurrence, state: TargetState, reason: str
    ) -> None:
        if state.incident_id is not None:
            await self._incidents.fail(state.incident_id, f"rule {rule.name} gave up: {reason}")
        event = RemediationGaveUp(
            rule.id,
            rule.name,
            occurrence.target,
            occurrence.node or None,
            len(state.attempts),
            state.incident_id,
            self._clock.now(),
        )
        await self._bus.publish([event])

    # -- applying a plan --------------------------------------------------------------------------------

    async def _apply(
        self, rule: AutomationRule, occurrence: Occurrence, run: AutomationRun
    ) -> tuple[tuple[AppliedAction, ...], str | None, str | None]:
        """Apply the plan in order, stopping at the first failure (what follows is recorded as not
        applied). While it acts on containers, the node's agent is HEALING."""
        principal = Principal(rule.updated_by_key_id, rule.actor, Role.ADMIN)
        incident_id = run.incident_id
        applied: list[AppliedAction] = []
        failure: str | None = None
        healing = occurrence.node if occurrence.node and _acts(run.plan) else None
        if healing is not None:
            try:
                await self._fleet.begin_healing(healing, f"rule {rule.name}: {_summary(run.plan)}")
            except WorpenError:
                healing = None  # the status could not be written: the remediation goes on without it
        try:
            for action in run.plan:
                if failure is not None:
                    applied.append(AppliedAction(action, False, "not applied: an earlier action failed"))
                    continue
                try:
                    detail, incident_id = await self._act(
                        principal, rule, occurrence, action, run, incident_id
                    )
                except WorpenError as exc:
                    failure = f"{action.type.value}({action.target}) failed: {exc.detail}"
                    applied.append(AppliedAction(action, False, exc.detail))
                    if action.type in CONTAINER_ACTIONS:
                        await self._note(incident_id, f"{rule.actor}: {failure}")
                else:
                    applied.append(AppliedAction(action, True, detail))
        finally:
            if healing is not None:
                node = healing
                await self._until_written(lambda: self._fleet.end_healing(node))
        return tuple(applied), failure, incident_id

    async def _act(
        self,
        principal: Principal,
        rule: AutomationRule,
        occurrence: Occurrence,
        action: Action,
        run: AutomationRun,
        incident_id: str | None,
    ) -> tuple[str, str | None]:
        """Apply one action; what it did, and the run's incident after it."""
        node = occurrence.node or None
        match action.type:
            case ActionType.DOCKER_RESTART | ActionType.DOCKER_STOP | ActionType.DOCKER_START:
                verb = {
                    ActionType.DOCKER_RESTART: (self._containers.restart, "restarted"),
                    ActionType.DOCKER_STOP: (self._containers.stop, "stopped"),
                    ActionType.DOCKER_START: (self._containers.start, "started"),
                }[action.type]
                container = await verb[0](principal, action.target, node)
                detail = f"{verb[1]} {container.name} on {container.node}"
                summary = f"{action.type.value} {container.name}"
                await self._note(incident_id, f"{rule.actor} {detail}", summary)
                return detail, incident_id
            case ActionType.DOCKER_PRUNE:
                report = await self._containers.prune(principal, node, PruneRequest())
                detail = f"pruned {report.node}: {report.reclaimed_bytes} bytes reclaimed"
                await self._note(incident_id, f"{rule.actor} {detail}", "docker.prune")
                return detail, incident_id
            case ActionType.INCIDENT_OPEN:
                severity = str(action.params.get("severity") or Severity.HIGH.value)
                try:
                    level = Severity(severity)
                except ValueError:
                    raise InvalidInput(f"unknown severity {severity!r}", "severity") from None
                incident = await self._incidents.report(
                    IncidentReport(
                        service=occurrence.target or rule.target_service,
                        node=occurrence.node,
                        issue=action.target,
                        severity=level,
                        rule_id=rule.id,
                        message=f"opened by {rule.actor}",
                    )
                )
                return f"incident {incident.id} ({incident.status.value})", incident.id
            case ActionType.INCIDENT_RESOLVE:
                if incident_id is None:
                    return "no incident to resolve", None
                notes = str(action.params.get("notes") or "")
                try:
                    await self._incidents.resolve(
                        incident_id, by=rule.actor, method=ResolutionMethod.AUTO, notes=notes
                    )
                except Conflict:
                    return f"incident {incident_id} was already resolved", incident_id
                return f"resolved incident {incident_id}", incident_id
            case ActionType.NOTIFY_SLACK:
                text = str(action.params.get("text", ""))
                delivery = await self._notifications.enqueue(action.target, {"text": text}, run.id, rule.name)
                return f"notification {delivery} queued for {action.target}", incident_id
            case ActionType.NOTIFY_WEBHOOK:
                body: dict[str, JsonValue] = {
                    "data": action.params.get("payload"),
                    "trigger": occurrence.trigger.value,
                    "service": occurrence.target,
                    "node": occurrence.node,
                    "eventId": occurrence.event_id,
                    "incidentId": incident_id,
                }
                delivery = await self._notifications.enqueue(action.target, body, run.id, rule.name)
                return f"notification {delivery} queued for {action.target}", incident_id
        raise InvalidInput(f"unknown action {action.type}", "plan")

    async def _note(self, incident_id: str | None, message: str, action: str | None = None) -> None:
        """A remediation step in the incident's timeline. Best effort: the run records what was done
        whether or not the timeline could be written, and an applied action is never reported failed
        for it."""
        if incident_id is not None:
            with contextlib.suppress(WorpenError):
                await self._incidents.step(incident_id, message, action)

    # -- what a script sees -----------------------------------------------------------------------------

    async def evaluate(
        self, rule: AutomationRule, occurrence: Occurrence
    ) -> tuple[dict[str, JsonValue], ScriptOutcome]:
        """The context the rule's script sees for `occurrence`, and what the script made of it."""
        context = await self.context(occurrence)
        return context, await self._sandbox.run(rule.script, context, self._automation.limits)

    async def context(self, occurrence: Occurrence) -> dict[str, JsonValue]:
        """The occurrence's context, with the node's agent and its latest readings when the node is an
        agent (what the event itself says of a metric wins)."""
        context = dict(occurrence.context)
        if not occurrence.node:
            return context
        try:
            agent = self._fleet.get(occurrence.node)
        except NotFound:
            return context
        context["agent"] = {
            "id": agent.id,
            "name": agent.name,
            "status": agent.status.value,
            "ip": agent.ip,
            "os": agent.os,
            "version": agent.version,
            "last_seen": plain(agent.last_seen),
        }
        readings = agent.readings
        metrics: dict[str, JsonValue] = {"cpu": readings.cpu, METRIC_NAMES["memory"]: readings.ram}
        if readings.disk is not None:
            metrics[METRIC_NAMES["disk"]] = readings.disk
        given = occurrence.context.get("metrics")
        if isinstance(given, dict):
            metrics |= {name: value for name, value in given.items() if value is not None}
        context["metrics"] = metrics
        return context

    # -- backtests --------------------------------------------------------------------------------------

    async def backtest(self, rule_id: str | None, command: Backtest, principal: Principal) -> BacktestReport:
        """Replay the journal's events between `since` and `until` through the rule (a saved one, or the
        command's draft): its trigger, target filter and script in the sandbox, and the storm
        protection's state machine — with no side effects."""
        if not principal.can(Permission.OPERATE):
            raise Forbidden("backtests need the operator role")
        if command.until <= command.since:
            raise InvalidInput("must be after since", "until")
        if command.draft is not None:
            draft = await self._automation.check(command.draft)
            rule = draft.rule("draft", self._clock.now(), principal.name, principal.key_id)
        elif rule_id is not None:
            rule = await self._automation.get(rule_id)
        else:
            raise InvalidInput("name a saved rule or give a draft", "rule")
        if rule.trigger not in EVENT_TRIGGERS:
            raise InvalidInput(
                f"{rule.trigger.value} rules are not fired by events: there is nothing to replay", "trigger"
            )
        replay = _Replay(self, rule)
        matched = 0
        truncated = False
        async for event in _history(self._journal, event_types(rule.trigger), command.since, command.until):
            occurrence = occurrence_of(event)
            if (
                occurrence is None
                or occurrence.trigger is not rule.trigger
                or not rule.targets(occurrence.target)
            ):
                continue
            if matched == command.limit:
                truncated = True
                break
            matched += 1
            await replay.until(occurrence.at)
            await replay.event(occurrence)
        await replay.until(command.until)
        return replay.report(command, matched, truncated)


async def _history(
    journal: EventJournal, types: frozenset[str], since: datetime, until_: datetime
) -> AsyncIterator[RecordedEvent]:
    """The journal's events of `types` between two times, oldest first, read in pages."""
    after = 0
    while page := await journal.read(after, 500, types):
        for event in page:
            if event.at > until_:
                return
            if event.at >= since:
                yield event
        after = page[-1].id


class _Replay:
    """The storm protection and the sandbox, replayed: the same state machine as live, with deferred
    plans run when their wait ends (unless a later event superseded them)."""

    def __init__(self, engine: RuleEngine, rule: AutomationRule) -> None:
        self._engine = engine
        self._rule = rule
        self._states: dict[str, TargetState] = {}
        self._waiting: dict[str, Occurrence] = {}
        self.items: list[BacktestItem] = []

    async def until(self, at: datetime) -> None:
        """Run the deferred plans due at or before `at`, in time order."""
        while True:
            due = [
                (state.pending_due_at, key)
                for key, state in self._states.items()
                if key in self._waiting and state.pending_due_at is not None and state.pending_due_at <= at
            ]
            if not due:
                return
            when, key = min(due)
            await self.event(self._waiting.pop(key), when, deferred=True)

    async def event(
        self, occurrence: Occurrence, at: datetime | None = None, *, deferred: bool = False
    ) -> None:
        now = at or occurrence.at
        _, outcome = await self._engine.evaluate(self._rule, occurrence)
        state = self._states.setdefault(occurrence.key, TargetState(self._rule.id, occurrence.key))
        if outcome.status is not ScriptStatus.SUCCESS:
            verdict, reason = "ERROR", _why(outcome)
        elif not outcome.actions:
            verdict, reason = "NO_ACTION", None
            if deferred:
                state.pending_event_id = state.pending_due_at = None
        else:
            acts = _acts(outcome.actions)
            decision = state.decide(now, self._rule.storm, acts=acts)
            verdict, reason = decision.verdict.value, decision.reason
            if decision.verdict is Verdict.DEFER and decision.due is not None:
                state.defer(occurrence.event_id, decision.due)
                self._waiting[occurrence.key] = occurrence
            elif decision.verdict is Verdict.RUN:
                state.ran(now, self._rule.storm, acts=acts)
                self._waiting.pop(occurrence.key, None)
            elif decision.verdict is Verdict.GIVE_UP:
                self._waiting.pop(occurrence.key, None)
        self.items.append(
            BacktestItem(
                occurrence.event_id,
                now,
                occurrence.trigger.value,
                occurrence.target,
                occurrence.node,
                verdict,
                reason,
                outcome,
                deferred,
            )
        )

    def report(self, command: Backtest, matched: int, truncated: bool) -> BacktestReport:
        runs = [item for item in self.items if item.verdict == Verdict.RUN.value]
        actions = Counter(action.type.value for item in runs for action in item.outcome.actions)
        verdicts = Counter(item.verdict for item in self.items)
        ran_deferred = {item.event_id for item in runs if item.deferred}
        superseded = sum(
            1
            for item in self.items
            if item.verdict == Verdict.DEFER.value and item.event_id not in ran_deferred
        )
        return BacktestReport(
            rule=self._rule.name,
            since=command.since,
            until=command.until,
            events_matched=matched,
            items=tuple(self.items),
            runs=len(runs),
            actions=dict(sorted(actions.items())),
            targets=tuple(sorted({_key(item) for item in runs if _acts(item.outcome.actions)})),
            deferred=verdicts[Verdict.DEFER.value],
            suppressed=superseded + verdicts[Verdict.SUPPRESS.value] + verdicts[Verdict.GIVE_UP.value],
            gave_up=verdicts[Verdict.GIVE_UP.value],
            errors=verdicts["ERROR"],
            truncated=truncated,
        )


def _claim(item: _Item, state: TargetState | None) -> str:
    """What an event's run claims: the event's first handling, or its deferred plan due at a time (a plan
    deferred again is due at another)."""
    if item.deferred and state is not None and state.pending_due_at is not None:
        return f"deferred {state.pending_due_at.isoformat()}"
    return "event"


def _key(item: BacktestItem) -> str:
    return f"{item.node}/{item.target}" if item.node else item.target


def _acts(plan: Sequence[Action]) -> bool:
    """Whether a plan acts on containers: such runs are attempts (backoff, give-up)."""
    return any(action.type in CONTAINER_ACTIONS for action in plan)


def _summary(plan: Sequence[Action]) -> str:
    text = ", ".join(f"{action.type.value} {action.target}".strip() for action in plan)
    return text if len(text) <= 500 else text[:499] + "…"


def _why(outcome: ScriptOutcome) -> str:
    error = outcome.error
    where = "" if error is None or error.line is None else f" at line {error.line}, column {error.column}"
    message = "" if error is None else f": {error.message}"
    return f"script {outcome.status.value}{where}{message}"
