"""Secrets never reach a stage's stored or streamed log, however its output is cut into pieces."""

from __future__ import annotations

import itertools
import re

from hypothesis import assume, given
from hypothesis import strategies as st

from worpen_core.pipelines.masking import StreamMask
from worpen_core.pipelines.model import MASK

secret_lists = st.lists(st.text("abc", min_size=1, max_size=5), min_size=1, max_size=3, unique=True)
texts = st.text("abcx\n", max_size=40)
cut_lists = st.lists(st.integers(0, 40), max_size=8)


def masked(text: str, secrets: list[str]) -> str:
    """The text with every secret replaced, the longest one where several start at the same place."""
    pattern = "|".join(re.escape(secret) for secret in sorted(secrets, key=len, reverse=True))
    return re.sub(pattern, MASK, text)


def pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(cut for cut in cuts if cut < len(text))})
    return [text[start:end] for start, end in itertools.pairwise(points)]


def overlap(first: str, second: str) -> bool:
    """Whether an end of `first` begins `second`, or `second` lies inside `first` past its start."""
    ends = any(first.endswith(second[:size]) for size in range(1, min(len(first), len(second))))
    return ends or second in first[1:]


def streamed(secrets: list[str], parts: list[str]) -> list[str]:
    mask = StreamMask(secrets)
    return [mask.feed(part) for part in parts] + [mask.flush()]


@given(secret_lists, texts, cut_lists)
def test_secrets_are_masked_however_the_stream_is_cut(secrets: list[str], text: str, cuts: list[int]) -> None:
    assume(not any(overlap(a, b) for a in secrets for b in secrets if a != b))
    assume(not any(a != b and b.startswith(a) for a in secrets for b in secrets))

    out = streamed(secrets, pieces(text, cuts))

    assert "".join(out) == masked(text, secrets)
    for piece in out:
        assert not any(secret in piece for secret in secrets)


@given(secret_lists, st.lists(st.sampled_from(["x", "\n", "ab", "abc"]), max_size=10), cut_lists)
def test_what_is_held_back_is_shorter_than_the_longest_secret(
    secrets: list[str], words: list[str], cuts: list[int]
) -> None:
    """Memory stays bounded: the mask never holds a whole secret's worth of text."""
    text = "".join(words)
    mask = StreamMask(secrets)
    shown = ""
    for part in pieces(text, cuts):
        shown += mask.feed(part)
    held = mask.flush()

    assert len(held.replace(MASK, "")) < max(len(secret) for secret in secrets)
    assert not any(secret in held for secret in secrets)


def test_a_secret_cut_in_three_is_masked() -> None:
    assert streamed(["hunter2"], ["pass=hun", "te", "r2!"]) == ["pass=", "", "********!", ""]


def test_text_that_only_begins_like_a_secret_is_shown_once_it_cannot_be_one() -> None:
    assert streamed(["hunter2"], ["hunt", "ing"]) == ["", "hunting", ""]


def test_the_end_of_the_stream_gives_back_what_was_held() -> None:
    assert "".join(streamed(["hunter2"], ["a hunte"])) == "a hunte"


def test_without_secrets_everything_passes_at_once() -> None:
    assert streamed([], ["a", "b"]) == ["a", "b", ""]
    assert streamed([""], ["a"]) == ["a", ""]


def test_several_secrets_in_one_piece_are_all_masked() -> None:
    assert "".join(streamed(["s3cr3t", "t0k3n"], ["s3cr3t and t0k3n and s3cr3t"])) == (
        f"{MASK} and {MASK} and {MASK}"
    )
