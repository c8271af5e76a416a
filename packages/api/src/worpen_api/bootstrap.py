"""The composition root: the only place that builds adapters (worpen_infra) and wires them to core."""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Protocol

from worpen_api.grpc.agents import AgentChannelServicer, CommandCounts, fed_runtimes
from worpen_api.grpc.fleet import FleetServicer, GrpcFleetServer, ServerTls
from worpen_api.grpc.relay import AgentRelayServicer, RelayClient, relay_token
from worpen_api.lifecycle import SoleReplica, TelemetryDrops
from worpen_api.runtime import Hook, Readiness, Worpen
from worpen_api.settings import DockerHost, Settings
from worpen_core.access.ports import AccessUnitOfWork, FailedAuthLog
from worpen_core.access.service import ApiKeys, Authenticator, FailedAuthThrottle
from worpen_core.agents.jobs import agent_jobs
from worpen_core.agents.service import Agents, Replicas
from worpen_core.audit.jobs import audit_jobs
from worpen_core.audit.ports import AuditUnitOfWork
from worpen_core.audit.service import AuditTrail
from worpen_core.automation.channels import DeliveryPolicy
from worpen_core.automation.engine import RuleEngine
from worpen_core.automation.jobs import automation_jobs, rule_refresh_jobs
from worpen_core.automation.notification_jobs import notification_jobs
from worpen_core.automation.notifications import Notifications
from worpen_core.automation.notify_ports import NotificationsUnitOfWork
from worpen_core.automation.ports import AutomationUnitOfWork
from worpen_core.automation.service import Automation
from worpen_core.containers.jobs import container_jobs, session_slot_jobs
from worpen_core.containers.ports import ContainerRuntime, SessionSlots
from worpen_core.containers.service import Containers
from worpen_core.dashboard.jobs import dashboard_jobs
from worpen_core.dashboard.service import Dashboard
from worpen_core.dashboard.services import ServiceBoard
from worpen_core.dashboard.throughput import Throughput
from worpen_core.events.jobs import event_jobs
from worpen_core.events.journal import EventJournal
from worpen_core.events.ports import EventBus
from worpen_core.fleet.jobs import fleet_jobs
from worpen_core.fleet.ports import FleetUnitOfWork
from worpen_core.fleet.service import Fleet
from worpen_core.incidents.jobs import incident_jobs
from worpen_core.incidents.ports import IncidentsUnitOfWork
from worpen_core.incidents.service import Incidents
from worpen_core.logs.jobs import log_jobs
from worpen_core.logs.ports import LogsUnitOfWork
from worpen_core.logs.service import CentralLog
from worpen_core.pipelines.executor import ExecutorSettings, PipelineExecutor
from worpen_core.pipelines.feed import StageFeed
from worpen_core.pipelines.jobs import pipeline_jobs
from worpen_core.pipelines.ports import PipelineRequests, PipelinesUnitOfWork
from worpen_core.pipelines.service import Pipelines
from worpen_core.shared.ports import Clock, Leases
from worpen_core.telemetry.jobs import telemetry_jobs
from worpen_core.telemetry.ports import TelemetryUnitOfWork
from worpen_core.telemetry.service import Telemetry
from worpen_infra.agent.relayed import RelayedContainerRuntime
from worpen_infra.agent.runtime import AgentContainerRuntime
from worpen_infra.bus.in_process import InProcessEventBus
from worpen_infra.bus.postgres_signal import STAGES_CHANNEL, PostgresJournalSignal
from worpen_infra.clock import SystemClock
from worpen_infra.crypto.cipher import FernetSecretCipher
from worpen_infra.docker.runtime import DockerContainerRuntime, EngineAddress
from worpen_infra.git.source import GitSourceFetcher
from worpen_infra.notify.webhook import HttpWebhookSender
from worpen_infra.sandbox.mini_racer import MiniRacerSandbox
from worpen_infra.schedule.cron import CronSimCronSchedule
from worpen_infra.sql.agent_stream_repository import SqlAlchemyAgentRegistry
from worpen_infra.sql.auth_failure_repository import SqlAlchemyFailedAuthLog
from worpen_infra.sql.copy import TableCopy as TableCopy  # `worpen db copy` reaches the adapter here
from worpen_infra.sql.copy import copied_table_names as copied_table_names
from worpen_infra.sql.copy import copy_database as copy_database
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.lease_repository import SqlAlchemyLeases, dedicated_engine
from worpen_infra.sql.pipeline_request_repository import SqlAlchemyPipelineRequests
from worpen_infra.sql.readiness import DatabaseReadiness
from worpen_infra.sql.session_slot_repository import SqlAlchemySessionSlots
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory

