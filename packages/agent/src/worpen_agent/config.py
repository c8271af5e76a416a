"""The agent's configuration: command-line flags, each with an environment variable, checked up front so a
bad setting stops the program at once (exit code 2) with a message naming it."""

from __future__ import annotations

import argparse
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from worpen_agent.version import PROTOCOL, agent_version

_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""The server's rule for agent ids (worpen_core.shared.ids), repeated so a typo fails here, not later."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class ConfigError(Exception):
    """A setting that cannot be used; the message names the flag and its environment variable."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    server: str
    agent_id: str
    key: str = field(repr=False)
    labels: Mapping[str, str] = field(default_factory=dict)
    allow_shell: bool = False
    tls_ca: bytes | None = field(default=None, repr=False)
    docker_url: str | None = None
    backoff_max: float = 30.0
    buffer: int = 1000
    protocol: int = PROTOCOL

    @property
    def host(self) -> str:
        return split_server(self.server)[0]

    @property
    def port(self) -> int:
        return split_server(self.server)[1]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worpen-agent",
        description="Report this node's metrics and serve its Docker engine to Worpen over one outbound "
        "gRPC stream. Every flag can be set by its environment variable instead.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {agent_version()}")
    parser.add_argument("--server", help="Worpen's gRPC address, host:port (WORPEN_AGENT_SERVER)")
    parser.add_argument("--id", dest="agent_id", help="this node's agent id, e.g. bee-001 (WORPEN_AGENT_ID)")
    parser.add_argument(
        "--key-file",
        help="file holding the agent's API key, readable by its owner only (WORPEN_AGENT_KEY_FILE)",
    )
    parser.add_argument("--labels", help="node labels, e.g. region=eu,gpu=false (WORPEN_AGENT_LABELS)")
    parser.add_argument(
        "--allow-shell",
        action="store_true",
        default=None,
        help="let Worpen's operators open a shell on this node (WORPEN_AGENT_ALLOW_SHELL=1)",
    )
    parser.add_argument(
        "--tls-ca", help="CA certificate (PEM) to verify the server with TLS (WORPEN_AGENT_TLS_CA)"
    )
    parser.add_argument(
        "--docker-url",
        help="the Docker engine, e.g. unix:///var/run/docker.sock (WORPEN_AGENT_DOCKER_URL; default: "
        "DOCKER_HOST or the local socket)",
    )
    parser.add_argument(
        "--backoff-max",
        help="longest wait between reconnection attempts, seconds (WORPEN_AGENT_BACKOFF_MAX, default 30)",
    )
    parser.add_argument(
        "--buffer",
        help="heartbeats and events kept while disconnected; beyond, the oldest are dropped "
        "(WORPEN_AGENT_BUFFER, default 1000)",
    )
    return parser


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """The configuration from `argv` (flags win) and `environ`; argparse exits with 2 on a bad flag and
    ConfigError is raised for a bad value."""
    args = parser().parse_args(argv)
    env = os.environ if environ is None else environ

    def setting(value: str | None, name: str) -> str | None:
        return value if value is not None else env.get(name)

    server = setting(args.server, "WORPEN_AGENT_SERVER")
    if not server:
        raise ConfigError("--server (WORPEN_AGENT_SERVER) is required: Worpen's gRPC address, host:port")
    split_server(server)
    agent_id = setting(args.agent_id, "WORPEN_AGENT_ID")
    if not agent_id:
        raise ConfigError("--id (WORPEN_AGENT_ID) is required: this node's agent id")
    if not _AGENT_ID.match(agent_id):
        raise ConfigError(
            f"--id (WORPEN_AGENT_ID) {agent_id!r} is not an agent id: 1 to 128 letters, digits, '.', '_', "
            "':' or '-', starting with a letter or digit"
        )
    key_file = setting(args.key_file, "WORPEN_AGENT_KEY_FILE")
    if not key_file:
        raise ConfigError("--key-file (WORPEN_AGENT_KEY_FILE) is required: the file holding the API key")
    tls_ca = setting(args.tls_ca, "WORPEN_AGENT_TLS_CA")
    allow_shell = True if args.allow_shell else _flag(env.get("WORPEN_AGENT_ALLOW_SHELL", ""))
    return AgentConfig(
        server=server,
        agent_id=agent_id,
        key=read_key(Path(key_file)),
        labels=parse_labels(setting(args.labels, "WORPEN_AGENT_LABELS") or ""),
        allow_shell=allow_shell,
        tls_ca=_read_ca(Path(tls_ca)) if tls_ca else None,
        docker_url=setting(args.docker_url, "WORPEN_AGENT_DOCKER_URL") or None,
        backoff_max=_number(
            setting(args.backoff_max, "WORPEN_AGENT_BACKOFF_MAX"),
            "--backoff-max (WORPEN_AGENT_BACKOFF_MAX)",
            30.0,
        ),
        buffer=int(
            _number(setting(args.buffer, "WORPEN_AGENT_BUFFER"), "--buffer (WORPEN_AGENT_BUFFER)", 1000, True)
        ),
        protocol=int(_number(env.get("WORPEN_AGENT_PROTOCOL"), "WORPEN_AGENT_PROTOCOL", PROTOCOL, True)),
    )


def split_server(server: str) -> tuple[str, int]:
    """host:port, or [v6 address]:port."""
    host, _, port = server.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--server (WORPEN_AGENT_SERVER) {server!r} is not host:port, e.g. worpen.example:3001"
        )
    return host, int(port)


def parse_labels(text: str) -> dict[str, str]:
    """region=eu,gpu=false as a mapping; a later duplicate wins."""
    labels: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--labels (WORPEN_AGENT_LABELS): {item!r} is not name=value")
        labels[name.strip()] = value.strip()
    return labels


def read_key(path: Path) -> str:
    """The API key in `path`, refused (as ssh refuses a private key) if group or others can read it: a key
    others can read has leaked already."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--key-file (WORPEN_AGENT_KEY_FILE) {path}: {exc.strerror or exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"--key-file (WORPEN_AGENT_KEY_FILE) {path} is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):04o}): the key is refused; make it private with chmod 600 {path}"
        )
    key = text.strip()
    if not key:
        raise ConfigError(
            f"--key-file (WORPEN_AGENT_KEY_FILE) {path} is empty: write the agent's API key in it"
        )
    return key


def _read_ca(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--tls-ca (WORPEN_AGENT_TLS_CA) {path}: {exc.strerror or exc}") from exc


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"WORPEN_AGENT_ALLOW_SHELL={value!r} is not a boolean (1/0, true/false, yes/no)")


def _number(value: str | None, name: str, default: float, integer: bool = False) -> float:
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value) if integer else float(value)
    except ValueError as exc:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name} {value!r} is not {kind}") from exc
    if not number > 0 or number == float("inf"):
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number
