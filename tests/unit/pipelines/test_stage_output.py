"""What a stage shows of its commands and of the end of its output is exactly what it was: a `+` line is the
command as written whatever the image's shell, and the held end of a log comes back as lines."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from worpen_core.containers.model import LogLine, LogStream
from worpen_core.pipelines.executor import LogBook, stage_script

AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "shell",
    [
        pytest.param(["/bin/sh"], id="sh"),
        pytest.param(
            ["dash"], id="dash", marks=pytest.mark.skipif(shutil.which("dash") is None, reason="no dash")
        ),
        pytest.param(
            ["busybox", "sh"],
            id="busybox",
            marks=pytest.mark.skipif(shutil.which("busybox") is None, reason="no busybox"),
        ),
    ],
)
@pytest.mark.parametrize("command", ["printf '%s\\n' done", "echo 'a\\tb\\c'", "echo -n x"])
def test_the_plus_line_is_the_command_as_written(shell: list[str], command: str) -> None:
    done = subprocess.run(
        [*shell, "-c", stage_script([command])], capture_output=True, text=True, timeout=10, check=False
    )

    assert done.stdout.splitlines()[0] == f"+ {command}"


def test_text_held_at_the_end_of_the_stream_comes_back_as_lines() -> None:
    """The log ends with the first line of a secret of two lines: held as a possible secret, it comes back
    at the end as that line (no newline inside a line's text)."""
    book = LogBook(["abc\ndef"], first=1)

    assert book.add([LogLine(LogStream.STDOUT, "abc", AT)], AT) == []
    lines = book.flush(AT)

    assert [(line.number, line.text) for line in lines] == [(1, "abc")]


def test_a_secret_ending_with_a_newline_is_masked_inside_a_line() -> None:
    """A value put with `echo value | ...` or read from a file ends with a newline; the stage prints it
    inside a line (`token=$TOKEN;`), where the newline is not."""
    book = LogBook(["hunter22\n"], first=1)

    lines = book.add([LogLine(LogStream.STDOUT, "token=hunter22;", AT)], AT) + book.flush(AT)

    assert [line.text for line in lines] == ["token=********;"]


def test_masking_a_secret_that_ends_with_a_newline_keeps_the_lines_apart() -> None:
    book = LogBook(["hunter22\n"], first=1)

    lines = book.add(
        [LogLine(LogStream.STDOUT, "token hunter22", AT), LogLine(LogStream.STDOUT, "next", AT)], AT
    ) + book.flush(AT)

    assert [line.text for line in lines] == ["token ********", "next"]
