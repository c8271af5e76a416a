"""The pipelines' use cases: definitions, triggers (manual, push webhook, cron), runs and their
decisions, stage logs, secrets."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from worpen_core.access.model import Permission, Principal
from worpen_core.audit.service import AuditTrail
from worpen_core.pipelines.commands import PipelineDraft, pipeline_of, stages_of
from worpen_core.pipelines.executor import PipelineExecutor
from worpen_core.pipelines.feed import StageEnded, StageFeed
from worpen_core.pipelines.model import (
    Pipeline,
    PipelineRun,
    PipelineSecret,
    RunQuery,
    RunStatus,
    StageLogLine,
    StageRun,
    StageSpec,
    TriggerKind,
    check_name,
)
from worpen_core.pipelines.ports import (
    PipelinesUnitOfWorkFactory,
    RequestAction,
    SecretCipher,
    SourceFetcher,
)
from worpen_core.shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from worpen_core.shared.ports import Clock, CronSchedule

MAX_SECRET_BYTES = 64 * 1024
MAX_WEBHOOK_SECRET = 256
MIN_WEBHOOK_SECRET = 8
LOG_PAGE = 500
_branch = re.compile(r"^(?!/|.*\.\.|.*//|.*@\{|.*\.lock$|.*/$)[A-Za-z0-9._/+-]{1,255}$")
_commit = re.compile(r"^[0-9a-fA-F]{4,64}$")
_hex_digest = re.compile(r"^[0-9a-f]{64}$")
MAX_MISSED_SLOTS = 100_000
"""Slots looked through to find the latest one missed (a minutely schedule missed for over two months)."""


@dataclass(frozen=True, slots=True)
class PushEvent:
    """A push as a Gitea or GitHub webhook describes it."""

    repositories: tuple[str, ...]
    """The URLs the forge gives for the repository (clone, html, ssh)."""
    branch: str | None
    """None when the push was not to a branch (a tag)."""
    commit: str | None
    """The sha the branch now points at; None when the branch was deleted."""
    pusher: str


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    run: PipelineRun
    stopped: bool
    """Whether containers had to be stopped (the run was under way)."""


class Pipelines:
    def __init__(
        self,
        uow: PipelinesUnitOfWorkFactory,
        executor: PipelineExecutor,
        fetcher: SourceFetcher,
        cipher: SecretCipher,
        cron: CronSchedule,
        audit: AuditTrail,
        clock: Clock,
        feed: StageFeed,
        default_timeout_seconds: int = 3600,
    ) -> None:
        self._uow = uow
        self._executor = executor
        self._fetcher = fetcher
        self._cipher = cipher
        self._cron = cron
        self._audit = audit
        self._clock = clock
        self._feed = feed
        self._default_timeout = default_timeout_seconds

    # Definitions

    async def definitions(self) -> list[Pipeline]:
        async with self._uow() as tx:
            return await tx.pipelines.list_all()

    async def definition(self, pipeline_id: str) -> Pipeline:
        async with self._uow() as tx:
            pipeline = await tx.pipelines.get(pipeline_id)
        if pipeline is None:
            raise NotFound("pipeline", pipeline_id)
        return pipeline

    def check(self, draft: PipelineDraft) -> tuple[StageSpec, ...]:
        """The draft's stages, or InvalidInput naming the field (and the stage) at fault."""
        check_name(draft.id, "id")
        if not draft.name.strip() or len(draft.name) > 200:
            raise InvalidInput("must be 1-200 characters", "name")
        why = self._fetcher.check(draft.repository)
        if why is not None:
            raise InvalidInput(why, "repository")
        _check_branch(draft.branch, "branch")
        if draft.cron is not None:
            why = self._cron.check(draft.cron)
            if why is not None:
                raise InvalidInput(f"not a cron expression: {why}", "triggers.cron")
        secret = draft.webhook_secret
        if secret and not MIN_WEBHOOK_SECRET <= len(secret) <= MAX_WEBHOOK_SECRET:
            raise InvalidInput(
                f"must be {MIN_WEBHOOK_SECRET}-{MAX_WEBHOOK_SECRET} characters", "triggers.webhookSecret"
            )
        return stages_of(draft.stages, self._default_timeout)

    async def create(self, principal: Principal, draft: PipelineDraft) -> Pipeline:
        _operator(principal)
        stages = self.check(draft)
        sealed = self._cipher.seal(draft.webhook_secret) if draft.webhook_secret else None
        pipeline = pipeline_of(draft, stages, self._clock.now(), principal.name, sealed)

        async def add() -> Pipeline:
            async with self._uow() as tx:
                if await tx.pipelines.get(pipeline.id) is not None:
                    raise Conflict(f"a pipeline with id {pipeline.id!r} exists")
                await tx.pipelines.add(pipeline)
                await tx.commit()
            return pipeline

        return await self._audit.run(principal, "pipeline.create", pipeline.id, None, add)

    async def update(self, principal: Principal, pipeline_id: str, draft: PipelineDraft) -> Pipeline:
        """Replace the definition; runs under way keep the stages they started with. A draft without a
        webhook secret keeps the stored one; an empty one removes it."""
        _operator(principal)
        if draft.id != pipeline_id:
            raise InvalidInput(f"the id is {pipeline_id!r} (ids cannot change)", "id")
        stages = self.check(draft)
        current = await self.definition(pipeline_id)
        if draft.webhook_secret is None:
            sealed = current.webhook_secret
        else:
            sealed = self._cipher.seal(draft.webhook_secret) if draft.webhook_secret else None
        pipeline = pipeline_of(draft, stages, self._clock.now(), principal.name, sealed, current.created_at)

        async def save() -> Pipeline:
            async with self._uow() as tx:
                await tx.pipelines.update(pipeline)
                await tx.commit()
            return pipeline

        return await self._audit.run(principal, "pipeline.update", pipeline.id, None, save)

    async def delete(self, principal: Principal, pipeline_id: str) -> None:
        """Forget the definition; its runs stay in the history (and those under way finish)."""
        _operator(principal)

        async def remove() -> None:
            async with self._uow() as tx:
                if not await tx.pipelines.delete(pipeline_id):
                    raise NotFound("pipeline", pipeline_id)
                await tx.commit()

        await self._audit.run(principal, "pipeline.delete", pipeline_id, None, remove)

    async def overview(self) -> list[tuple[Pipeline, PipelineRun | None]]:
        """Every pipeline with its newest run (the cockpit's list)."""
        async with self._uow() as tx:
            pipelines = await tx.pipelines.list_all()
            latest = await tx.pipeline_runs.latest()
        return [(pipeline, latest.get(pipeline.id)) for pipeline in pipelines]

    # Triggers

    async def trigger(
        self, principal: Principal, pipeline_id: str, branch: str | None = None, commit: str | None = None
    ) -> PipelineRun:
        _operator(principal)
        if branch is not None:
            _check_branch(branch, "branch")
        if commit is not None and not _commit.match(commit):
            raise InvalidInput("must be a commit sha (4-64 hex digits)", "commit")
        pipeline = await self.definition(pipeline_id)

        async def queue() -> PipelineRun:
            return await self._queue(
                pipeline, TriggerKind.MANUAL, principal.name, branch or pipeline.branch, commit
            )

        return await self._audit.run(principal, "pipeline.trigger", pipeline_id, None, queue)

    async def webhook(self, body: bytes, signature: str | None, push: PushEvent) -> list[PipelineRun]:
        """Start a run of each pipeline of the pushed repository and branch whose secret signed `body`
        (HMAC-SHA256, hex). Unauthenticated when no pipeline of the repository accepts the signature."""
        wanted = {_repository_key(url) for url in push.repositories if url}
        async with self._uow() as tx:
            candidates = [
                pipeline
                for pipeline in await tx.pipelines.list_all()
                if pipeline.webhook_secret is not None and _repository_key(pipeline.repository) in wanted
            ]
        signed = [pipeline for pipeline in candidates if self._signed(pipeline, body, signature)]
        if not signed:
            raise Unauthenticated(
                "the signature is missing or matches no pipeline of this repository (X-Hub-Signature-256 "
                "or X-Gitea-Signature: HMAC-SHA256 of the body with the pipeline's webhook secret)"
            )
        if push.branch is None or push.commit is None or set(push.commit) == {"0"}:
            return []
        return [
            await self._queue(
                pipeline, TriggerKind.WEBHOOK, f"webhook:{push.pusher}", push.branch, push.commit
            )
            for pipeline in signed
            if pipeline.branch == push.branch
        ]

    def _signed(self, pipeline: Pipeline, body: bytes, signature: str | None) -> bool:
        given = (signature or "").removeprefix("sha256=").strip().lower()
        if not _hex_digest.match(given) or pipeline.webhook_secret is None:
            return False
        try:
            key = self._cipher.open(pipeline.webhook_secret).encode()
        except InvalidInput:  # sealed with a key Worpen no longer has: this pipeline cannot verify
            return False
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), given.encode())

    async def fire_schedules(self) -> int:
        """Start a run of each pipeline whose cron slot came. Slots missed while Worpen was down start one
        run, not one per slot (like a Kubernetes CronJob), and each slot starts one run however often
        this is called."""
        now = self._clock.now()
        started = 0
        async with self._uow() as tx:
            scheduled = [
                (pipeline, pipeline.cron) for pipeline in await tx.pipelines.list_all() if pipeline.cron
            ]
        for pipeline, cron in scheduled:
            async with self._uow() as tx:
                last = await tx.pipelines.cron_slot(pipeline.id)
            since = max(last or pipeline.updated_at, pipeline.updated_at)
            slot = self._cron.next_after(cron, since)
            if slot > now:
                continue
            for _ in range(
                MAX_MISSED_SLOTS
            ):  # the latest slot that came: missed ones start no run of their own
                following = self._cron.next_after(cron, slot)
                if following > now:
                    break
                slot = following
            async with self._uow() as tx:
                claimed = await tx.pipelines.claim_cron_slot(pipeline.id, slot)
                await tx.commit()
            if claimed:
                await self._queue(pipeline, TriggerKind.CRON, "cron", pipeline.branch, None)
                started += 1
        return started

    async def _queue(
        self,
        pipeline: Pipeline,
        kind: TriggerKind,
        by: str,
        branch: str,
        commit: str | None,
        parent: PipelineRun | None = None,
        stages: Sequence[StageSpec] | None = None,
    ) -> PipelineRun:
        run = PipelineRun(
            id="run_" + secrets.token_hex(8),
            pipeline_id=pipeline.id,
            pipeline_name=pipeline.name,
            number=0,
            status=RunStatus.PENDING,
            trigger=kind,
            triggered_by=by,
            repository=pipeline.repository,
            branch=branch,
            commit=commit,
            created_at=self._clock.now(),
            stages=[StageRun(spec) for spec in (stages or pipeline.stages)],
            keep_on_failure=pipeline.keep_on_failure,
            parent_id=parent.id if parent else None,
        )
        async with self._uow() as tx:
            run.number = await tx.pipeline_runs.add(run)
            await tx.commit()
        self._executor.wake()
        return run

    # Runs

    async def runs(self, query: RunQuery) -> list[PipelineRun]:
        async with self._uow() as tx:
            return await tx.pipeline_runs.query(query)

    async def run(self, run_id: str) -> PipelineRun:
        async with self._uow() as tx:
            run = await tx.pipeline_runs.get(run_id)
        if run is None:
            raise NotFound("run", run_id)
        return run

    async def cancel(self, principal: Principal, run_id: str) -> PipelineRun:
        """Cancel a queued or running run (Conflict once it finished); returns it once its containers
        stopped."""
        _operator(principal)

        async def cancel() -> PipelineRun:
            run = await self.run(run_id)
            if run.status.finished:
                raise Conflict(f"run {run_id} already finished ({run.status.value})")
            if run.status is RunStatus.PENDING:
                async with self._uow() as tx:
                    cancelled = await tx.pipeline_runs.cancel_pending(
                        run_id, principal.name, self._clock.now()
                    )
                    await tx.commit()
                if cancelled:
                    run = await self.run(run_id)
                    await self._executor.cancelled_while_queued(run)
                    return run
            if not self._executor.drives(run_id) and self._executor.relays:
                # Another replica drives it: that one stops its containers and answers.
                await self._executor.relay(run_id, "cancel", None, principal.name)
                return await self.run(run_id)
            if not await self._executor.cancel(run_id, principal.name):
                raise Conflict(f"run {run_id} is being placed on a node; try again in a moment")
            await self._executor.wait_finished(run_id, self._executor.settings.stop_grace_seconds + 10)
            return await self.run(run_id)

        return await self._audit.run(principal, "pipeline.cancel", run_id, None, cancel)

    async def rerun(self, principal: Principal, run_id: str) -> PipelineRun:
        """Run again the same commit with the same stages as `run_id` (its definition may have changed)."""
        _operator(principal)
        original = await self.run(run_id)

        async def queue() -> PipelineRun:
            pipeline = await self._pipeline_of(original)
            return await self._queue(
                pipeline,
                TriggerKind.RERUN,
                principal.name,
                original.branch,
                original.commit,
                parent=original,
                stages=[stage.spec for stage in original.stages],
            )

        return await self._audit.run(principal, "pipeline.rerun", run_id, None, queue)

    async def _pipeline_of(self, run: PipelineRun) -> Pipeline:
        """The run's pipeline, or (deleted since) one made of the run itself."""
        async with self._uow() as tx:
            pipeline = await tx.pipelines.get(run.pipeline_id)
        if pipeline is not None:
            return pipeline
        now = self._clock.now()
        specs = tuple(stage.spec for stage in run.stages)
        return Pipeline(
            run.pipeline_id, run.pipeline_name, run.repository, run.branch, specs, now, now, "rerun"
        )

    async def approve(self, principal: Principal, run_id: str, stage: str) -> PipelineRun:
        return await self._decide(principal, run_id, stage, approve=True)

    async def decline(self, principal: Principal, run_id: str, stage: str) -> PipelineRun:
        return await self._decide(principal, run_id, stage, approve=False)

    async def _decide(self, principal: Principal, run_id: str, stage: str, *, approve: bool) -> PipelineRun:
        _operator(principal)
        run = await self.run(run_id)
        run.stage(stage)
        action = "pipeline.approve" if approve else "pipeline.decline"

        async def decide() -> PipelineRun:
            if not self._executor.drives(run_id) and self._executor.relays:
                current = await self.run(run_id)
                if current.status.finished or current.status is RunStatus.PENDING:  # no replica drives it
                    raise Conflict(f"run {run_id} is not waiting for an approval")
                asked: RequestAction = "approve" if approve else "decline"
                await self._executor.relay(run_id, asked, stage, principal.name)
            else:
                await self._executor.decide(run_id, stage, approve=approve, by=principal.name)
            return await self.run(run_id)

        return await self._audit.run(principal, action, f"{run_id}/{stage}", run.node, decide)

    # Logs

    async def logs(self, run_id: str, stage: str, after: int, limit: int) -> list[StageLogLine]:
        run = await self.run(run_id)
        run.stage(stage)
        async with self._uow() as tx:
            return await tx.stage_logs.read(run_id, stage, after, limit)

    async def follow(self, run_id: str, stage: str, after: int) -> AsyncIterator[StageLogLine | StageEnded]:
        """The stage's lines numbered above `after` from the store, then live as they are stored, ending
        with the stage's final status: no gap and no duplicate (the follower listens before it reads)."""
        follower = self._feed.follow(run_id, stage)
        try:
            (await self.run(run_id)).stage(stage)
            last = after
            while True:
                async for line in self._stored(run_id, stage, last):
                    last = line.number
                    yield line
                current = (await self.run(run_id)).stage(stage)
                if current.status.finished:
                    async for line in self._stored(run_id, stage, last):
                        last = line.number
                        yield line
                    yield StageEnded(current.status)
                    return
                while True:
                    item = await follower.get()
                    if item is None:  # it fell behind: read what it missed from the store
                        follower.resume(self._feed.capacity)
                        break
                    if isinstance(item, StageEnded):
                        async for line in self._stored(run_id, stage, last):
                            last = line.number
                            yield line
                        yield item
                        return
                    if item.number <= last:
                        continue
                    if item.number > last + 1:
                        break
                    last = item.number
                    yield item
        finally:
            self._feed.leave(run_id, stage, follower)

    async def _stored(self, run_id: str, stage: str, after: int) -> AsyncIterator[StageLogLine]:
        while True:
            async with self._uow() as tx:
                lines = await tx.stage_logs.read(run_id, stage, after, LOG_PAGE)
            for line in lines:
                yield line
            if len(lines) < LOG_PAGE:
                return
            after = lines[-1].number

    # Secrets

    async def secrets(self) -> list[PipelineSecret]:
        async with self._uow() as tx:
            return await tx.secrets.list_all()

    async def put_secret(self, principal: Principal, name: str, value: str) -> tuple[PipelineSecret, bool]:
        """Store a secret (encrypted); returns it and whether it is new."""
        _admin(principal)
        check_name(name, "name")
        if not value or len(value.encode()) > MAX_SECRET_BYTES:
            raise InvalidInput(f"must be 1 to {MAX_SECRET_BYTES} bytes", "value")
        now = self._clock.now()
        secret = PipelineSecret(name, self._cipher.seal(value), now, now, principal.name)

        async def put() -> tuple[PipelineSecret, bool]:
            async with self._uow() as tx:
                created = await tx.secrets.put(secret)
                await tx.commit()
                stored = await tx.secrets.get_many([name])
            return stored.get(name, secret), created

        return await self._audit.run(principal, "secret.put", name, None, put)

    async def delete_secret(self, principal: Principal, name: str) -> None:
        _admin(principal)

        async def remove() -> None:
            async with self._uow() as tx:
                if not await tx.secrets.delete(name):
                    raise NotFound("secret", name)
                await tx.commit()

        await self._audit.run(principal, "secret.delete", name, None, remove)


def _operator(principal: Principal) -> None:
    if not principal.can(Permission.OPERATE):
        raise Forbidden("only operators and admins change pipelines and their runs")


def _admin(principal: Principal) -> None:
    if not principal.can(Permission.ADMIN):
        raise Forbidden("only admins write pipeline secrets")


def _check_branch(branch: str, field: str) -> None:
    if not _branch.match(branch):
        raise InvalidInput("must be a branch name such as 'main' or 'release/1.2'", field)


def _repository_key(url: str) -> str:
    """A repository URL reduced to what identifies it: host and path, without scheme, credentials,
    `.git` or trailing slashes (so a push's clone_url matches a definition's https URL)."""
    text = url.strip()
    if "://" not in text and re.match(r"^[^@/]+@[^:/]+:", text):  # scp-like: git@host:owner/repo
        user_host, _, path = text.partition(":")
        text = f"ssh://{user_host}/{path}"
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    path = parts.path.rstrip("/").removesuffix(".git").rstrip("/")
    return f"{host}{path}" if host else path
