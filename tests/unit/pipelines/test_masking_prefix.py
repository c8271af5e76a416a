"""A secret that begins another (`abc` and `abcdef`): the longer one is masked whole whatever the cuts, so
no part of it shows."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from worpen_core.pipelines.masking import StreamMask
from worpen_core.pipelines.model import MASK


def streamed(secrets: list[str], parts: list[str]) -> str:
    mask = StreamMask(secrets)
    return "".join([mask.feed(part) for part in parts] + [mask.flush()])


def test_a_longer_secret_that_begins_with_a_shorter_one_is_masked_whole_when_cut() -> None:
    secrets = ["pass", "password123"]

    assert streamed(secrets, ["my password123 is"]) == f"my {MASK} is"
    assert streamed(secrets, ["my pass", "word123 is"]) == f"my {MASK} is"


@given(
    st.text("ab", min_size=1, max_size=3),
    st.text("ab", min_size=1, max_size=3),
    st.lists(st.sampled_from(["x", "a", "b"]), max_size=4),
    st.integers(0, 30),
)
def test_prefix_secrets_are_masked_wherever_the_stream_is_cut(
    short: str, rest: str, around: list[str], cut: int
) -> None:
    secrets = [short, short + rest]
    text = "x" + "".join(around) + "x" + short + rest + "x" + "".join(around)
    pattern = "|".join(re.escape(secret) for secret in sorted(secrets, key=len, reverse=True))
    cut = min(cut, len(text))

    assert streamed(secrets, [text[:cut], text[cut:]]) == re.sub(pattern, MASK, text)
