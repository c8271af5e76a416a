"""The agent's settings: flags or their environment variables, checked before anything starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worpen_agent.config import ConfigError, load, parse_labels


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "agent.key"
    path.write_text("  wpn_abc123\n")
    os.chmod(path, 0o600)
    return path


def required(key_file: Path) -> list[str]:
    return ["--server", "worpen.example:3001", "--id", "bee-001", "--key-file", str(key_file)]


def test_flags_give_the_configuration_with_defaults(key_file: Path) -> None:
    config = load([*required(key_file), "--labels", "region=eu, gpu=false", "--allow-shell"], {})
    assert config.server == "worpen.example:3001"
    assert (config.host, config.port) == ("worpen.example", 3001)
    assert config.agent_id == "bee-001"
    assert config.key == "wpn_abc123"
    assert config.labels == {"region": "eu", "gpu": "false"}
    assert config.allow_shell
    assert config.tls_ca is None
    assert config.docker_url is None
    assert config.backoff_max == 30.0
    assert config.buffer == 1000
    assert config.protocol == 1


def test_every_flag_has_its_environment_variable(key_file: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    config = load(
        [],
        {
            "WORPEN_AGENT_SERVER": "[::1]:3001",
            "WORPEN_AGENT_ID": "bee-002",
            "WORPEN_AGENT_KEY_FILE": str(key_file),
            "WORPEN_AGENT_LABELS": "region=us",
            "WORPEN_AGENT_ALLOW_SHELL": "true",
            "WORPEN_AGENT_TLS_CA": str(ca),
            "WORPEN_AGENT_DOCKER_URL": "tcp://127.0.0.1:2375",
            "WORPEN_AGENT_BACKOFF_MAX": "2.5",
            "WORPEN_AGENT_BUFFER": "50",
            "WORPEN_AGENT_PROTOCOL": "2",
        },
    )
    assert (config.host, config.port) == ("::1", 3001)
    assert config.agent_id == "bee-002"
    assert config.labels == {"region": "us"}
    assert config.allow_shell
    assert config.tls_ca == b"-----BEGIN CERTIFICATE-----\n"
    assert config.docker_url == "tcp://127.0.0.1:2375"
    assert config.backoff_max == 2.5
    assert config.buffer == 50
    assert config.protocol == 2


def test_a_flag_wins_over_its_environment_variable(key_file: Path) -> None:
    config = load(required(key_file), {"WORPEN_AGENT_ID": "other", "WORPEN_AGENT_SERVER": "x:1"})
    assert config.agent_id == "bee-001"
    assert config.server == "worpen.example:3001"


def test_the_key_never_shows_in_the_configurations_repr(key_file: Path) -> None:
    assert "wpn_abc123" not in repr(load(required(key_file), {}))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_others_can_read_is_refused_like_ssh_refuses_a_key(key_file: Path, mode: int) -> None:
    os.chmod(key_file, mode)
    with pytest.raises(ConfigError, match=rf"accessible by group or others \(mode {mode:04o}\).*chmod 600"):
        load(required(key_file), {})


def test_a_missing_or_empty_key_file_is_named(key_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--key-file .*missing\.key"):
        load([*required(key_file)[:4], "--key-file", str(tmp_path / "missing.key")], {})
    key_file.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load(required(key_file), {})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--id", "bee-001"], "--server .* is required"),
        (["--server", "worpen:3001"], "--id .* is required"),
        (["--server", "worpen:3001", "--id", "bee-001"], "--key-file .* is required"),
        (["--server", "worpen", "--id", "bee-001", "--key-file", "k"], "is not host:port"),
        (["--server", "worpen:99999", "--id", "bee-001", "--key-file", "k"], "is not host:port"),
        (["--server", "worpen:3001", "--id", "bee 001", "--key-file", "k"], "is not an agent id"),
    ],
)
def test_missing_and_malformed_settings_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(argv, {})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORPEN_AGENT_BACKOFF_MAX": "0"}, "WORPEN_AGENT_BACKOFF_MAX.*must be positive"),
        ({"WORPEN_AGENT_BACKOFF_MAX": "soon"}, "WORPEN_AGENT_BACKOFF_MAX.*is not a number"),
        ({"WORPEN_AGENT_BUFFER": "1.5"}, "WORPEN_AGENT_BUFFER.*is not a whole number"),
        ({"WORPEN_AGENT_BUFFER": "-1"}, "WORPEN_AGENT_BUFFER.*must be positive"),
        ({"WORPEN_AGENT_ALLOW_SHELL": "maybe"}, "WORPEN_AGENT_ALLOW_SHELL.*is not a boolean"),
        ({"WORPEN_AGENT_LABELS": "region"}, "WORPEN_AGENT_LABELS.*'region' is not name=value"),
    ],
)
def test_bad_values_name_their_variable(key_file: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(required(key_file), env)


def test_shell_stays_off_unless_asked(key_file: Path) -> None:
    assert not load(required(key_file), {}).allow_shell
    assert not load(required(key_file), {"WORPEN_AGENT_ALLOW_SHELL": "0"}).allow_shell


def test_labels_parse_leniently_around_spaces_and_empty_items() -> None:
    assert parse_labels("") == {}
    assert parse_labels("a=1,,b = 2 ,c=") == {"a": "1", "b": "2", "c": ""}
