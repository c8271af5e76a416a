"""Benchmark server: the real Worpen app plus one no-op route, served like `worpen serve`.

Built and served exactly as `worpen serve` does it (settings from the environment, configure_logging,
bootstrap, create_app, `worpen_api.cli.serve`), with one extra handler, `POST /bench/noop`, registered
on the app. It sits behind the same middleware (request observer, API-key authentication) and needs the
same permission as the heartbeat route, and does nothing: it is the floor against which the heartbeat
route is measured.

Not part of the product; used by bench/heartbeat only. Run: python bench/server.py
(configured by WORPEN_* environment variables, like the CLI).
"""

from __future__ import annotations

from litestar import post

from worpen_api.app import create_app
from worpen_api.bootstrap import bootstrap
from worpen_api.cli import serve
from worpen_api.observability import configure_logging
from worpen_api.security import requires
from worpen_api.settings import Settings
from worpen_core.auth import Permission


@post("/bench/noop", opt=requires(Permission.REPORT), status_code=202)
async def bench_noop() -> None:
    """Same auth, same middleware, same permission as POST /api/v1/internal/heartbeat; no work."""
    return None


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings)
    worpen = bootstrap(settings)
    app = create_app(worpen)
    app.register(bench_noop)
    serve(app, settings, worpen.drain)


if __name__ == "__main__":
    main()
