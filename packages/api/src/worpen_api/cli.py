"""The `worpen` command: serve, migrate, copy the database, and manage API keys."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from types import FrameType
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar

from worpen_api.app import create_app
from worpen_api.bootstrap import TableCopy, bootstrap, copied_table_names, copy_database
from worpen_api.http.access.dto import ApiKeyIn
from worpen_api.observability import configure_logging
from worpen_api.runtime import Worpen
from worpen_api.settings import Settings, SettingsError
from worpen_core.access.model import Role
from worpen_core.shared.errors import WorpenError

COPY_DESCRIPTION = """\
Copy an installation's data to another database: API keys, agents, telemetry (samples, every rollup
tier), events and logs, automation rules and runs, incidents, notification channels and deliveries,
pipelines, their runs, logs and secrets (still encrypted), the audit log. The target is migrated to the
newest schema first; the source must be at it already (run its `worpen migrate`).

The source is read as one consistent snapshot, so it may still be serving, but what it writes afterwards
stays behind: stop it for the final copy. Rows already on the target are left as they are, so running the
command again is safe and copies only what is new (a row changed in the source since it was copied is not
updated). Each table is then checked: at least the source's rows, and its first and last rows by key
present and equal. Exit status 0 when every table arrived, 1 otherwise.

Replicas on the new database need the secrets key of the old installation; the command says where it is.

