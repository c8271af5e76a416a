"""An env value the engine cannot take is refused with the definition, naming its stage and field,
rather than found out when the stage's container is created."""

from __future__ import annotations

import pytest

from tests.fakes.pipelines_support import stage
from worpen_core.pipelines.commands import stages_of
from worpen_core.shared.errors import InvalidInput


def test_an_env_value_with_a_nul_character_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        stages_of((stage("build", env={"GREETING": "hello\x00world"}),))

    assert caught.value.field == "stages[0].env"
