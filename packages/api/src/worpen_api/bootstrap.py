"""The composition root: the only place that builds adapters (worpen_infra) and wires them to core."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from worpen_api.runtime import Hook, Worpen
from worpen_api.settings import Settings
from worpen_core.access import ApiKeys, Authenticator, FailedAuthThrottle
from worpen_core.fleet import Fleet
from worpen_core.ports import Clock, EventBus, UnitOfWorkFactory
from worpen_infra.database import create_engine, upgrade_database
from worpen_infra.grpc_fleet_server import FleetServicer, GrpcFleetServer
from worpen_infra.in_process_event_bus import InProcessEventBus
from worpen_infra.sqlalchemy_unit_of_work import SqlAlchemyUnitOfWorkFactory
from worpen_infra.system_clock import SystemClock


def bootstrap(
    settings: Settings,
    *,
    uow: UnitOfWorkFactory | None = None,
    bus: EventBus | None = None,
    clock: Clock | None = None,
) -> Worpen:
    """Build Worpen from settings with real adapters, unless a test passes its own."""
    clock = clock or SystemClock()
    on_start: list[Hook] = []
    on_stop: list[Hook] = []

    if uow is None:
        engine = create_engine(settings.database_url)
        uow = SqlAlchemyUnitOfWorkFactory(engine)

        async def migrate() -> None:
            await upgrade_database(engine)

        close_database: Hook | None = engine.dispose
    else:

        async def migrate() -> None:
            return None

        close_database = None

    depth: Callable[[], int] = lambda: 0  # noqa: E731
    if bus is None:
        in_process = InProcessEventBus()
        bus = in_process
        depth = lambda: in_process.depth  # noqa: E731

        async def start_bus() -> None:
            in_process.start()

        on_start.append(start_bus)
        on_stop.append(in_process.stop)

    fleet = Fleet(uow, bus, clock, settings.policy)
    throttle = FailedAuthThrottle(clock, settings.auth_failures_per_minute, timedelta(minutes=1))
    authenticator = Authenticator(uow, clock, timedelta(seconds=settings.key_cache_seconds), throttle)
    worpen = Worpen(
        settings=settings,
        fleet=fleet,
        api_keys=ApiKeys(uow, clock),
        authenticator=authenticator,
        event_queue_depth=depth,
        migrate=migrate,
        on_start=on_start,
        on_stop=on_stop,
    )

    grpc_server = GrpcFleetServer(
        lambda: FleetServicer(fleet, authenticator if settings.auth else None),
        settings.grpc_host,
        settings.grpc_port,
    )

    on_start.append(grpc_server.start)
    worpen.stop_intake.append(grpc_server.stop)
    if close_database is not None:
        on_stop.append(close_database)
    return worpen
