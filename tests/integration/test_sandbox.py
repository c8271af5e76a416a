"""The script sandbox on a real V8 (mini-racer): scripts see a read-only context, act only by recording a
plan, are stopped by the time and heap limits, and report where they failed in the author's own lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worpen_core.automation.plan import (
    Action,
    ActionType,
    LogLevel,
    SandboxLimits,
    ScriptError,
    ScriptLog,
    ScriptOutcome,
    ScriptStatus,
)
from worpen_core.automation.ports import ScriptSandbox
from worpen_core.events.model import JsonValue
from worpen_infra.sandbox import CONTEXT_NAMES, MiniRacerSandbox

pytestmark = pytest.mark.integration

EXAMPLE = """if (event.exit_code === 137) {
  log.warn("OOM Detected on " + service);
  docker.restart(container_id);
  notify.slack("#ops-alerts", "Restarted " + service);
}"""

OOM_KILLED: dict[str, JsonValue] = {
    "event": {"type": "CONTAINER_OOM_KILLED", "exit_code": 137, "time": "2026-12-01T03:00:00Z"},
    "service": "saleor-api",
    "container_id": "4f2a9c",
    "node": "node-1",
}
LIMITS = SandboxLimits()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[MiniRacerSandbox]:
    sandbox = MiniRacerSandbox()
    yield sandbox
    asyncio.run(sandbox.close())


async def run(
    sandbox: ScriptSandbox,
    script: str,
    context: dict[str, JsonValue] | None = None,
    limits: SandboxLimits = LIMITS,
) -> ScriptOutcome:
    return await sandbox.run(script, OOM_KILLED if context is None else context, limits)


def logged(outcome: ScriptOutcome) -> list[str]:
    return [line.message for line in outcome.logs]


async def test_the_example_restarts_an_oom_killed_container_and_tells_ops(sandbox: MiniRacerSandbox) -> None:
    outcome = await run(sandbox, EXAMPLE)

    assert outcome.status is ScriptStatus.SUCCESS
    assert outcome.error is None
    assert outcome.actions == (
        Action(ActionType.DOCKER_RESTART, "4f2a9c"),
        Action(ActionType.NOTIFY_SLACK, "#ops-alerts", {"text": "Restarted saleor-api"}),
    )
    assert outcome.logs == (ScriptLog(LogLevel.WARN, "OOM Detected on saleor-api"),)
    assert outcome.duration_ms > 0


async def test_the_example_does_nothing_for_another_exit_code(sandbox: MiniRacerSandbox) -> None:
    outcome = await run(sandbox, EXAMPLE, {**OOM_KILLED, "event": {"type": "CONTAINER_DIED", "exit_code": 1}})

    assert outcome.status is ScriptStatus.SUCCESS
    assert outcome.actions == ()
    assert outcome.logs == ()


async def test_calls_work_the_same_with_and_without_await(sandbox: MiniRacerSandbox) -> None:
    awaited = EXAMPLE.replace("docker.restart", "await docker.restart").replace("notify.", "await notify.")

    plain, with_await = await run(sandbox, EXAMPLE), await run(sandbox, awaited)

    assert with_await.status is ScriptStatus.SUCCESS
    assert with_await.actions == plain.actions
    assert with_await.logs == plain.logs


async def test_every_capability_records_its_action(sandbox: MiniRacerSandbox) -> None:
    script = """
      await docker.stop("a"); docker.start("b"); docker.prune();
      incident.open("OOM loop", {severity: "critical"}); incident.open("slow");
      incident.resolve("back to normal");
      notify.webhook("pager", {service, count: 2, tags: ["x"]});
      notify.webhook("pager");
    """
    outcome = await run(sandbox, script)

    assert outcome.status is ScriptStatus.SUCCESS, outcome.error
    assert outcome.actions == (
        Action(ActionType.DOCKER_STOP, "a"),
        Action(ActionType.DOCKER_START, "b"),
        Action(ActionType.DOCKER_PRUNE, ""),
        Action(ActionType.INCIDENT_OPEN, "OOM loop", {"severity": "critical"}),
        Action(ActionType.INCIDENT_OPEN, "slow", {"severity": "high"}),
        Action(ActionType.INCIDENT_RESOLVE, "", {"notes": "back to normal"}),
        Action(
            ActionType.NOTIFY_WEBHOOK,
            "pager",
            {"payload": {"service": "saleor-api", "count": 2, "tags": ["x"]}},
        ),
        Action(ActionType.NOTIFY_WEBHOOK, "pager", {"payload": None}),
    )


@pytest.mark.parametrize(
    ("script", "complaint"),
    [
        ("docker.restart(undefined)", "docker.restart(id): id must be a non-empty string, got undefined"),
        ("docker.stop(42)", "docker.stop(id): id must be a non-empty string, got number"),
        ('notify.slack(7, "hi")', "channel must be a non-empty string, got number"),
        ('notify.slack("#ops", {text: "hi"})', "text must be a string, got object"),
        ('notify.webhook("pager", () => 1)', "payload must be a JSON value, got function"),
        (
            'incident.open("x", {severity: "apocalyptic"})',
            "severity must be one of critical, high, medium, low",
        ),
    ],
)
async def test_a_wrong_call_fails_the_run_with_a_type_error(
    sandbox: MiniRacerSandbox, script: str, complaint: str
) -> None:
    outcome = await run(sandbox, 'log.info("before");\n' + script)

    assert outcome.status is ScriptStatus.ERROR
    assert outcome.error is not None
    assert outcome.error.message.startswith("TypeError: ")
    assert complaint in outcome.error.message
    assert outcome.error.line == 2
    assert outcome.actions == ()
    assert logged(outcome) == ["before"], "what was recorded before the failure is kept"


async def test_more_actions_than_the_limit_fail_the_run_and_keep_the_plan_so_far(
    sandbox: MiniRacerSandbox,
) -> None:
    outcome = await run(
        sandbox, 'for (let i = 0; i < 10; i++) docker.restart("c" + i);', limits=SandboxLimits(max_actions=3)
    )

    assert outcome.status is ScriptStatus.ERROR
    assert outcome.error is not None
    assert "at most 3 actions" in outcome.error.message
    assert [action.target for action in outcome.actions] == ["c0", "c1", "c2"]


async def test_log_lines_are_strings_and_capped(sandbox: MiniRacerSandbox) -> None:
    script = (
        'log.info(42); log.error({a: 1}); log.warn("x".repeat(5000));\n'
        + "for (let i = 0; i < 50; i++) log.info(i);"
    )
    outcome = await run(sandbox, script, limits=SandboxLimits(max_log_lines=5))

    assert outcome.status is ScriptStatus.SUCCESS
    assert [line.level for line in outcome.logs][:3] == [LogLevel.INFO, LogLevel.ERROR, LogLevel.WARN]
    assert logged(outcome)[:2] == ["42", "[object Object]"]
    assert len(outcome.logs[2].message) == 2000
    assert len(outcome.logs) == 5


@pytest.mark.parametrize(
    ("script", "line", "column"),
    [("var x = ;", 1, 9), ('log.info("fine");\nif (event) {\n  const x = 1 +;\n}', 3, 16)],
)
async def test_a_syntax_error_names_its_line_and_column(
    sandbox: MiniRacerSandbox, script: str, line: int, column: int
) -> None:
    checked = await sandbox.check(script)
    outcome = await run(sandbox, script)

    assert checked is not None
    assert checked.message.startswith("SyntaxError: ")
    assert (checked.line, checked.column) == (line, column)
    assert outcome.status is ScriptStatus.ERROR
    assert outcome.error == checked
    assert outcome.actions == ()
    assert outcome.logs == (), "nothing of a script that does not compile runs"


async def test_check_accepts_await_and_runs_nothing(sandbox: MiniRacerSandbox) -> None:
    started = time.perf_counter()

    assert await sandbox.check("await docker.restart(container_id);") is None
    assert await sandbox.check("while (true) {}") is None
    assert await sandbox.check("}); while (true) {} (async function () {") is not None
    assert time.perf_counter() - started < 2


async def test_a_runtime_error_names_its_line(sandbox: MiniRacerSandbox) -> None:
    outcome = await run(sandbox, 'docker.restart("a");\nawait 1;\nconst m = metrics.cpu;')

    assert outcome.status is ScriptStatus.ERROR
    assert outcome.error == ScriptError(
        "TypeError: Cannot read properties of undefined (reading 'cpu')", 3, 19
    )
    assert outcome.actions == (Action(ActionType.DOCKER_RESTART, "a"),), "kept for the record"


async def test_a_thrown_error_is_the_outcome(sandbox: MiniRacerSandbox) -> None:
    outcome = await run(sandbox, 'log.info("start");\n\n  throw new Error("giving up")')

    assert outcome.status is ScriptStatus.ERROR
    assert outcome.error == ScriptError("Error: giving up", 3, 9), "where the error was made"
    assert logged(outcome) == ["start"]


async def test_an_infinite_loop_is_stopped_by_the_time_limit(sandbox: MiniRacerSandbox) -> None:
    started = time.perf_counter()
    outcome = await run(sandbox, 'docker.restart("a");\nwhile (true) {}')

    assert outcome.status is ScriptStatus.TIMEOUT
    assert outcome.error is not None
    assert "100 ms" in outcome.error.message
    assert outcome.duration_ms >= 100
    assert time.perf_counter() - started < 5


async def test_an_infinite_loop_after_an_await_is_stopped_too(sandbox: MiniRacerSandbox) -> None:
    """Code after an `await` runs after the first eval returned: the time limit must still stop it."""
    started = time.perf_counter()
    outcome = await run(sandbox, "await docker.restart(container_id);\nwhile (true) {}")

    assert outcome.status is ScriptStatus.TIMEOUT
    assert time.perf_counter() - started < 5
    after = await run(sandbox, EXAMPLE)
    assert after.status is ScriptStatus.SUCCESS, "the sandbox still works after a runaway script"


async def test_a_memory_bomb_is_stopped_by_the_heap_limit(sandbox: MiniRacerSandbox) -> None:
    bomb = "const hoard = [];\nwhile (true) hoard.push(new Array(100000).fill(1.5));"

    outcome = await run(sandbox, bomb, limits=SandboxLimits(time_ms=20_000))

    assert outcome.status is ScriptStatus.MEMORY_LIMIT
    assert outcome.error is not None
    assert "32 MB" in outcome.error.message


async def test_nothing_outside_the_capability_api_is_reachable(sandbox: MiniRacerSandbox) -> None:
    script = """
      for (const name of ["require", "process", "fetch", "XMLHttpRequest", "setTimeout", "WebSocket"]) {
        log.info(name + ": " + typeof globalThis[name]);
      }
    """
    outcome = await run(sandbox, script)
    imported = await run(sandbox, 'log.info("before");\nconst fs = await import("fs");\nlog.info("after");')

    assert outcome.status is ScriptStatus.SUCCESS
    assert logged(outcome) == [
        f"{name}: undefined"
        for name in ["require", "process", "fetch", "XMLHttpRequest", "setTimeout", "WebSocket"]
    ]
    assert imported.status is ScriptStatus.ERROR
    assert logged(imported) == ["before"]


async def test_the_context_is_read_only(sandbox: MiniRacerSandbox) -> None:
    writes = [
        "event.exit_code = 0",
        "event = {}",
        "service = 'other'",
        "docker.restart = () => 1",
        "delete event.type",
    ]
    for write in writes:
        outcome = await run(sandbox, write)
        assert outcome.status is ScriptStatus.ERROR, write
        assert outcome.error is not None
        assert outcome.error.message.startswith("TypeError: "), outcome.error

    kept = await run(sandbox, "try { event.exit_code = 0; } catch (e) {}\nlog.info(event.exit_code);")
    assert logged(kept) == ["137"]


async def test_missing_context_fields_are_undefined(sandbox: MiniRacerSandbox) -> None:
    script = "log.info([" + ", ".join(f"typeof {name}" for name in CONTEXT_NAMES) + "].join());"

    outcome = await run(sandbox, script, {})

    assert outcome.status is ScriptStatus.SUCCESS
    assert logged(outcome) == [",".join(["undefined"] * len(CONTEXT_NAMES))]


async def test_a_context_key_naming_a_builtin_is_not_exposed(sandbox: MiniRacerSandbox) -> None:
    outcome = await run(
        sandbox, 'docker.restart("a"); log.info(typeof JSON.parse);', {"docker": 1, "JSON": "x"}
    )

    assert outcome.status is ScriptStatus.SUCCESS
    assert outcome.actions == (Action(ActionType.DOCKER_RESTART, "a"),)
    assert outcome.logs[0].level is LogLevel.WARN
    assert "docker, JSON" in outcome.logs[0].message
    assert logged(outcome)[1:] == ["function"]


async def test_replacing_builtins_does_not_bypass_the_argument_checks(sandbox: MiniRacerSandbox) -> None:
    outcome = await run(
        sandbox, 'Array.prototype.includes = () => true;\nincident.open("x", {severity: "apocalyptic"});'
    )

    assert outcome.status is ScriptStatus.ERROR
    assert outcome.actions == ()


async def test_no_state_leaks_from_one_run_to_the_next(sandbox: MiniRacerSandbox) -> None:
    first = await run(
        sandbox, 'globalThis.leak = 1; Object.prototype.polluted = "yes"; Array.prototype.push = null;'
    )
    second = await run(sandbox, "log.info(typeof leak + ' ' + typeof ({}).polluted);\n" + EXAMPLE)

    assert first.status is ScriptStatus.SUCCESS
    assert second.status is ScriptStatus.SUCCESS
    assert logged(second)[0] == "undefined undefined"
    assert len(second.actions) == 2


async def test_a_script_awaiting_what_never_settles_fails(sandbox: MiniRacerSandbox) -> None:
    outcome = await run(sandbox, "docker.prune();\nawait new Promise(() => {});")

    assert outcome.status is ScriptStatus.ERROR
    assert outcome.error is not None
    assert "never settles" in outcome.error.message


async def test_twenty_concurrent_runs_each_get_their_own_plan(sandbox: MiniRacerSandbox) -> None:
    contexts: list[dict[str, JsonValue]] = [
        {**OOM_KILLED, "container_id": f"c{i}", "service": f"s{i}"} for i in range(20)
    ]

    outcomes = await asyncio.gather(*(run(sandbox, EXAMPLE, context) for context in contexts))

    for i, outcome in enumerate(outcomes):
        assert outcome.status is ScriptStatus.SUCCESS
        assert outcome.actions == (
            Action(ActionType.DOCKER_RESTART, f"c{i}"),
            Action(ActionType.NOTIFY_SLACK, "#ops-alerts", {"text": f"Restarted s{i}"}),
        )


_json: st.SearchStrategy[JsonValue] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
_contexts = st.dictionaries(st.sampled_from(CONTEXT_NAMES) | st.text(max_size=12), _json, max_size=8)


@settings(max_examples=60, deadline=None)
@given(context=_contexts, service=st.text())
def test_any_context_gives_an_outcome_never_an_exception(
    sandbox: MiniRacerSandbox, context: dict[str, JsonValue], service: str
) -> None:
    script = EXAMPLE + "\nlog.info(JSON.stringify([event, container, agent, metrics, node]));"

    outcome = asyncio.run(sandbox.run(script, {**context, "service": service}, LIMITS))

    assert isinstance(outcome.status, ScriptStatus)
    if outcome.status is ScriptStatus.SUCCESS:
        assert all(
            action.type in (ActionType.DOCKER_RESTART, ActionType.NOTIFY_SLACK) for action in outcome.actions
        )
