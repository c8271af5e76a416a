"""Pipelines over HTTP: operators write definitions (JSON or YAML), trigger, cancel, re-run and decide on
runs; everyone with a key reads them and their stages' logs (or follows them live); admins write secrets,
whose values are never answered back; forges call the push webhook, signed instead of keyed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Example,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import Body, HeaderParameter, PathParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.utils.scope.state import ScopeState

from worpen_api.http import streams
from worpen_api.http.errors import documented
from worpen_api.http.openapi import EventStream
from worpen_api.http.pipelines.dto import (
    CockpitOut,
    DefinitionIn,
    DefinitionOut,
    LogLineOut,
    LogsOut,
    PipelineRunRef,
    PongOut,
    PushIn,
    RerunOut,
    RunOut,
    SecretIn,
    SecretOut,
    TriggeredOut,
    TriggerIn,
    WebhookOut,
)
from worpen_api.http.security import browser_streams, principal_of, requires
from worpen_api.settings import Settings
from worpen_core.access.model import Permission
from worpen_core.pipelines.feed import StageEnded
from worpen_core.pipelines.model import NAME_PATTERN, RunQuery, RunStatus, StageLogLine
from worpen_core.pipelines.service import Pipelines, PushEvent
from worpen_core.shared.errors import InvalidInput, NotFound

JSON = "application/json"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")

PipelineId = Annotated[
    str, PathParameter(min_length=1, max_length=63, pattern=NAME_PATTERN, description="The pipeline's id")
]
RunId = Annotated[str, PathParameter(min_length=1, max_length=40, description="The run's id")]
StageName = Annotated[
    str, PathParameter(min_length=1, max_length=63, pattern=NAME_PATTERN, description="The stage's name")
]
SecretName = Annotated[
    str, PathParameter(min_length=1, max_length=63, pattern=NAME_PATTERN, description="The secret's name")
]
EXAMPLE = {
    "id": "app",
    "name": "app CI",
    "repository": "https://git.example.com/team/app.git",
    "branch": "main",
    "stages": [
        {"name": "test", "image": "python:3.11-slim", "commands": ["pip install -e .", "pytest -q"]},
        {"name": "deploy", "image": "alpine:3.20", "commands": ["./deploy.sh"], "approval": True},
    ],
    "triggers": {"cron": "0 3 * * *", "webhookSecret": "a-long-shared-secret"},
}
_encode = msgspec.json.Encoder().encode


def webhook_header(name: str) -> HeaderParameter:
    """A webhook header, of a bounded length."""
    return HeaderParameter(name=name, max_length=512)


LARGEST = 2**53 - 1
"""The largest line or run number a query takes: every JSON client reads it exactly, and the database
stores it (a larger one would overflow its integers)."""


async def read_definition(request: Request[Any, Any, Any]) -> None:
    """Before a definition is decoded: a YAML body is read as the same document in JSON would be, and
    Woodpecker's forms (`steps`, stages by name) become the list of `stages`, so that every error of a
    stage, the decoder's or the core's, names it the same way (`stages[1].image`)."""
    body = await request.body()
    if not body:
        return
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        document = msgspec.yaml.decode(body) if media in YAML_TYPES else msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        if media in YAML_TYPES:
            raise ClientException(f"the body is not a YAML document: {exc}") from None
        return  # malformed JSON: Litestar answers it as any other body's
    ScopeState.from_scope(request.scope).json = _listed(document)


def _listed(document: Any) -> Any:
    if not isinstance(document, dict):
        return document
    if "steps" in document and "stages" not in document:
        document = {("stages" if key == "steps" else key): value for key, value in document.items()}
    stages = document.get("stages")
    if isinstance(stages, dict) and all(isinstance(stage, dict) for stage in stages.values()):
        for name, stage in stages.items():
            if "name" in stage:
                raise InvalidInput(f"stage {name!r}: a stage of a mapping is named by its key", "stages")
        document["stages"] = [{"name": name, **stage} for name, stage in stages.items()]
    return document


@dataclass
class JsonOrYaml(Operation):
    """An operation whose body is a JSON document or the same document in YAML."""

    def __post_init__(self) -> None:
        body = self.request_body
        if isinstance(body, RequestBody) and JSON in body.content:
            media = body.content[JSON]
            body.content = {
                JSON: media,
                **{kind: OpenAPIMediaType(schema=media.schema) for kind in YAML_TYPES},
            }


def _string(description: str, example: str | None = None) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, examples=[example] if example else None)


PUSH_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    description="A Gitea or GitHub push payload; fields other than these are ignored",
    required=["repository"],
    properties={
        "ref": _string("The pushed ref; a branch's is refs/heads/<branch>", "refs/heads/main"),
        "after": _string("The sha the ref now points at"),
        "repository": Schema(
            type=OpenAPIType.OBJECT,
            description="Matched against the definitions' repositories (host and path)",
            properties={
                name: Schema(one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NULL)])
                for name in ("clone_url", "html_url", "ssh_url", "git_url", "url")
            },
        ),
        **{
            who: Schema(
                one_of=[
                    Schema(
                        type=OpenAPIType.OBJECT,
                        properties={
                            name: Schema(
                                one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NULL)]
                            )
                            for name in ("name", "login", "username")
                        },
                    ),
                    Schema(type=OpenAPIType.NULL),
                ]
            )
            for who in ("pusher", "sender")
        },
    },
)


@dataclass
class PushPayload(Operation):
    """The webhook's body, read as raw bytes (its signature is over them) and decoded by the handler."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(content={JSON: OpenAPIMediaType(schema=PUSH_SCHEMA)}, required=True)