example:
  worpen db copy --from sqlite+aiosqlite:///var/lib/worpen/worpen.db \\
                 --to postgresql+asyncpg://worpen:secret@db.example:5432/worpen
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worpen", description="Worpen, a fleet-operations control plane.")
    parser.add_argument("--database-url", help="SQLAlchemy async URL (env WORPEN_DATABASE_URL)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API and gRPC")
    serve.add_argument("--host", help="HTTP (and default gRPC) address (env WORPEN_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (env WORPEN_PORT, default 3000)")
    serve.add_argument("--grpc-host", help="gRPC address (env WORPEN_GRPC_HOST, default: the HTTP host)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (env WORPEN_GRPC_PORT, default 3001)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="turn authentication off (loopback only; env WORPEN_AUTH=off)",
    )

    commands.add_parser("migrate", help="apply database migrations (serve does it too)")

    database = commands.add_parser("db", help="move an installation's data to another database")
    copy = database.add_subparsers(dest="action", required=True).add_parser(
        "copy",
        help="copy every table to another database (SQLite to PostgreSQL) and verify it",
        description=COPY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the database to copy (default: this installation's, --database-url or WORPEN_DATABASE_URL)",
    )
    copy.add_argument(
        "--to", dest="target", metavar="URL", required=True, help="the database to copy to (migrated first)"
    )

    apikey = commands.add_parser("apikey", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = apikey.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.add_argument(
        "--agent", action="append", default=[], help="agent id the key may report for (repeatable)"
    )
    create.add_argument("--expires", help="lifetime such as 30d, 12h, 90m")
    apikey.add_parser("list", help="list keys (never their secrets)")
    revoke = apikey.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides: dict[str, Any] = {}
    for flag, name in (
        ("database_url", "database_url"),
        ("host", "host"),
        ("port", "port"),
        ("grpc_host", "grpc_host"),
        ("grpc_port", "grpc_port"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[name] = value
    grpc_host_set = getattr(args, "grpc_host", None) or os.environ.get("WORPEN_GRPC_HOST")
    if getattr(args, "host", None) and not grpc_host_set:
        overrides["grpc_host"] = args.host
    if getattr(args, "insecure_no_auth", False):
        overrides["auth"] = False
    return dataclasses.replace(settings, **overrides) if overrides else settings


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Callable[[], None]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._drain()
        await super().shutdown(sockets)


def serve(app: Litestar, settings: Settings, drain: Callable[[], None]) -> None:
    """Serve `app` (and, through its lifespan, gRPC) until SIGTERM or SIGINT; `drain` is called as the
    server stops taking connections, to end the streams it serves."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # The client address the failed-auth throttle counts: X-Forwarded-For only from the proxies the
        # operator named (uvicorn would otherwise trust it from loopback, letting a local caller rotate it).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        timeout_graceful_shutdown=10,
    )
    # uvicorn re-raises SIGTERM/SIGINT once it has shut down gracefully; by then everything is flushed,
    # so end the way a service manager expects from a clean stop: exit status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    server = _Server(config, drain)
    server.run()
    if not server.started:
        sys.exit("worpen: the server did not start (see the log above)")


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


async def _with_worpen(settings: Settings, job: Callable[[Worpen], Awaitable[None]]) -> None:
    worpen = bootstrap(settings)
    try:
        await worpen.migrate()
        await job(worpen)
    finally:
        await worpen.close()


def _print_keys(keys: Sequence[Any]) -> None:
    rows = [("ID", "NAME", "ROLE", "PREFIX", "AGENTS", "EXPIRES", "REVOKED")]
    for key in keys:
        rows.append(
            (
                key.id,
                key.name,
                key.role.value,
                key.prefix + "…",
                ",".join(key.agent_ids) or "-",
                key.expires_at.isoformat(timespec="seconds") if key.expires_at else "never",
                key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def _apikey(args: argparse.Namespace, worpen: Worpen) -> None:
    if args.action == "create":
        request = msgspec.convert(
            {"name": args.name, "role": args.role, "agents": args.agent, "expiresIn": args.expires},
            ApiKeyIn,
        )
        issued = await worpen.api_keys.issue(request.to_command())
        print(f"created key {issued.key.id} ({issued.key.role.value}); it is shown this once:")
        print(issued.secret)
    elif args.action == "list":
        _print_keys(await worpen.api_keys.list_all())
    else:
        key = await worpen.api_keys.revoke(args.id)
        print(f"revoked key {key.id} ({key.name}); running servers refuse it within their key cache time")


async def _copy(args: argparse.Namespace, settings: Settings) -> bool:
    """`worpen db copy`: a line per table as it is done (the header with the first, so that an error found
    before any table is not printed under one); whether every table arrived."""
    source = args.source or settings.database_url
    names = copied_table_names()
    width = max(map(len, names))

    def done(table: TableCopy) -> None:
        if table.name == names[0]:
            print(f"{'TABLE':<{width}}  {'SOURCE':>10}  {'COPIED':>10}  {'ALREADY THERE':>13}", flush=True)
        print(
            f"{table.name:<{width}}  {table.source_rows:>10}  {table.copied:>10}  {table.already_there:>13}",
            flush=True,
        )
        for problem in table.problems:
            print(f"  {table.name}: {problem}", flush=True)

    report = await copy_database(source, args.target, on_table=done)
    copied = sum(table.copied for table in report.tables)
    print(f"copied {copied} rows into {len(report.tables)} tables")
    if report.verified:
        print("verified: every table has the source's rows (counts, and its first and last rows by key)")
    else:
        failed = [table.name for table in report.tables if table.problems]
        print(f"NOT verified: {', '.join(failed)} differ from the source (see above)")
    print(_secrets_note(settings, source))
    return report.verified


def _secrets_note(settings: Settings, source: str) -> str:
    """Where the key that sealed the copied secrets is, never the key itself."""
    intro = (
        "Secrets were copied still sealed: every replica on the new database needs the key that sealed them,"
    )
    if settings.pipelines.secrets_key:
        return f"{intro} the one this installation has in WORPEN_SECRETS_KEY (give them the same value)."
    key_file = os.path.abspath(settings.pipelines.key_file(source))
    if not os.path.exists(key_file):
        return (
            f"{intro} but there is no key file at {key_file}: if the old installation had one elsewhere, "
            "give its path as WORPEN_SECRETS_KEY_FILE or its contents as WORPEN_SECRETS_KEY."
        )
    return (
        f"{intro} the key file {key_file}: give them its path as WORPEN_SECRETS_KEY_FILE or its contents as "
        "WORPEN_SECRETS_KEY."
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        configure_logging(settings)
        if args.command == "serve":
            worpen = bootstrap(settings)
            serve(create_app(worpen), settings, worpen.drain)
        elif args.command == "migrate":
            asyncio.run(_with_worpen(settings, lambda _: asyncio.sleep(0)))
            print("database is up to date")
        elif args.command == "db":
            if not asyncio.run(_copy(args, settings)):
                sys.exit(1)
        else:
            asyncio.run(_with_worpen(settings, lambda worpen: _apikey(args, worpen)))
    except (SettingsError, msgspec.ValidationError) as exc:
        sys.exit(f"worpen: {exc}")
    except WorpenError as exc:
        sys.exit(f"worpen: {exc.detail}")
