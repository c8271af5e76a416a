"""Automation over HTTP: admins write rules; operators dry-run scripts, backtest rules over the event
history and run MANUAL rules; everyone with a key reads rules and their runs."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import Body, PathParameter, QueryParameter

from worpen_api.http.automation.dto import (
    BacktestIn,
    BacktestOut,
    DraftBacktestIn,
    DryRunIn,
    DryRunOut,
    ManualRunIn,
    RuleIn,
    RuleOut,
    RulePatchIn,
    RunOut,
)
from worpen_api.http.errors import documented
from worpen_api.http.openapi import OptionalBody
from worpen_api.http.security import principal_of, requires
from worpen_core.access.model import Permission
from worpen_core.automation.engine import RuleEngine
from worpen_core.automation.model import RunQuery, RunStatus
from worpen_core.automation.service import Automation

RuleId = Annotated[str, PathParameter(min_length=1, max_length=40, description="The rule's id")]
RunId = Annotated[str, PathParameter(min_length=1, max_length=40, description="The run's id")]
EXAMPLE_SCRIPT = """if (event.exit_code === 137) {
  log.warn("OOM Detected on " + service);
  docker.restart(container_id);
  notify.slack("#ops-alerts", "Restarted " + service);
}"""
RULE_EXAMPLE = {
    "name": "restart on OOM",
    "trigger": "CONTAINER_OOM_KILLED",
    "targetService": "saleor-*",
    "script": EXAMPLE_SCRIPT,
    "active": True,
}
WINDOW = {"since": "2026-12-01T00:00:00Z", "until": "2026-12-01T12:00:00Z"}


class AutomationController(Controller):
    path = "/api/v1/automation"
    tags = ["automation"]

    @get(
        "/rules",
        operation_id="listRules",
        responses=documented(503),
        opt=requires(Permission.READ),
        summary="Automation rules, by name",
        description="A bare array of every rule, active or not, ordered by name.",
    )
    async def list_rules(self, automation: NamedDependency[Automation]) -> list[RuleOut]:
        return [RuleOut.of(rule) for rule in await automation.rules()]

    @post(
        "/rules",
        operation_id="createRule",
        responses=documented(400, 409, 422, 503),
        opt=requires(Permission.ADMIN),
        summary="Create a rule",
        description="The script is compiled first: one that does not compile is a 422 whose `line` and "
        "`column` say where. A name already taken is a 409. Audited as `rule.create`.",
    )
    async def create_rule(
        self,
        request: Request[Any, Any, Any],
        automation: NamedDependency[Automation],
        data: Annotated[RuleIn, Body(examples=[Example(value=RULE_EXAMPLE)])],
    ) -> RuleOut:
        return RuleOut.of(await automation.create(principal_of(request), data.to_draft()))

    @get(
        "/rules/{rule_id:str}",
        operation_id="getRule",
        responses=documented(404, 422, 503),
        opt=requires(Permission.READ),
        summary="One rule",
    )
    async def get_rule(self, automation: NamedDependency[Automation], rule_id: RuleId) -> RuleOut:
        return RuleOut.of(await automation.get(rule_id))

    @put(
        "/rules/{rule_id:str}",
        operation_id="updateRule",
        responses=documented(400, 404, 409, 422, 503),
        opt=requires(Permission.ADMIN),
        summary="Change a rule (partial)",
        description='Only the fields sent change (`{"active": false}` switches a rule off); '
        '`"schedule": null` removes the schedule. The rule as changed is checked as a new one would be. '
        "Audited as `rule.update`.",
    )
    async def update_rule(
        self,
        request: Request[Any, Any, Any],
        automation: NamedDependency[Automation],
        rule_id: RuleId,
        data: Annotated[RulePatchIn, Body(examples=[Example(value={"active": False})])],
    ) -> RuleOut:
        return RuleOut.of(await automation.update(principal_of(request), rule_id, data.to_patch()))

    @delete(
        "/rules/{rule_id:str}",
        operation_id="deleteRule",
        responses=documented(404, 422, 503),
        opt=requires(Permission.ADMIN),
        summary="Delete a rule",
        description="Its runs stay on record. Audited as `rule.delete`.",
    )
    async def delete_rule(
        self, request: Request[Any, Any, Any], automation: NamedDependency[Automation], rule_id: RuleId
    ) -> None:
        await automation.delete(principal_of(request), rule_id)

    @post(
        "/rules/{rule_id:str}/run",
        operation_id="runRule",
        responses=documented(400, 404, 409, 422, 503),
        opt=requires(Permission.OPERATE),
        operation_class=OptionalBody,
        status_code=200,
        summary="Run a MANUAL rule now",
        description="Runs the rule's script with `context` added to what it sees, applies its plan as the "
        "rule would (audited as `automation:<rule name>`) and answers the finished run. A rule that is not "
        "MANUAL is a 409.",
    )
    async def run_rule(
        self,
        request: Request[Any, Any, Any],
        rule_engine: NamedDependency[RuleEngine],
        rule_id: RuleId,
        data: Annotated[
            ManualRunIn, Body(examples=[Example(value={"context": {"node": "edge-7"}})])
        ] = ManualRunIn(),  # noqa: B008
    ) -> RunOut:
        run = await rule_engine.run_manual(principal_of(request), rule_id, data.to_command())
        return RunOut.of(run)

    @post(
        "/rules/{rule_id:str}/backtest",
        operation_id="backtestRule",
        responses=documented(400, 404, 422, 503),
        opt=requires(Permission.OPERATE),
        status_code=200,
        summary="What would this rule have done?",
        description="Replays the event history between `since` and `until` through the rule's trigger, "
        "target filter, script (in the sandbox) and storm protection, with no side effects: per matching "
        "event the plan and the verdict, and totals. Only rules fired by events can be backtested.",
    )
    async def backtest_rule(
        self,
        request: Request[Any, Any, Any],
        rule_engine: NamedDependency[RuleEngine],
        rule_id: RuleId,
        data: Annotated[BacktestIn, Body(examples=[Example(value=WINDOW)])],
    ) -> BacktestOut:
        report = await rule_engine.backtest(rule_id, data.to_command(), principal_of(request))
        return BacktestOut.of(report)

    @post(
        "/backtest",
        operation_id="backtestDraft",
        responses=documented(400, 422, 503),
        opt=requires(Permission.OPERATE),
        status_code=200,
        summary="What would this unsaved rule have done?",
        description="As the backtest of a saved rule, for a rule given in the body (checked as a new rule "
        "would be, and not saved).",
    )
    async def backtest_draft(
        self,
        request: Request[Any, Any, Any],
        rule_engine: NamedDependency[RuleEngine],
        data: Annotated[DraftBacktestIn, Body(examples=[Example(value={"rule": RULE_EXAMPLE, **WINDOW})])],
    ) -> BacktestOut:
        report = await rule_engine.backtest(None, data.to_command(), principal_of(request))
        return BacktestOut.of(report)

    @post(
        "/dry-run",
        operation_id="dryRun",
        responses=documented(400, 422, 503),
        opt=requires(Permission.OPERATE),
        status_code=200,
        summary="Run a script against a mock context",
        description="Runs the script in the sandbox (the same time and memory limits as a rule's) and "
        "answers the plan Worpen would apply, applying nothing. A script that does not compile, throws, "
        "runs out of time or memory is a 200 whose `status` says so, with the error's line and column.",
    )
    async def dry_run(
        self,
        automation: NamedDependency[Automation],
        data: Annotated[
            DryRunIn,
            Body(
                examples=[
                    Example(
                        value={
                            "script": EXAMPLE_SCRIPT,
                            "mockContext": {
                                "event": {"type": "ContainerDied", "exit_code": 137},
                                "service": "saleor-api",
                                "container_id": "3f2a9c1b7d4e",
                            },
                        }
                    )
                ]
            ),
        ],
    ) -> DryRunOut:
        return DryRunOut.of(await automation.dry_run(data.script, data.mock_context))

    @get(
        "/runs",
        operation_id="listRuns",
        responses=documented(422, 503),
        opt=requires(Permission.READ),
        summary="Rule runs, newest first",
        description="A bare array of runs: the event that fired each, whether the script matched, the "
        "plan, what was applied and how it ended.",
    )
    async def list_runs(
        self,
        automation: NamedDependency[Automation],
        rule: Annotated[
            str | None, QueryParameter(min_length=1, max_length=40, description="Only this rule's (its id)")
        ] = None,
        status: Annotated[RunStatus | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[RunOut]:
        runs = await automation.runs(RunQuery(rule_id=rule, status=status, limit=limit))
        return [RunOut.of(run) for run in runs]

    @get(
        "/runs/{run_id:str}",
        operation_id="getRun",
        responses=documented(404, 422, 503),
        opt=requires(Permission.READ),
        summary="One rule run",
    )
    async def get_run(self, automation: NamedDependency[Automation], run_id: RunId) -> RunOut:
        return RunOut.of(await automation.run(run_id))