def _now() -> datetime:
    return datetime.now(UTC)


class PipelineDefinitionController(Controller):
    path = "/api/v1/pipelines/definitions"
    tags = ["pipelines"]

    @get(
        operation_id="listPipelineDefinitions",
        responses=documented(503),
        opt=requires(Permission.READ),
        summary="Pipeline definitions, by id",
        description="A bare array of every definition; webhook secrets are never shown, only whether one "
        "is set (`triggers.webhookSecretSet`).",
    )
    async def list_definitions(self, pipelines: NamedDependency[Pipelines]) -> list[DefinitionOut]:
        return [DefinitionOut.of(pipeline) for pipeline in await pipelines.definitions()]

    @post(
        operation_id="createPipelineDefinition",
        responses=documented(400, 409, 413, 422, 503),
        opt=requires(Permission.OPERATE),
        operation_class=JsonOrYaml,
        before_request=read_definition,
        summary="Define a pipeline",
        description="A JSON document, or the same in YAML (Content-Type application/yaml, "
        "application/x-yaml or text/yaml). Errors are 422s whose `field` names the stage and field "
        "(`stages[1].dependsOn`): a cycle, an unknown or duplicate stage, a bad image, a cron expression "
        "that does not parse, a repository the server may not read, a stage asking to run privileged or "
        "to mount host paths or the Docker socket. An id already taken is a 409. Audited as "
        "`pipeline.create`.",
    )
    async def create_definition(
        self,
        request: Request[Any, Any, Any],
        pipelines: NamedDependency[Pipelines],
        data: Annotated[DefinitionIn, Body(examples=[Example(value=EXAMPLE)])],
    ) -> DefinitionOut:
        return DefinitionOut.of(await pipelines.create(principal_of(request), data.to_draft()))

    @get(
        "/{pipeline_id:str}",
        operation_id="getPipelineDefinition",
        responses=documented(404, 422, 503),
        opt=requires(Permission.READ),
        summary="One pipeline definition",
    )
    async def get_definition(
        self, pipelines: NamedDependency[Pipelines], pipeline_id: PipelineId
    ) -> DefinitionOut:
        return DefinitionOut.of(await pipelines.definition(pipeline_id))

    @put(
        "/{pipeline_id:str}",
        operation_id="updatePipelineDefinition",
        responses=documented(400, 404, 413, 422, 503),
        opt=requires(Permission.OPERATE),
        operation_class=JsonOrYaml,
        before_request=read_definition,
        summary="Replace a pipeline definition",
        description="The whole definition, as on creation; its `id` must be the path's (ids never change). "
        "A webhook secret left out keeps the stored one, an empty one removes it. Runs under way keep the "
        "stages they started with. Audited as `pipeline.update`.",
    )
    async def update_definition(
        self,
        request: Request[Any, Any, Any],
        pipelines: NamedDependency[Pipelines],
        pipeline_id: PipelineId,
        data: Annotated[DefinitionIn, Body(examples=[Example(value=EXAMPLE)])],
    ) -> DefinitionOut:
        return DefinitionOut.of(await pipelines.update(principal_of(request), pipeline_id, data.to_draft()))

    @delete(
        "/{pipeline_id:str}",
        operation_id="deletePipelineDefinition",
        responses=documented(404, 422, 503),
        opt=requires(Permission.OPERATE),
        summary="Delete a pipeline definition",
        description="Its runs stay in the history (those under way finish). Audited as `pipeline.delete`.",
    )
    async def delete_definition(
        self, request: Request[Any, Any, Any], pipelines: NamedDependency[Pipelines], pipeline_id: PipelineId
    ) -> None:
        await pipelines.delete(principal_of(request), pipeline_id)


