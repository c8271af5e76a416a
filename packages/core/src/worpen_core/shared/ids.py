"""Agent ids: one rule for every feature that names an agent."""

from __future__ import annotations

import re

from worpen_core.shared.errors import InvalidInput

AGENT_ID_MAX_LENGTH = 128
AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
_agent_id = re.compile(AGENT_ID_PATTERN)


def check_agent_id(value: str, field: str = "id") -> None:
    if not value or len(value) > AGENT_ID_MAX_LENGTH:
        raise InvalidInput(f"must be 1 to {AGENT_ID_MAX_LENGTH} characters long", field)
    if not _agent_id.match(value):
        raise InvalidInput(
            "may hold only letters, digits, '.', '_', ':' and '-', and must start with a letter or digit",
            field,
        )