FIRST_ENGINE_RETRY = 0.5
"""Seconds before the first retry of a lost Docker engine; each retry doubles it, up to a maximum."""
AUTO_RESOLVE_EVERY = 2.0
"""Seconds between two checks of whether pending incidents' conditions cleared."""
SEND_SLACK_BYTES = 1024 * 1024
"""Room for the rest of a command beside the largest data it carries."""
AGENT_REGISTRY_REFRESH = 1.0
"""Seconds between two looks of a replica at the registry of agents' streams (on PostgreSQL): an agent
that connected to another replica is commanded from this one within about that time."""


class Storage(
    FleetUnitOfWork,
    AccessUnitOfWork,
    AuditUnitOfWork,
    LogsUnitOfWork,
    TelemetryUnitOfWork,
    IncidentsUnitOfWork,
    AutomationUnitOfWork,
    NotificationsUnitOfWork,
    PipelinesUnitOfWork,
    Protocol,
):
    """Every feature's repositories in one transaction: what the storage adapter provides."""


StorageFactory = Callable[[], Storage]


def bootstrap(
    settings: Settings,
    *,
    uow: StorageFactory | None = None,
    bus: EventBus | None = None,
    clock: Clock | None = None,
    runtimes: Sequence[ContainerRuntime] | None = None,
) -> Worpen:
    """Build Worpen from settings with real adapters, unless a test passes its own."""
    clock = clock or SystemClock()
    on_start: list[Hook] = []
    on_stop: list[Hook] = []

    if uow is None:
        engine = create_engine(
            settings.database_url,
            pool_size=settings.database.pool_size,
            statement_timeout=settings.database.statement_timeout,
            connect_timeout=settings.database.connect_timeout,
        )
        uow = SqlAlchemyUnitOfWorkFactory(engine)
        # Several replicas may share a PostgreSQL database; one process owns an SQLite one.
        shared = engine.dialect.name == "postgresql"
        # One process leads at once (a lease left by a crash would delay it); on PostgreSQL the lease has
        # a connection of its own, so that renewals never wait behind requests.
        lease_engine = (
            dedicated_engine(
                settings.database_url,
                lease_seconds=settings.replicas.lease_seconds,
                connect_timeout=settings.database.connect_timeout,
            )
            if shared
            else None
        )
        leases: Leases = SqlAlchemyLeases(lease_engine, clock) if lease_engine is not None else SoleReplica()

        async def migrate() -> None:
            await upgrade_database(engine)

        async def close_engines() -> None:
            await engine.dispose()
            if lease_engine is not None:
                await lease_engine.dispose()

        close_database: Hook | None = close_engines
        readiness: Readiness | None = DatabaseReadiness(engine, settings.database.connect_timeout)
        # Each replica records the agents' streams it holds.
        registry = SqlAlchemyAgentRegistry(engine) if shared else None
        # ... and the limits users would see broken if each replica kept its own: failed authentications
        # and open terminal sessions (one process on SQLite keeps them in memory).
        failure_log: FailedAuthLog | None = SqlAlchemyFailedAuthLog(engine) if shared else None
        session_slots: SessionSlots | None = SqlAlchemySessionSlots(engine) if shared else None
        # ... and another replica may drive a pipeline run: cancels and approvals reach it through the store.
        pipeline_requests: PipelineRequests | None = SqlAlchemyPipelineRequests(engine) if shared else None
        if shared:
            # Other replicas may write the journal and the log: followers get them through the tail.
            signal: PostgresJournalSignal | None = PostgresJournalSignal(
                settings.database_url, connect_timeout=settings.database.connect_timeout
            )
        else:
            signal = None
    else:

        async def migrate() -> None:
            return None

        close_database = None
        shared = settings.database_url.startswith("postgresql")
        readiness = None
        leases = SoleReplica()
        registry = None
        failure_log = None
        session_slots = None
        pipeline_requests = None
        signal = None

    policy = settings.log_policy
    journal = EventJournal(
        uow, clock, keep=policy.events_keep, buffer=settings.stream_buffer, prune_batch=policy.prune_batch
    )
    central_log = CentralLog(uow, journal, clock, policy, buffer=settings.stream_buffer, signal=signal)
    if signal is not None:
        on_start.extend((signal.start, central_log.start_tail))
        on_stop.append(signal.close)
    depth: Callable[[], int] = lambda: 0  # noqa: E731
    if bus is None:
        in_process = InProcessEventBus()
        bus = in_process
        depth = lambda: in_process.depth  # noqa: E731

        async def start_bus() -> None:
            in_process.start()

        on_start.append(start_bus)
        on_stop.append(in_process.stop)

    bus.subscribe(central_log.record)
    on_stop.append(central_log.flush)  # after the bus delivered what it had queued
    # Replicas on one PostgreSQL database each hold the fleet: transitions saved against the agent's
    # revision, overdue agents read again before the sweep, and a refresh of the others' changes.
    fleet = Fleet(uow, bus, clock, settings.policy, shared=shared)
    throttle = FailedAuthThrottle(clock, settings.auth_failures_per_minute, timedelta(minutes=1), failure_log)
    authenticator = Authenticator(uow, clock, timedelta(seconds=settings.key_cache_seconds), throttle)
    if runtimes is None:
        dockers = [_docker(host, settings) for host in settings.docker_hosts]
        on_stop.extend(runtime.close for runtime in dockers)
        runtimes = dockers
    audit = AuditTrail(uow, clock, bus)
    containers = Containers(
        runtimes,
        audit,
        clock,
        bus,
        settings.container_limits,
        slots=session_slots,
        replica_id=settings.replicas.replica_id,
        # A new leader (or a restarted server) resumes the configured engines' events where the last stopped.
        published=uow,
    )
    if session_slots is not None:
        on_start.append(containers.forget_slots)
        on_stop.append(containers.forget_slots)
    incidents = Incidents(uow, clock, bus, fleet, containers, audit, settings.incidents)
    sender = HttpWebhookSender(
        allow_private=settings.allow_private_webhooks, timeout=settings.webhook_timeout
    )
    on_stop.append(sender.close)
    notifications = Notifications(
        uow,
        sender,
        audit,
        bus,
        clock,
        DeliveryPolicy(max_attempts=settings.webhook_max_attempts, timeout_seconds=settings.webhook_timeout),
    )
    sandbox = MiniRacerSandbox()
    on_stop.append(sandbox.close)
    cron = CronSimCronSchedule()
    automation = Automation(uow, sandbox, cron, audit, clock, settings.script_limits)

    async def restore_rules() -> None:
        await automation.restore()

    on_start.append(restore_rules)
    rule_engine = RuleEngine(
        uow, automation, journal, sandbox, cron, fleet, containers, incidents, notifications, bus, clock
    )
    pipeline_settings = settings.pipelines
    secrets_key = FernetSecretCipher.load_or_create_key(
        pipeline_settings.secrets_key, pipeline_settings.key_file(settings.database_url)
    )
    cipher = FernetSecretCipher(secrets_key)
    fetcher = GitSourceFetcher(pipeline_settings.local_repos, pipeline_settings.max_source_bytes)
    # Other replicas may run the stages: their writers wake this one's followers, on the signal's connection.
    stage_signal = signal.channel(STAGES_CHANNEL) if signal is not None else None
    stage_feed = StageFeed(settings.stream_buffer, stage_signal)
    executor = PipelineExecutor(
        uow,
        containers,
        fleet,
        fetcher,
        cipher,
        bus,
        clock,
        stage_feed,
        ExecutorSettings(
            node_slots=pipeline_settings.node_slots,
            lease_seconds=pipeline_settings.lease_seconds,
            node_labels=pipeline_settings.node_labels,
            tick_seconds=pipeline_settings.tick_seconds,
        ),
        pipeline_requests,
    )
    pipelines = Pipelines(
        uow,
        executor,
        fetcher,
        cipher,
        cron,
        audit,
        clock,
        stage_feed,
        default_timeout_seconds=pipeline_settings.stage_timeout_seconds,
    )

    async def adopt_runs() -> None:
        await executor.resume()

    api_keys = ApiKeys(uow, clock)
    throughput = Throughput(
        clock,
        [lambda: fleet.heartbeats_ingested, lambda: central_log.lines_ingested, lambda: journal.recorded],
    )
    services = ServiceBoard(containers, clock)
    telemetry = Telemetry(
        uow,
        clock,
        fleet,
        # A bucket is shown once its last samples were flushed and rolled up.
        replace(
            settings.telemetry, settle=timedelta(seconds=settings.flush_interval + settings.rollup_interval)
        ),
    )
    dashboard = Dashboard(fleet, api_keys, throttle, throughput, incidents, clock, auth_enabled=settings.auth)
    command_timeout = settings.agents.command_timeout
    replicas: Replicas | None = None
    relay_servicer: AgentRelayServicer | None = None
    if registry is not None:
        token = relay_token(secrets_key)
        relay = RelayClient(token, registry, tls_root=_read(settings.grpc_tls_cert))
        on_stop.append(relay.close)
        replicas = Replicas(
            registry,
            settings.replicas.replica_id,
            replica_address(settings),
            relay=relay.link,
            runtime_for=lambda link: RelayedContainerRuntime(link, timeout=command_timeout),
        )
    agents = Agents(
        containers,
        fleet,
        clock,
        runtime_for=fed_runtimes(lambda link: AgentContainerRuntime(link, timeout=command_timeout)),
        command_timeout=command_timeout,
        replicas=replicas,
    )
    bus.subscribe(agents.observe)
    if replicas is not None:
        relay_servicer = AgentRelayServicer(agents, token, replicas.replica_id)
        on_start.append(agents.join)
        on_stop.append(agents.leave)
    admitting = authenticator if settings.auth else None
    agent_commands: CommandCounts = Counter()
    agent_channel = AgentChannelServicer(agents, fleet, admitting, agent_commands)
    worpen = Worpen(
        settings=settings,
        fleet=fleet,
        api_keys=api_keys,
        authenticator=authenticator,
        containers=containers,
        audit=audit,
        dashboard=dashboard,
        services=services,
        journal=journal,
        logs=central_log,
        telemetry=telemetry,
        notifications=notifications,
        incidents=incidents,
        automation=automation,
        rule_engine=rule_engine,
        pipelines=pipelines,
        pipeline_executor=executor,
        agents=agents,
        event_queue_depth=depth,
        migrate=migrate,
        agent_commands=agent_commands,
        jobs=[
            *fleet_jobs(
                fleet,
                sweep_every=settings.sweep_interval,
                flush_every=settings.flush_interval,
                flush=agent_channel.acknowledging(TelemetryDrops(fleet).flush),
            ),
            *audit_jobs(audit, flush_every=settings.flush_interval),
            *event_jobs(journal, prune_every=policy.prune_every),
            *log_jobs(central_log, flush_every=settings.flush_interval),
            *container_jobs(containers, first_retry=FIRST_ENGINE_RETRY, max_retry=settings.docker_retry_max),
            *(session_slot_jobs(containers) if session_slots is not None else []),
            *dashboard_jobs(throughput, services, sample_every=settings.service_sample_interval),
            *notification_jobs(notifications),
            *incident_jobs(incidents, every=AUTO_RESOLVE_EVERY),
            *automation_jobs(rule_engine, tick=settings.automation_tick),
            *(rule_refresh_jobs(automation, every=settings.automation_tick) if fleet.shared else []),
            *pipeline_jobs(pipelines, executor, tick=pipeline_settings.tick_seconds, feed=stage_feed),
            *telemetry_jobs(
                telemetry, rollup_every=settings.rollup_interval, retention_every=settings.retention_interval
            ),
            *(agent_jobs(agents, refresh_every=AGENT_REGISTRY_REFRESH) if replicas is not None else []),
        ],
        on_start=on_start,
        on_stop=on_stop,
        leases=leases,
        # The leader drives the pipeline runs under way, with the rules as stored now.
        on_elected=[restore_rules, adopt_runs],
        on_deposed=[executor.close],
    )

    grpc_server = GrpcFleetServer(
        lambda: FleetServicer(fleet, admitting),
        settings.grpc_host,
        settings.grpc_port,
        agent_channel=agent_channel,
        agent_relay=relay_servicer,
        tls=(
            None
            if settings.grpc_tls_cert is None or settings.grpc_tls_key is None
            else ServerTls(settings.grpc_tls_cert, settings.grpc_tls_key)
        ),
        # A pipeline's source archive travels to an agent's node as one command.
        max_send_bytes=pipeline_settings.max_source_bytes + SEND_SLACK_BYTES,
    )

    on_start.append(grpc_server.start)
    worpen.stop_intake.append(grpc_server.stop)
    worpen.stop_intake.append(executor.close)
    if close_database is not None:
        on_stop.append(close_database)
    if readiness is not None:
        worpen.readiness = readiness
    return worpen


def replica_address(settings: Settings) -> str:
    """Where the other replicas reach this one's gRPC server: WORPEN_REPLICA_ADDRESS, else the gRPC host
    (this machine's name when it listens on every address) and port."""
    if settings.replicas.address:
        return settings.replicas.address
    host = settings.grpc_host
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"[{host}]:{settings.grpc_port}" if ":" in host else f"{host}:{settings.grpc_port}"


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


def _docker(host: DockerHost, settings: Settings) -> DockerContainerRuntime:
    tls = host.tls_dir
    address = EngineAddress(
        node=host.node,
        url=host.url,
        tls_ca=None if tls is None else os.path.join(tls, "ca.pem"),
        tls_cert=None if tls is None else os.path.join(tls, "cert.pem"),
        tls_key=None if tls is None else os.path.join(tls, "key.pem"),
        tls_verify=settings.docker_tls_verify,
    )
    return DockerContainerRuntime(address, timeout=settings.docker_timeout)
