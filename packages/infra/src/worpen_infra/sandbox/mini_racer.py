"""The script sandbox on V8 (mini-racer): every run gets a fresh isolate with a hard heap limit, a time
limit and nothing of the host in it but the capability API, which only records the plan."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, asynccontextmanager
from importlib import resources
from typing import Any, Literal, TypeVar, cast

import msgspec
from py_mini_racer import (
    CancelableJSFunction,
    JSEvalException,
    JSFunction,
    JSMappedObject,
    JSOOMException,
    MiniRacer,
    mini_racer,
)

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
from worpen_core.events.model import JsonValue

T = TypeVar("T")

CONTEXT_NAMES = ("event", "container", "agent", "metrics", "service", "container_id", "node")
"""Globals every script may read; one the context lacks is `undefined`, not a ReferenceError."""

_STRICT = '"use strict";\n'
_BODY_LINE_OFFSET = 2 + _STRICT.count("\n")
"""V8 compiles an AsyncFunction body as `(async function anonymous(\\n) {\\n<body>`: two lines come before
the body, plus the strict-mode directive's line."""

_SETUP_TIMEOUT_S = 1.0
"""For the sandbox's own work around a run (loading the context, compiling); the script's limit is
separate."""

_SYNTAX_HEADER = re.compile(r"^[^\n]*?:(\d+): (SyntaxError: [^\n]*)")
_FRAME_IN_SCRIPT = re.compile(r"\), <anonymous>:(\d+):(\d+)\)")
"""A frame in code built by the AsyncFunction constructor: `(eval at compile (...), <anonymous>:L:C)`."""


class _RawError(msgspec.Struct):
    message: str
    stack: str | None


class _RawAction(msgspec.Struct):
    type: str
    target: str
    params: dict[str, Any]


class _RawLog(msgspec.Struct):
    level: str
    message: str


class _Report(msgspec.Struct):
    state: Literal["pending", "done", "failed"]
    error: _RawError | None
    actions: list[_RawAction]
    logs: list[_RawLog]


class _Stopped(Exception):
    """The run ended before the script could finish; `status` and `error` say why."""

    def __init__(self, status: ScriptStatus, error: ScriptError | None) -> None:
        super().__init__(status)
        self.status = status
        self.error = error


