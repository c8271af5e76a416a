"""The container runtime of an agent's node over a scripted link: each method sends its command kind with
the params agent.proto documents, maps the agent's answers (the Engine API's JSON, recorded from the real
engine in engine_api_samples.json) into what a direct engine would give, and turns the agent's refusals
into the errors a direct engine's answers would have been."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fakes.agents import FakeAgentLink, FakeCommandStream
from worpen_core.agents.model import DOCKER, CommandRefused
from worpen_core.containers.model import (
    ContainerState,
    EngineEvent,
    Health,
    LogLine,
    LogQuery,
    LogStream,
    PortBinding,
    PruneRequest,
    PullProgress,
    WorkloadSpec,
)
from worpen_core.containers.ports import ContainerRuntime, Inventoried
from worpen_core.shared.errors import (
    Ambiguous,
    Conflict,
    EngineFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    TimedOut,
    Unavailable,
    WorpenError,
)
from worpen_infra.agent import AgentContainerRuntime
from worpen_infra.agent import runtime as agent_runtime
from worpen_infra.docker.mapping import REDACTED

T = TypeVar("T")

SAMPLES: dict[str, Any] = json.loads((Path(__file__).parent / "engine_api_samples.json").read_text())
CONTAINERS_JSON = json.dumps(SAMPLES["containers"]).encode()
IMAGE_ID = SAMPLES["images"][0]["Id"]
WEB, DONE, NEW = (SAMPLES["inspect"][name]["Id"] for name in ("web", "done", "new"))
TAKEN_AT = datetime(2026, 12, 1, 18, 58, 45, tzinfo=UTC)
NODE = "bee-001"
DEPENDENCY = f"node {NODE} agent"


def runtime_over(link: FakeAgentLink, timeout: float = 2.0) -> AgentContainerRuntime:
    return AgentContainerRuntime(link, timeout=timeout)


@pytest.fixture
def link() -> FakeAgentLink:
    return FakeAgentLink(NODE, capabilities=[DOCKER])


@pytest.fixture
def runtime(link: FakeAgentLink) -> AgentContainerRuntime:
    return runtime_over(link)


def inventoried(runtime: AgentContainerRuntime, containers: list[dict[str, Any]] | None = None) -> None:
    listed = SAMPLES["containers"] if containers is None else containers
    runtime.take_inventory(json.dumps(listed).encode(), json.dumps(SAMPLES["images"]).encode(), TAKEN_AT)


def with_state(state: str, status: str) -> list[dict[str, Any]]:
    """The sample list with helperb-web in another state."""
    return [{**c, "State": state, "Status": status} if c["Id"] == WEB else c for c in SAMPLES["containers"]]


def event_json(action: str, at: datetime, actor: str = WEB) -> bytes:
    nanos = int(at.timestamp() * 1e9)
    return json.dumps(
        {
            "Type": "container",
            "Action": action,
            "Actor": {"ID": actor, "Attributes": {"name": "helperb-web"}},
            "time": nanos // 10**9,
            "timeNano": nanos,
        }
    ).encode()


async def collect(stream: AsyncIterator[T]) -> list[T]:
    return [item async for item in stream]


async def read_into(stream: AsyncIterator[T], read: list[T]) -> None:
    """Read `stream` into `read`, which keeps what came before it raised."""
    async for item in stream:
        read.append(item)


def last_stream(link: FakeAgentLink) -> FakeCommandStream:
    return link.streams[-1]


async def test_it_is_a_container_runtime_that_lists_from_an_inventory(runtime: AgentContainerRuntime) -> None:
    checked: ContainerRuntime = runtime
    assert checked.node == NODE
    assert isinstance(runtime, Inventoried)


async def test_containers_are_listed_from_the_inventory_without_asking_the_agent(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    assert runtime.inventory_taken_at() is None
    inventoried(runtime)

    listed = {c.name: c for c in await runtime.list_containers()}

    assert link.calls == []
    assert runtime.inventory_taken_at() == TAKEN_AT
    assert set(listed) == {"helperb-web", "helperb-done", "helperb-new"}
    web = listed["helperb-web"]
    assert (web.id, web.node, web.image) == (WEB, NODE, "worpen-test/busybox:1")
    assert web.state is ContainerState.RUNNING
    assert web.health is Health.HEALTHY
    assert web.ports == (PortBinding(80, "tcp", 32768),)
    assert web.labels == {"app": "web", "worpen.helper": "b"}
    assert listed["helperb-done"].state is ContainerState.EXITED
    assert listed["helperb-done"].status.startswith("Exited (3)")
    assert listed["helperb-new"].state is ContainerState.CREATED
    summary = next(c for c in SAMPLES["containers"] if c["Id"] == WEB)
    assert web.created_at == datetime.fromtimestamp(summary["Created"], UTC)


async def test_a_listing_before_the_first_inventory_waits_for_it(runtime: AgentContainerRuntime) -> None:
    async def send_inventory_soon() -> None:
        await asyncio.sleep(0.05)
        inventoried(runtime)

    sending = asyncio.create_task(send_inventory_soon())
    listed = await runtime.list_containers()
    await sending

    assert len(listed) == 3


async def test_a_listing_with_no_inventory_within_the_timeout_names_the_node(link: FakeAgentLink) -> None:
    runtime = runtime_over(link, timeout=0.1)

    with pytest.raises(Unavailable) as raised:
        await runtime.list_containers()

    assert raised.value.dependency == DEPENDENCY
    assert "no inventory" in raised.value.detail


async def test_a_listing_after_a_container_changed_waits_for_the_inventory_showing_it(
    runtime: AgentContainerRuntime,
) -> None:
    inventoried(runtime)
    runtime.take_event(event_json("die", datetime(2026, 12, 1, 18, 59, tzinfo=UTC)))

    async def send_inventory_soon() -> None:
        await asyncio.sleep(0.1)
        runtime.take_inventory(
            json.dumps(with_state("exited", "Exited (137) Less than a second ago")).encode(),
            b"[]",
            datetime(2026, 12, 1, 18, 59, 1, tzinfo=UTC),
        )

    sending = asyncio.create_task(send_inventory_soon())
    listed = {c.name: c for c in await runtime.list_containers()}
    await sending

    assert listed["helperb-web"].state is ContainerState.EXITED


async def test_events_that_change_nothing_listed_or_came_before_the_inventory_do_not_delay_a_listing(
    runtime: AgentContainerRuntime,
) -> None:
    inventoried(runtime)
    runtime.take_event(event_json("exec_die", datetime(2026, 12, 1, 18, 59, tzinfo=UTC)))
    runtime.take_event(event_json("die", datetime(2026, 12, 1, 18, 58, 44, tzinfo=UTC)))

    started = time.monotonic()
    await runtime.list_containers()

    assert time.monotonic() - started < 0.05


async def test_after_a_change_through_the_agent_a_listing_waits_only_briefly_for_a_new_inventory(
    link: FakeAgentLink,
) -> None:
    runtime = runtime_over(link, timeout=0.3)
    inventoried(runtime)
    await runtime.stop("helperb-web", None)

    started = time.monotonic()
    listed = await runtime.list_containers()
    waited = time.monotonic() - started

    assert 0.2 < waited < 1.0
    assert len(listed) == 3  # the last inventory, since no newer one came
    started = time.monotonic()
    await runtime.list_containers()
    assert time.monotonic() - started < 0.05


async def test_an_unreadable_inventory_or_event_is_refused(runtime: AgentContainerRuntime) -> None:
    with pytest.raises(InvalidInput):
        runtime.take_inventory(b'{"not": "a list"}', b"[]", TAKEN_AT)
    with pytest.raises(InvalidInput):
        runtime.take_event(b"[1, 2]")
    assert runtime.inventory_taken_at() is None


async def test_after_the_agent_disconnected_every_call_fails_at_once_naming_the_node(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    inventoried(runtime)
    runtime.disconnected("replaced by a newer connection")

    for call in (
        runtime.list_containers(),
        runtime.inspect("helperb-web"),
        runtime.start("helperb-web"),
        runtime.logs("helperb-web", LogQuery()),
        runtime.pull("busybox"),
        runtime.events(None),
        runtime.put_archive("helperb-web", "/workspace", b"tar"),
    ):
        with pytest.raises(Unavailable) as raised:
            await call
        assert raised.value.dependency == DEPENDENCY
        assert "the agent disconnected (replaced by a newer connection)" in raised.value.detail
    assert link.calls == []


async def test_inspect_maps_the_engine_answer_with_secrets_redacted(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    link.answers["containers.inspect"] = SAMPLES["inspect"]["web"]

    detail = await runtime.inspect("helperb-web")

    assert link.calls == [("containers.inspect", {"ref": "helperb-web"}, b"")]
    assert detail.container.id == WEB
    assert detail.container.node == NODE
    assert detail.container.state is ContainerState.RUNNING
    assert detail.container.ports == (PortBinding(80, "tcp", 32768),)
    assert detail.env["SECRET_TOKEN"] == REDACTED
    assert detail.env["MODE"] == "demo"
    assert detail.restart_policy == "on-failure:2"
    assert detail.command == ("sh", "-c", "echo hello; echo oops >&2; sleep 3600")
    assert detail.health_log


async def test_inspect_of_stopped_and_created_containers_tells_their_exit_codes(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    link.answers["containers.inspect"] = SAMPLES["inspect"]["done"]
    done = await runtime.inspect("helperb-done")
    link.answers["containers.inspect"] = SAMPLES["inspect"]["new"]
    new = await runtime.inspect("helperb-new")

    assert done.exit_code == 3
    assert done.container.status.startswith("Exited (3)")
    assert new.exit_code is None


async def test_usage_and_info_map_the_engine_answers(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    link.answers["containers.stats"] = SAMPLES["stats"]
    link.answers["engine.info"] = {"version": SAMPLES["version"], "info": SAMPLES["info"]}

    usage = await runtime.usage("helperb-web")
    info = await runtime.info()

    assert (usage.cpu_nanos, usage.system_nanos, usage.online_cpus, usage.memory_bytes) == (
        123574521,
        60414590000000,
        2,
        987136,
    )
    assert (info.version, info.api_version, info.os) == ("20.10.24+dfsg1", "1.41", "linux/amd64")
    assert (info.containers, info.images) == (SAMPLES["info"]["Containers"], SAMPLES["info"]["Images"])


async def test_images_are_listed_with_their_layers_and_users(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    link.answers["images.list"] = {
        "images": SAMPLES["images"],
        "containers": SAMPLES["containers"],
        "histories": SAMPLES["histories"],
    }

    [image] = await runtime.list_images()

    assert (image.id, image.name, image.tag, image.node) == (IMAGE_ID, "worpen-test/busybox", "1", NODE)
    assert image.containers == 3
    assert image.total_size == 1985472
    assert [layer.size for layer in image.layers] == [0, 3216, 1982256]
    assert image.layers[1].instruction == "/bin/busybox --install -s /bin"


async def test_an_answer_without_its_parts_is_an_engine_failure_naming_the_node(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    link.answers["images.list"] = {"images": []}

    with pytest.raises(EngineFailed) as raised:
        await runtime.list_images()

    assert raised.value.dependency == DEPENDENCY
    assert "'containers'" in raised.value.detail


async def test_a_dry_run_prune_is_worked_out_from_the_engine_usage(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    link.answers["system.df"] = {"df": SAMPLES["df"], "networks": SAMPLES["networks"]}

    plan = await runtime.prune(PruneRequest(all=True, dry_run=True))

    assert [kind for kind, _, _ in link.calls] == ["system.df"]
    assert plan.dry_run
    assert set(plan.containers.removed) == {DONE, NEW}
    assert plan.images.removed == ()  # the running container uses the only image
    assert plan.networks.removed == ()  # bridge, host and none are never pruned


async def test_a_prune_reports_what_the_engine_removed(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    # Written from the Engine API's reference: pruning the shared engine here would disturb other tests.
    link.answers["system.prune"] = {
        "containers": {"ContainersDeleted": [DONE, NEW], "SpaceReclaimed": 12},
        "images": {
            "ImagesDeleted": [{"Untagged": "old:1"}, {"Deleted": "sha256:0ld"}],
            "SpaceReclaimed": 900,
        },
        "networks": {"NetworksDeleted": ["temp-net"]},
        "build": {"CachesDeleted": None, "SpaceReclaimed": 0},
    }

    report = await runtime.prune(PruneRequest(all=True))

    assert link.calls == [("system.prune", {"all": True}, b"")]
    assert not report.dry_run
    assert report.node == NODE
    assert report.containers.removed == (DONE, NEW)
    assert report.images.removed == ("old:1", "sha256:0ld")
    assert report.images.reclaimed_bytes == 900
    assert report.networks.removed == ("temp-net",)
    assert report.build_cache.removed == ()


async def test_logs_come_in_the_batches_the_agent_sends(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    since = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    batches = await runtime.logs("helperb-web", LogQuery(tail=10, since=since, stderr=False, follow=True))
    stream = last_stream(link)
    stream.feed(
        [], [(kind, line.encode()) for kind, line in SAMPLES["logs"]], [(1, b"2026-12-01T18:59:00.5Z late\r")]
    )
    stream.finish({})

    read = await collect(batches)

    assert stream.kind == "containers.logs"
    assert stream.params == {
        "ref": "helperb-web",
        "tail": 10,
        "since": since.timestamp(),
        "stdout": True,
        "stderr": False,
        "follow": True,
    }
    assert [list(batch) for batch in read] == [
        [
            LogLine(LogStream.STDERR, "oops", datetime(2026, 12, 1, 18, 58, 40, 777230, tzinfo=UTC)),
            LogLine(LogStream.STDOUT, "hello", datetime(2026, 12, 1, 18, 58, 40, 777336, tzinfo=UTC)),
        ],
        [LogLine(LogStream.STDOUT, "late", datetime(2026, 12, 1, 18, 59, 0, 500000, tzinfo=UTC))],
    ]
    assert stream.closed


async def test_leaving_a_log_early_cancels_it_on_the_agent(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    batches = await runtime.logs("helperb-web", LogQuery(follow=True))
    stream = last_stream(link)
    stream.feed([(1, b"2026-12-01T18:58:40.777336477Z hello")])

    async for _ in batches:
        break
    await batches.aclose()  # type: ignore[attr-defined]  # an async generator

    assert stream.closed


async def test_a_log_the_agent_ends_with_an_error_raises_it_as_the_engine_would(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    batches = await runtime.logs("gone", LogQuery(follow=True))
    last_stream(link).fail(CommandRefused("not_found", "No such container: gone"))

    with pytest.raises(NotFound) as raised:
        await collect(batches)

    assert (raised.value.kind, raised.value.identifier) == ("container", "gone")


async def test_a_pull_reports_its_progress_then_ends(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    progress = await runtime.pull("busybox:1.36")
    stream = last_stream(link)
    stream.feed(
        b"",
        b'{"status":"Pulling from library/busybox","id":"1.36"}',
        b'{"status":"Downloading","progressDetail":{"current":1024,"total":2048},"id":"9ad63333ebc9"}',
        b'{"status":"Status: Downloaded newer image for busybox:1.36"}',
    )
    stream.finish({})

    read = await collect(progress)

    assert (stream.kind, stream.params) == ("images.pull", {"image": "busybox:1.36"})
    assert read == [
        PullProgress("Pulling from library/busybox", "1.36"),
        PullProgress("Downloading", "9ad63333ebc9", 1024, 2048),
        PullProgress("Status: Downloaded newer image for busybox:1.36"),
    ]
    assert stream.closed


async def test_a_failed_pull_names_the_registry_through_the_node(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    progress = await runtime.pull("nowhere.invalid/app:1")
    last_stream(link).feed(b'{"error":"Get \\"https://nowhere.invalid/v2/\\": no such host"}')
    with pytest.raises(EngineFailed) as in_stream:
        await collect(progress)

    link.refusals["images.pull"] = CommandRefused("engine_failed", "manifest unknown")
    with pytest.raises(EngineFailed) as at_start:
        await runtime.pull("busybox:nope")

    assert in_stream.value.dependency == "registry of 'nowhere.invalid/app:1' (via node bee-001)"
    assert "no such host" in in_stream.value.detail
    assert at_start.value.dependency == "registry of 'busybox:nope' (via node bee-001)"
    assert "manifest unknown" in at_start.value.detail


async def test_an_exec_is_a_terminal_over_the_command_stream(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    terminal = await runtime.exec("helperb-web", ["sh"])
    stream = last_stream(link)
    stream.feed(b"", b"/ # ")

    first = await terminal.read()
    await terminal.write(b"echo hi\n")
    stream.feed(b"hi\r\n")
    second = await terminal.read()
    stream.finish({"exitCode": 0})
    end = await terminal.read()
    await terminal.close()

    assert (stream.kind, stream.params) == ("containers.exec", {"ref": "helperb-web", "command": ["sh"]})
    assert (first, second, end) == (b"/ # ", b"hi\r\n", b"")
    assert stream.written == [b"echo hi\n"]
    assert stream.closed


async def test_events_fed_by_the_agent_are_read_from_since_until_it_disconnects(
    runtime: AgentContainerRuntime,
) -> None:
    recorded = [json.dumps(event).encode() for event in SAMPLES["events"]]
    since = SAMPLES["events"][2]["timeNano"]
    events = await runtime.events(since)
    for raw in recorded:
        runtime.take_event(raw)
    runtime.disconnected("the stream ended")

    read: list[EngineEvent] = []
    with pytest.raises(Unavailable) as raised:
        await read_into(events, read)

    assert [(e.action, e.time_nanos) for e in read] == [
        (e["Action"], e["timeNano"]) for e in SAMPLES["events"][2:]
    ]
    assert read[-1].actor_id == WEB
    assert read[-1].attributes["name"] == "helperb-web"
    assert raised.value.dependency == DEPENDENCY
    assert "the agent disconnected" in raised.value.detail


async def test_a_reader_waiting_for_events_is_woken_when_the_agent_disconnects(
    runtime: AgentContainerRuntime,
) -> None:
    events = await runtime.events(None)
    reading = asyncio.ensure_future(collect(events))
    await asyncio.sleep(0.01)
    runtime.disconnected("")

    with pytest.raises(Unavailable):
        await asyncio.wait_for(reading, 1)


async def test_a_reader_that_falls_behind_reads_what_was_kept_then_is_told_it_lost_events(
    runtime: AgentContainerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_runtime, "EVENT_BACKLOG", 2)
    events = await runtime.events(None)
    for second in range(4):
        runtime.take_event(event_json("start", datetime(2026, 12, 1, 19, 0, second, tzinfo=UTC)))

    read: list[EngineEvent] = []
    with pytest.raises(Unavailable) as raised:
        await read_into(events, read)

    assert len(read) == 2
    assert "2 engine events were lost" in raised.value.detail


async def test_start_stop_restart_and_remove_send_their_commands(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    await runtime.start("web")
    await runtime.stop("web", 3)
    await runtime.restart("web", None)
    await runtime.remove("web", force=True, volumes=False)

    assert link.calls == [
        ("containers.start", {"ref": "web"}, b""),
        ("containers.stop", {"ref": "web", "grace": 3}, b""),
        ("containers.restart", {"ref": "web", "grace": None}, b""),
        ("containers.remove", {"ref": "web", "force": True, "volumes": False}, b""),
    ]


async def test_a_stop_is_given_its_grace_period_beyond_the_timeout(link: FakeAgentLink) -> None:
    runtime = runtime_over(link, timeout=0.2)
    link.delays["containers.stop"] = link.delays["containers.start"] = 0.5

    await runtime.stop("web", 1)
    with pytest.raises(TimedOut):
        await runtime.start("web")


async def test_a_wait_waits_as_long_as_the_container_runs(link: FakeAgentLink) -> None:
    runtime = runtime_over(link, timeout=0.1)
    link.delays["containers.wait"] = 0.3
    link.answers["containers.wait"] = {"exitCode": 7}

    assert await runtime.wait("job") == 7


async def test_workloads_volumes_and_archives_send_what_agent_proto_documents(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    link.answers["workloads.create"] = {"id": "c0ffee"}
    link.answers["volumes.list"] = {"names": ["wv-2", "wv-1"]}
    spec = WorkloadSpec(
        "run-1", "worpen-test/busybox:1", ("sh", "-c", "make"), {"CI": "1"}, {"w": "1"}, "wv-1"
    )

    created = await runtime.create(spec)
    await runtime.create_volume("wv-1", {"w": "1"})
    names = await runtime.volumes("w=1")
    await runtime.put_archive(created, "/workspace", b"tar bytes")
    await runtime.remove_volume("wv-1")

    assert created == "c0ffee"
    assert names == ["wv-1", "wv-2"]
    assert link.calls == [
        (
            "workloads.create",
            {
                "name": "run-1",
                "image": "worpen-test/busybox:1",
                "command": ["sh", "-c", "make"],
                "env": {"CI": "1"},
                "labels": {"w": "1"},
                "volume": "wv-1",
                "mountPath": "/workspace",
            },
            b"",
        ),
        ("volumes.create", {"name": "wv-1", "labels": {"w": "1"}}, b""),
        ("volumes.list", {"label": "w=1"}, b""),
        ("containers.archive", {"ref": "c0ffee", "path": "/workspace"}, b"tar bytes"),
        ("volumes.remove", {"name": "wv-1"}, b""),
    ]


async def test_refusals_name_what_was_missing_or_clashed(
    link: FakeAgentLink, runtime: AgentContainerRuntime
) -> None:
    link.refusals["workloads.create"] = CommandRefused("not_found", "No such image: nope:1")
    link.refusals["volumes.create"] = CommandRefused("conflict", "volume wv-1 exists")
    link.refusals["containers.archive"] = CommandRefused(
        "not_found", "Could not find the file /nope in container"
    )

    with pytest.raises(NotFound) as image:
        await runtime.create(WorkloadSpec("run-1", "nope:1", ("true",)))
    with pytest.raises(Conflict) as volume:
        await runtime.create_volume("wv-1", {})
    with pytest.raises(NotFound) as path:
        await runtime.put_archive("c0ffee", "/nope", b"tar")
    link.refusals["containers.archive"] = CommandRefused("not_found", "No such container: c0ffee")
    with pytest.raises(NotFound) as container:
        await runtime.put_archive("c0ffee", "/nope", b"tar")

    assert (image.value.kind, image.value.identifier) == ("image", "nope:1")
    assert volume.value.detail == "volume wv-1 exists on node bee-001"
    assert (path.value.kind, path.value.identifier) == ("path", "/nope in container c0ffee")
    assert (container.value.kind, container.value.identifier) == ("container", "c0ffee")


@pytest.mark.parametrize(
    ("code", "error", "detail"),
    [
        ("not_found", NotFound, "container 'helperb' not found"),
        ("ambiguous", Ambiguous, "'helperb' matches more than one container"),
        ("conflict", Conflict, "the message"),
        ("invalid", InvalidInput, "the message"),
        ("engine_failed", EngineFailed, "node bee-001 agent: the message"),
        ("unavailable", Unavailable, "node bee-001 agent unavailable: the message"),
        ("timed_out", TimedOut, "node bee-001 agent: the message"),
        ("forbidden", Forbidden, "node bee-001 agent: the message"),
        ("unsupported", EngineFailed, "node bee-001 agent: unsupported: the message"),
    ],
)
async def test_the_agent_refusals_become_the_errors_a_direct_engine_gives(
    link: FakeAgentLink, runtime: AgentContainerRuntime, code: str, error: type[WorpenError], detail: str
) -> None:
    link.refusals["containers.inspect"] = CommandRefused(code, "the message")

    with pytest.raises(error) as raised:
        await runtime.inspect("helperb")

    assert type(raised.value) is error
    assert raised.value.detail == detail


async def test_the_link_losing_the_agent_or_its_deadline_passes_through(link: FakeAgentLink) -> None:
    runtime = runtime_over(link, timeout=0.05)
    link.delays["containers.inspect"] = link.delays["containers.wait"] = 10

    with pytest.raises(TimedOut):
        await runtime.inspect("web")

    waiting = asyncio.ensure_future(runtime.wait("web"))
    await asyncio.sleep(0.01)
    link.disconnect()
    with pytest.raises(Unavailable) as raised:
        await waiting
    assert raised.value.dependency == DEPENDENCY