class PipelineController(Controller):
    path = "/api/v1/pipelines"
    tags = ["pipelines"]

    @get(
        operation_id="listPipelines",
        responses=documented(503),
        opt=requires(Permission.READ),
        summary="The cockpit's pipelines, each with its latest run",
        description="A bare array, one entry per pipeline with its latest run's branch, commit, author, "
        "status, start (`lastRun`) and stages; a pipeline never run is PENDING with `lastRun` null and "
        'its stages PENDING, `duration` "-". Statuses: SUCCESS, FAILED, RUNNING, PENDING (queued: no '
        "node free or matching yet), BLOCKED (a stage waits for approval), CANCELLED, ERROR (Worpen could "
        "not run it); a stage may also be SKIPPED (a dependency did not succeed, or it was declined).",
    )
    async def list_pipelines(self, pipelines: NamedDependency[Pipelines]) -> list[CockpitOut]:
        now = _now()
        return [CockpitOut.of(pipeline, run, now) for pipeline, run in await pipelines.overview()]

    @post(
        "/trigger",
        operation_id="triggerPipeline",
        responses=documented(400, 404, 422, 503),
        opt=requires(Permission.OPERATE),
        status_code=202,
        summary="Run a pipeline now",
        description="Queues a run of the branch's head (the definition's branch unless given) or of a "
        "commit; it runs when a node matching its stages' labels has a free slot. Audited as "
        "`pipeline.trigger`.",
    )
    async def trigger(
        self,
        request: Request[Any, Any, Any],
        pipelines: NamedDependency[Pipelines],
        data: Annotated[TriggerIn, Body(examples=[Example(value={"pipelineId": "app", "branch": "main"})])],
    ) -> TriggeredOut:
        run = await pipelines.trigger(principal_of(request), data.pipeline_id, data.branch, data.commit)
        return TriggeredOut(status="TRIGGERED", pipeline_id=run.pipeline_id, run_id=run.id)

    @get(
        "/runs",
        operation_id="listPipelineRuns",
        responses=documented(422, 503),
        opt=requires(Permission.READ),
        summary="Pipeline runs, newest first",
        description="A bare array of runs with their stages. `before` pages through one pipeline's runs "
        "(with `pipeline`; a run's number counts within its pipeline): runs numbered below it.",
    )
    async def list_runs(
        self,
        pipelines: NamedDependency[Pipelines],
        pipeline: Annotated[
            str | None,
            QueryParameter(min_length=1, max_length=63, pattern=NAME_PATTERN, description="Only its runs"),
        ] = None,
        run_status: Annotated[RunStatus | None, QueryParameter(name="status")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        before: Annotated[
            int | None,
            QueryParameter(
                ge=1, le=LARGEST, description="Runs numbered below this (with `pipeline`: a page)"
            ),
        ] = None,
    ) -> list[RunOut]:
        runs = await pipelines.runs(RunQuery(pipeline, run_status, limit, before))
        now = _now()
        return [RunOut.of(run, now) for run in runs]

    @get(
        "/runs/{run_id:str}",
        operation_id="getPipelineRun",
        responses=documented(404, 422, 503),
        opt=requires(Permission.READ),
        summary="One pipeline run with its stages",
    )
    async def get_run(self, pipelines: NamedDependency[Pipelines], run_id: RunId) -> RunOut:
        return RunOut.of(await pipelines.run(run_id), _now())

    @post(
        "/runs/{run_id:str}/cancel",
        operation_id="cancelPipelineRun",
        responses=documented(404, 409, 422, 503),
        opt=requires(Permission.OPERATE),
        status_code=200,
        summary="Cancel a run",
        description="A queued run is CANCELLED at once; a running one once its containers stopped. A "
        "finished run is a 409. Audited as `pipeline.cancel`.",
    )
    async def cancel(
        self, request: Request[Any, Any, Any], pipelines: NamedDependency[Pipelines], run_id: RunId
    ) -> RunOut:
        return RunOut.of(await pipelines.cancel(principal_of(request), run_id), _now())

    @post(
        "/runs/{run_id:str}/rerun",
        operation_id="rerunPipelineRun",
        responses=documented(404, 422, 503),
        opt=requires(Permission.OPERATE),
        status_code=202,
        summary="Run a run again",
        description="Queues a new run of the same commit with the same stages (the definition may have "
        "changed since), whose `parentId` is this run. Audited as `pipeline.rerun`.",
    )
    async def rerun(
        self, request: Request[Any, Any, Any], pipelines: NamedDependency[Pipelines], run_id: RunId
    ) -> RerunOut:
        run = await pipelines.rerun(principal_of(request), run_id)
        return RerunOut(status="TRIGGERED", pipeline_id=run.pipeline_id, run_id=run.id, parent_id=run_id)

    @post(
        "/runs/{run_id:str}/stages/{stage:str}/approve",
        operation_id="approvePipelineStage",
        responses=documented(404, 409, 422, 503),
        opt=requires(Permission.OPERATE),
        status_code=200,
        summary="Approve a stage waiting for approval",
        description="The stage runs; a stage that is not BLOCKED is a 409. Audited as `pipeline.approve`.",
    )
    async def approve(
        self,
        request: Request[Any, Any, Any],
        pipelines: NamedDependency[Pipelines],
        run_id: RunId,
        stage: StageName,
    ) -> RunOut:
        return RunOut.of(await pipelines.approve(principal_of(request), run_id, stage), _now())

    @post(
        "/runs/{run_id:str}/stages/{stage:str}/decline",
        operation_id="declinePipelineStage",
        responses=documented(404, 409, 422, 503),
        opt=requires(Permission.OPERATE),
        status_code=200,
        summary="Decline a stage waiting for approval",
        description="The stage and what depends on it are SKIPPED; a stage that is not BLOCKED is a 409. "
        "Audited as `pipeline.decline`.",
    )
    async def decline(
        self,
        request: Request[Any, Any, Any],
        pipelines: NamedDependency[Pipelines],
        run_id: RunId,
        stage: StageName,
    ) -> RunOut:
        return RunOut.of(await pipelines.decline(principal_of(request), run_id, stage), _now())

    @get(
        "/runs/{run_id:str}/stages/{stage:str}/logs",
        operation_id="pipelineStageLogs",
        responses=documented(404, 422, 503),
        opt=requires(Permission.READ),
        summary="A range of a stage's log",
        description="Up to `limit` lines numbered above `after`, oldest first, secrets masked; `next` is "
        "the `after` of the next read, and `status` the stage's (read before the lines: once it is "
        "finished, the lines answered are all there is).",
    )
    async def logs(
        self,
        pipelines: NamedDependency[Pipelines],
        run_id: RunId,
        stage: StageName,
        after: Annotated[int, QueryParameter(ge=0, le=LARGEST, description="Lines numbered above this")] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 1000,
    ) -> LogsOut:
        run = await pipelines.run(run_id)
        try:
            status = run.stage(stage).status
        except KeyError:
            raise NotFound("stage", stage) from None
        lines = await pipelines.logs(run_id, stage, after, limit)
        return LogsOut(
            lines=[LogLineOut.of(line) for line in lines],
            next=lines[-1].number if lines else after,
            status=status,
        )

    @get(
        "/runs/{run_id:str}/stages/{stage:str}/logs/stream",
        operation_id="followPipelineStageLogs",
        opt=browser_streams(Permission.READ),
        responses=documented(404, 422, 503),
        operation_class=EventStream,
        summary="Follow a stage's log (Server-Sent Events)",
        description="Each line as an event `line` whose id is its number, from the store then live, none "
        "missed or twice; a reconnect with Last-Event-ID (or `after`) resumes after that line. When the "
        'stage has ended, one event `end` with `{"status": ...}` and the stream closes. A comment keeps '
        "an idle stream open.",
    )
    async def follow_logs(
        self,
        request: Request[Any, Any, Any],
        pipelines: NamedDependency[Pipelines],
        settings: NamedDependency[Settings],
        draining: NamedDependency[asyncio.Event],
        run_id: RunId,
        stage: StageName,
        after: Annotated[int, QueryParameter(ge=0, le=LARGEST, description="Lines numbered above this")] = 0,
    ) -> ServerSentEvent:
        await pipelines.logs(run_id, stage, 0, 1)  # a run or stage that does not exist: 404, not a stream
        lines = pipelines.follow(run_id, stage, streams.resume_after(request, after) or 0)
        return streams.follow(lines, _message, settings.stream_ping_seconds, draining)

    @post(
        "/webhook",
        operation_id="pipelineWebhook",
        responses={
            200: ResponseSpec(
                PongOut, description="A ping whose signature verifies", generate_examples=False
            ),
            **documented(400, 413, 422, 503),
        },
        security=[{}],
        opt=requires(Permission.READ),
        operation_class=PushPayload,
        status_code=202,
        summary="A forge's push webhook (no API key: signed)",
        description="For Gitea and GitHub push hooks. Authenticated by an HMAC-SHA256 of the raw body with "
        "a pipeline's webhook secret, in X-Hub-Signature-256 (`sha256=<hex>`, GitHub) or X-Gitea-Signature "
        "/ X-Gogs-Signature (`<hex>`); a signature that no pipeline of the repository accepts is a 401 and "
        "starts nothing. A push to a branch starts a run of each pipeline of that repository and branch "
        "whose secret signed it; a `ping` event is answered PONG (200), other events IGNORED.",
    )
    async def webhook(
        self,
        request: Request[Any, Any, Any],
        pipelines: NamedDependency[Pipelines],
        hub_signature: Annotated[str | None, webhook_header("X-Hub-Signature-256")] = None,
        gitea_signature: Annotated[str | None, webhook_header("X-Gitea-Signature")] = None,
        github_event: Annotated[str | None, webhook_header("X-GitHub-Event")] = None,
        gitea_event: Annotated[str | None, webhook_header("X-Gitea-Event")] = None,
    ) -> Response[WebhookOut | PongOut]:
        body = await request.body()
        push = _push(body)
        signature = hub_signature or gitea_signature or request.headers.get("x-gogs-signature")
        event = (github_event or gitea_event or request.headers.get("x-gogs-event") or "push").strip().lower()
        if event != "push":
            await pipelines.webhook(body, signature, PushEvent(push.repository.urls(), None, None, "-"))
            if event == "ping":
                return Response(PongOut(status="PONG"), status_code=200)
            return Response(WebhookOut(status="IGNORED", runs=[]), status_code=202)
        event_of_push = PushEvent(push.repository.urls(), push.branch(), push.after, push.pusher_name())
        runs = await pipelines.webhook(body, signature, event_of_push)
        started = [PipelineRunRef(pipeline_id=run.pipeline_id, run_id=run.id) for run in runs]
        return Response(WebhookOut(status="TRIGGERED", runs=started), status_code=202)


def _push(body: bytes) -> PushIn:
    try:
        return msgspec.json.decode(body, type=PushIn)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `$.")
        field = at.rstrip("`") or None
        if "missing required field `repository`" in message:
            message, field = "the payload names no repository (a Gitea or GitHub push has one)", "repository"
        raise InvalidInput(message, field) from None
    except msgspec.DecodeError:
        raise ClientException("the body is not JSON: a webhook's payload is a JSON object") from None


def _message(item: StageLogLine | StageEnded) -> ServerSentEventMessage:
    if isinstance(item, StageEnded):
        return ServerSentEventMessage(data=_encode({"status": item.status.value}).decode(), event="end")
    data = _encode(LogLineOut.of(item)).decode()
    return ServerSentEventMessage(data=data, event="line", id=str(item.number))


class PipelineSecretController(Controller):
    path = "/api/v1/pipelines/secrets"
    tags = ["pipelines"]

    @get(
        operation_id="listPipelineSecrets",
        responses=documented(503),
        opt=requires(Permission.OPERATE),
        summary="Pipeline secrets' names (never their values)",
        description="A bare array by name: who last set each and when. Values are never answered.",
    )
    async def list_secrets(self, pipelines: NamedDependency[Pipelines]) -> list[SecretOut]:
        return [SecretOut.of(secret) for secret in await pipelines.secrets()]

    @post(
        operation_id="putPipelineSecret",
        responses={
            200: ResponseSpec(SecretOut, description="An existing secret replaced", generate_examples=False),
            **documented(400, 413, 422, 503),
        },
        opt=requires(Permission.ADMIN),
        status_code=201,
        summary="Set a pipeline secret",
        description="Stored encrypted; 201 for a new name, 200 when it replaces a value. Stages that list "
        "it get it as an environment variable, masked (********) in their logs. Audited as `secret.put` "
        "(without the value).",
    )
    async def put_secret(
        self,
        request: Request[Any, Any, Any],
        pipelines: NamedDependency[Pipelines],
        data: Annotated[
            SecretIn, Body(examples=[Example(value={"name": "REGISTRY_TOKEN", "value": "s3cr3t-value"})])
        ],
    ) -> Response[SecretOut]:
        secret, created = await pipelines.put_secret(principal_of(request), data.name, data.value)
        return Response(SecretOut.of(secret), status_code=201 if created else 200)

    @delete(
        "/{name:str}",
        operation_id="deletePipelineSecret",
        responses=documented(404, 422, 503),
        opt=requires(Permission.ADMIN),
        summary="Delete a pipeline secret",
        description="Stages that list it cannot run until it is set again. Audited as `secret.delete`.",
    )
    async def delete_secret(
        self, request: Request[Any, Any, Any], pipelines: NamedDependency[Pipelines], name: SecretName
    ) -> None:
        await pipelines.delete_secret(principal_of(request), name)
