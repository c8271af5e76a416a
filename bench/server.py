"""Benchmark server: the real Worpen app plus one no-op route, served like `worpen serve`.

Built exactly as `worpen_api.cli` does it (settings from the environment, configure_logging,
bootstrap, create_app, uvicorn with uvloop + httptools and no access log), then one extra handler,
`POST /bench/noop`, is registered on the app. It sits behind the same middleware (request observer,
API-key authentication) and the same guard as the heartbeat route, and does nothing: it is the floor
against which the heartbeat route is measured.

Not part of the product; used by bench/heartbeat only. Run: python bench/server.py
(configured by WORPEN_* environment variables, like the CLI).
"""

from __future__ import annotations

import logging
import os

import uvicorn
from litestar import post

from worpen_api.app import create_app
from worpen_api.bootstrap import bootstrap
from worpen_api.observability import configure_logging
from worpen_api.security import requires
from worpen_api.settings import Settings
from worpen_core.auth import Permission


@post("/bench/noop", opt=requires(Permission.REPORT), status_code=202)
async def bench_noop() -> None:
    """Same auth, same middleware, same guard as POST /api/v1/internal/heartbeat; no work."""
    return None


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings)
    # As worpen_api.cli._serve does.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(bootstrap(settings))
    app.register(bench_noop)
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
        timeout_graceful_shutdown=10,
    )
    if os.environ.get("WORPEN_BENCH_PROFILE"):
        # Optional: cProfile the whole server run, dumped on clean shutdown (SIGINT/SIGTERM).
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            uvicorn.Server(config).run()
        finally:
            profiler.disable()
            profiler.dump_stats(os.environ["WORPEN_BENCH_PROFILE"])
    else:
        uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