class MiniRacerSandbox:
    """A ScriptSandbox on V8 isolates, a fresh one per call so nothing of one run reaches the next.

    mini-racer runs each isolate on a thread of its own and reports back through an asyncio loop: the
    sandbox owns that loop, on a dedicated thread, and creates and frees isolates (blocking calls of a
    few milliseconds) on one worker thread of its own, so neither the caller's loop nor its default
    executor ever waits for V8. One worker, not more: with two creating isolates at once, about one
    process in sixteen died of a V8 trap on its first runs. One isolate, with the prelude installed and no
    script yet, is kept ready: creating it is most of a short run's latency."""

    def __init__(self) -> None:
        self._prelude = resources.files(__package__).joinpath("prelude.js").read_text(encoding="utf-8")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worpen-sandbox")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="worpen-sandbox-v8", daemon=True)
        self._thread.start()
        self._ready: asyncio.Future[_Isolate] | None = None
        self._runs: set[asyncio.Task[object]] = set()
        """Both touched only on the sandbox's loop."""

    async def close(self) -> None:
        """Cancels the runs under way, frees the isolate kept ready, then stops the sandbox's threads."""
        if self._loop.is_closed():
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._drain(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()
        self._pool.shutdown(wait=False)

    async def check(self, script: str) -> ScriptError | None:
        if not _is_text(script):
            return _NOT_TEXT
        return await self._on_v8_loop(self._check(script))

    async def run(
        self, script: str, context: Mapping[str, JsonValue], limits: SandboxLimits
    ) -> ScriptOutcome:
        if not _is_text(script):
            return ScriptOutcome(ScriptStatus.ERROR, (), (), 0.0, _NOT_TEXT)
        try:
            context_json = json.dumps(dict(context), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            return ScriptOutcome(
                ScriptStatus.ERROR, (), (), 0.0, ScriptError(f"the context is not JSON: {exc}")
            )
        return await self._on_v8_loop(self._run(script, context_json, limits))

    async def _on_v8_loop(self, work: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._tracked(work), self._loop))

    async def _tracked(self, work: Coroutine[Any, Any, T]) -> T:
        task = asyncio.current_task()
        assert task is not None
        self._runs.add(task)
        try:
            return await work
        finally:
            self._runs.discard(task)

    async def _drain(self) -> None:
        """Only the sandbox's own runs are cancelled: mini-racer's tasks on this loop must finish."""
        for task in self._runs:
            task.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        ready, self._ready = self._ready, None
        if ready is not None:
            context, _, _ = await ready
            await asyncio.get_running_loop().run_in_executor(self._pool, context.__exit__, None, None, None)

    @asynccontextmanager
    async def _isolate(self, memory_bytes: int) -> AsyncIterator[tuple[MiniRacer, _Api]]:
        """The isolate kept ready (or a new one when none is), and the next one prepared meanwhile."""
        loop = asyncio.get_running_loop()
        ready, self._ready = self._ready, loop.run_in_executor(self._pool, self._open)
        context, racer, api = await (ready or loop.run_in_executor(self._pool, self._open))
        try:
            racer.set_hard_memory_limit(memory_bytes)
            yield racer, api
        finally:
            await loop.run_in_executor(self._pool, context.__exit__, None, None, None)

    def _open(self) -> _Isolate:
        context = mini_racer(self._loop)
        racer = context.__enter__()
        try:
            api = racer.eval(self._prelude)
            if not isinstance(api, JSMappedObject):
                raise TypeError("the sandbox prelude did not return its steps")
            setup, compile_ = api["setup"], api["compile"]
            if not isinstance(setup, JSFunction) or not isinstance(compile_, JSFunction):
                raise TypeError("the sandbox prelude lacks its setup and compile steps")
        except BaseException:
            context.__exit__(None, None, None)
            raise
        return context, racer, _Api(racer, setup.cancelable(), compile_.cancelable())

    async def _check(self, script: str) -> ScriptError | None:
        async with self._isolate(SandboxLimits().memory_bytes) as (_, api):
            try:
                await _call(api, "compile", _STRICT + script, timeout_s=_SETUP_TIMEOUT_S)
            except _Stopped as stopped:
                return stopped.error or ScriptError(f"the script could not be compiled ({stopped.status})")
        return None

    async def _run(self, script: str, context_json: str, limits: SandboxLimits) -> ScriptOutcome:
        async with self._isolate(limits.memory_bytes) as (racer, api):
            started = time.perf_counter()
            status, error, hidden = ScriptStatus.SUCCESS, None, cast(object, "[]")
            try:
                hidden = await _call(
                    api,
                    "setup",
                    context_json,
                    json.dumps(CONTEXT_NAMES),
                    limits.max_actions,
                    limits.max_log_lines,
                    timeout_s=_SETUP_TIMEOUT_S,
                )
                await _call(api, "compile", _STRICT + script, timeout_s=_SETUP_TIMEOUT_S)
                script_started = time.perf_counter()
                await _call(api, "start", timeout_s=limits.time_ms / 1000)
                # What follows an `await` runs as V8 microtasks after `start` returned, outside its timeout;
                # the read below queues behind them and is bounded by what is left of the limit.
                left_s = limits.time_ms / 1000 - (time.perf_counter() - script_started)
                report = await _call(api, "report", timeout_s=max(left_s, 0.001))
            except _Stopped as stopped:
                status, error = stopped.status, stopped.error
                report = await _last_words(api)
            if racer.was_hard_memory_limit_reached():
                status, error = ScriptStatus.MEMORY_LIMIT, None
            duration_ms = (time.perf_counter() - started) * 1000
        outcome = _outcome(status, error, report, limits, duration_ms)
        names = json.loads(hidden) if isinstance(hidden, str) else []
        if not names:
            return outcome
        note = ScriptLog(
            LogLevel.WARN, "context keys naming a built-in were not exposed: " + ", ".join(names)
        )
        return ScriptOutcome(
            outcome.status, outcome.actions, (note, *outcome.logs), duration_ms, outcome.error
        )


_Isolate = tuple[AbstractContextManager[MiniRacer], MiniRacer, "_Api"]


class _Api:
    """The prelude's steps. `setup` and `compile` run before the script and take arguments (a function
    call); `start` and `report` are plain evals: a function call makes blocking calls into the isolate
    first, which would wait forever behind a script still spinning in a microtask."""

    def __init__(self, racer: MiniRacer, setup: CancelableJSFunction, compile_: CancelableJSFunction) -> None:
        self._racer = racer
        self._steps = {"setup": setup, "compile": compile_}

    def step(self, name: str, *args: str | int) -> Awaitable[object]:
        if name in self._steps:
            return self._steps[name](*args)
        return self._racer.eval_cancelable(f"__worpen.{name}()")


async def _call(api: _Api, name: str, *args: str | int, timeout_s: float) -> object:
    """One step in the isolate, bounded by `timeout_s`; V8's failures become `_Stopped`."""
    try:
        return await asyncio.wait_for(api.step(name, *args), timeout=timeout_s)
    except TimeoutError as exc:
        raise _Stopped(ScriptStatus.TIMEOUT, None) from exc
    except JSOOMException as exc:
        raise _Stopped(ScriptStatus.MEMORY_LIMIT, None) from exc
    except JSEvalException as exc:
        raise _Stopped(
            ScriptStatus.ERROR, _syntax_error(str(exc)) or ScriptError(_first_line(str(exc)))
        ) from exc


async def _last_words(api: _Api) -> str | None:
    """What the script recorded before it was stopped, if the isolate still answers."""
    try:
        report = await _call(api, "report", timeout_s=0.05)
    except _Stopped:
        return None
    return report if isinstance(report, str) else None


def _outcome(
    status: ScriptStatus,
    error: ScriptError | None,
    report_json: object,
    limits: SandboxLimits,
    duration_ms: float,
) -> ScriptOutcome:
    if status in (ScriptStatus.TIMEOUT, ScriptStatus.MEMORY_LIMIT) and error is None:
        error = _limit_error(status, limits)
    if not isinstance(report_json, str):
        return ScriptOutcome(status, (), (), duration_ms, error)
    try:
        report = msgspec.json.decode(report_json, type=_Report)
        actions = tuple(Action(ActionType(raw.type), raw.target, raw.params) for raw in report.actions)
        logs = tuple(ScriptLog(LogLevel(raw.level), raw.message) for raw in report.logs)
    except (msgspec.DecodeError, ValueError):
        # Only a script that rewrote built-ins the report relies on can get here; its plan is void.
        return ScriptOutcome(
            ScriptStatus.ERROR, (), (), duration_ms, ScriptError("the script tampered with its plan")
        )
    if status is ScriptStatus.SUCCESS:
        if report.state == "failed" and report.error is not None:
            status, error = ScriptStatus.ERROR, _runtime_error(report.error)
        elif report.state == "pending":
            status = ScriptStatus.ERROR
            error = _NEVER_SETTLES
    return ScriptOutcome(status, actions, logs, duration_ms, error)


def _limit_error(status: ScriptStatus, limits: SandboxLimits) -> ScriptError:
    if status is ScriptStatus.TIMEOUT:
        return ScriptError(f"the script ran longer than {limits.time_ms} ms and was stopped")
    return ScriptError(
        f"the script used more than {limits.memory_bytes // (1024 * 1024)} MB of memory and was stopped"
    )


def _syntax_error(text: str) -> ScriptError | None:
    """mini-racer reports a compile error as `<where>:LINE: SyntaxError: ...`, then the line, then a caret."""
    header = _SYNTAX_HEADER.match(text)
    if header is None:
        return None
    lines = text.split("\n")
    column = lines[2].find("^") + 1 if len(lines) > 2 and "^" in lines[2] else 0
    line = int(header.group(1)) - _BODY_LINE_OFFSET
    if line < 1:
        return ScriptError(header.group(2))
    return ScriptError(header.group(2), line, column or None)


def _runtime_error(raw: _RawError) -> ScriptError:
    frame = _FRAME_IN_SCRIPT.search(raw.stack or "")
    if frame is None:
        return ScriptError(raw.message)
    line = int(frame.group(1)) - _BODY_LINE_OFFSET
    return ScriptError(raw.message, line, int(frame.group(2))) if line >= 1 else ScriptError(raw.message)


def _is_text(script: str) -> bool:
    """V8 takes UTF-8; a str with lone surrogates (possible from JSON escapes) has none."""
    try:
        script.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_NEVER_SETTLES = ScriptError("the script awaits what never settles: only the capability API can be awaited")
_NOT_TEXT = ScriptError("the script is not valid Unicode text (it contains an unpaired surrogate)")


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]
