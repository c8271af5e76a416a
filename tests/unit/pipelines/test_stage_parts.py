"""The parts of a stage's run: its shell script (run here by real shells), its log book, and the status its
run ends with."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from worpen_core.containers.model import LogLine, LogStream
from worpen_core.pipelines.executor import LogBook, outcome, stage_script
from worpen_core.pipelines.model import (
    MASK,
    PipelineRun,
    RunStatus,
    StageLogLine,
    StageRun,
    StageSpec,
    StageStatus,
    TriggerKind,
)

AT = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
SHELLS = [
    pytest.param(["/bin/sh"], id="sh"),
    pytest.param(
        ["busybox", "sh"],
        id="busybox",
        marks=pytest.mark.skipif(shutil.which("busybox") is None, reason="no busybox"),
    ),
]


def run_script(shell: list[str], commands: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    script = stage_script(commands)
    return subprocess.run(
        [*shell, "-c", script],
        capture_output=True,
        text=True,
        timeout=10,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )


def test_the_script_stops_at_the_first_failure_and_echoes_each_command() -> None:
    script = stage_script(["make", "make test"])

    assert script.splitlines() == [
        "set -e",
        "printf '%s\\n' '+ make'",
        "make",
        "printf '%s\\n' '+ make test'",
        "make test",
    ]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_shell_runs_the_commands_until_one_fails(shell: list[str]) -> None:
    done = run_script(shell, ["echo one", "false", "echo three"])

    assert done.returncode == 1
    assert done.stdout.splitlines() == ["+ echo one", "one", "+ false"]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failing_command_gives_its_exit_code(shell: list[str]) -> None:
    done = run_script(shell, ["exit 7", "echo never"])

    assert done.returncode == 7
    assert "never" not in done.stdout


@pytest.mark.parametrize("shell", SHELLS)
def test_quotes_and_variables_are_the_shells_business(shell: list[str]) -> None:
    commands = ['echo "it\'s $GREETING"', "echo 'single \"double\"' $((1 + 2))", 'X=1; echo "x=$X"']

    done = run_script(shell, commands, GREETING="hello")

    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        '+ echo "it\'s $GREETING"',
        "it's hello",
        "+ echo 'single \"double\"' $((1 + 2))",
        'single "double" 3',
        '+ X=1; echo "x=$X"',
        "x=1",
    ]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_command_of_several_lines_runs_as_one(shell: list[str]) -> None:
    done = run_script(shell, ["for n in 1 2; do\n  echo n$n\ndone", "echo after"])

    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "+ for n in 1 2; do",
        "  echo n$n",
        "done",
        "n1",
        "n2",
        "+ echo after",
        "after",
    ]


def log(stream: LogStream, text: str, at: datetime | None = AT) -> LogLine:
    return LogLine(stream, text, at)


def texts(lines: Sequence[StageLogLine]) -> list[tuple[int, str, str]]:
    return [(line.number, line.stream, line.text) for line in lines]


def test_lines_are_numbered_from_the_first_number_given() -> None:
    book = LogBook([], first=5)

    lines = book.add([log(LogStream.STDOUT, "a"), log(LogStream.STDERR, "b")], LATER)
    lines += book.add([log(LogStream.STDOUT, "c")], LATER)

    assert texts(lines) == [(5, "stdout", "a"), (6, "stderr", "b"), (7, "stdout", "c")]
    assert book.flush(LATER) == []


def test_a_line_keeps_the_engines_time_or_gets_now() -> None:
    book = LogBook([], first=1)

    lines = book.add([log(LogStream.STDOUT, "a"), log(LogStream.STDOUT, "b", at=None)], LATER)

    assert [line.at for line in lines] == [AT, LATER]


def test_secrets_are_masked_in_each_stream() -> None:
    book = LogBook(["hunter2"], first=1)

    lines = book.add(
        [
            log(LogStream.STDOUT, "token hunter2 ok"),
            log(LogStream.STDERR, "hunter2"),
            log(LogStream.STDOUT, ""),
        ],
        LATER,
    )

    assert texts(lines) == [(1, "stdout", f"token {MASK} ok"), (2, "stderr", MASK), (3, "stdout", "")]


def test_the_streams_are_masked_apart() -> None:
    """A secret cut between stdout and stderr is two harmless halves: neither stream shows it whole."""
    book = LogBook(["hunter2"], first=1)

    lines = book.add([log(LogStream.STDOUT, "hun"), log(LogStream.STDERR, "ter2")], LATER)

    assert texts(lines) == [(1, "stdout", "hun"), (2, "stderr", "ter2")]


def test_a_secret_of_several_lines_is_masked_across_them() -> None:
    book = LogBook(["-----BEGIN KEY-----\nMIIabc\n-----END KEY-----"], first=1)

    lines = book.add(
        [
            log(LogStream.STDOUT, "key:"),
            log(LogStream.STDOUT, "-----BEGIN KEY-----"),
            log(LogStream.STDOUT, "MIIabc"),
            log(LogStream.STDOUT, "-----END KEY-----"),
            log(LogStream.STDOUT, "done"),
        ],
        LATER,
    )
    lines += book.flush(LATER)

    assert [line.text for line in lines] == ["key:", MASK, "done"]
    assert [line.number for line in lines] == [1, 2, 3]


def test_lines_held_back_as_a_possible_secret_come_out_in_the_next_add() -> None:
    book = LogBook(["abc\ndef"], first=1)

    assert book.add([log(LogStream.STDOUT, "abc")], LATER) == []
    lines = book.add([log(LogStream.STDOUT, "xyz")], LATER)

    assert texts(lines) == [(1, "stdout", "abc"), (2, "stdout", "xyz")]


def run_with(
    *statuses: StageStatus, cancelled_by: str | None = None, declined: int | None = None
) -> PipelineRun:
    stages = [
        StageRun(StageSpec(f"s{index}", "busybox:1", ("true",)), status, error=f"e{index}")
        for index, status in enumerate(statuses)
    ]
    if declined is not None:
        stages[declined].decided_by = "bob"
    return PipelineRun(
        "run_1",
        "app",
        "The app",
        1,
        RunStatus.RUNNING,
        TriggerKind.MANUAL,
        "ops",
        "repo",
        "main",
        None,
        AT,
        stages,
        cancelled_by=cancelled_by,
    )


S, F, E, K, C = (
    StageStatus.SUCCESS,
    StageStatus.FAILED,
    StageStatus.ERROR,
    StageStatus.SKIPPED,
    StageStatus.CANCELLED,
)


def test_a_cancelled_run_is_cancelled_whatever_its_stages_did() -> None:
    assert outcome(run_with(E, F, C, cancelled_by="ops")) == (RunStatus.CANCELLED, "cancelled by ops")


def test_an_error_outweighs_a_failure() -> None:
    assert outcome(run_with(F, E, K)) == (RunStatus.ERROR, "stage s1: e1")


def test_a_failure_outweighs_a_decline() -> None:
    assert outcome(run_with(K, F, K, declined=0)) == (RunStatus.FAILED, "stage s1: e1")


def test_a_declined_approval_cancels_the_run() -> None:
    status, error = outcome(run_with(S, K, K, declined=1))

    assert status is RunStatus.CANCELLED
    assert error is not None
    assert "s1" in error


def test_skipped_stages_nobody_declined_do_not_fail_a_run() -> None:
    assert outcome(run_with(S, S)) == (RunStatus.SUCCESS, None)
