"""The agent's side of the command channel against the real local engine: each command kind answers the
Engine API's own JSON or the error the server expects; streams open with one empty message, follow,
take input and end on cancel; events survive the engine going away; the node shell needs --allow-shell."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import tarfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.docker_support import (
    ENGINE_URL,
    SESSION,
    SESSION_LABEL,
    TEST_IMAGE,
    Containers,
    EngineProxy,
)
from worpen_agent.engine import Engine
from worpen_proto.v1 import agent_pb2

pytestmark = pytest.mark.integration

LABELS = {SESSION_LABEL: SESSION}
SDK_LEAKS_FAILED_CONNECTS = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
"""The docker SDK's unix connection does not close its socket when the connect fails (an engine that is
away): the tests that make it fail collect those sockets before they end, and let them go unreported."""


class Outbox:
    """What the engine sent: the `send` of a command."""

    def __init__(self) -> None:
        self.messages: list[agent_pb2.AgentMessage] = []

    async def __call__(self, message: agent_pb2.AgentMessage) -> None:
        self.messages.append(message)

    def result(self) -> agent_pb2.CommandResult:
        results = [m.result for m in self.messages if m.HasField("result")]
        assert len(results) == 1, results
        assert self.messages[-1].HasField("result"), "the result is the command's last message"
        return results[0]

    def output(self) -> bytes:
        return b"".join(m.output.data for m in self.messages if m.HasField("output"))

    def lines(self) -> list[tuple[int, str]]:
        """(stream, text) of every log line, the timestamp checked and left out."""
        lines = []
        for message in self.messages:
            for chunk in message.log_batch.lines:
                stamp, _, text = chunk.line.decode().partition(" ")
                assert stamp.endswith("Z"), chunk.line
                assert stamp[:4].isdigit(), chunk.line
                lines.append((chunk.stream, text.removesuffix("\r")))
        return lines

    def opened(self) -> bool:
        """Whether the stream's first message, an empty one, came."""
        if not self.messages:
            return False
        first = self.messages[0]
        if first.HasField("log_batch"):
            return not first.log_batch.lines
        return first.HasField("output") and not first.output.data

    async def until(self, condition: Callable[[Outbox], bool], what: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not condition(self):
            assert time.monotonic() < deadline, f"timed out after {seconds}s waiting for {what}"
            await asyncio.sleep(0.05)


def command(kind: str, params: dict[str, Any] | None = None, **fields: Any) -> agent_pb2.Command:
    return agent_pb2.Command(
        id=fields.pop("id", uuid.uuid4().hex),
        kind=kind,
        params_json=json.dumps(params or {}).encode(),
        **fields,
    )


async def run(engine: Engine, kind: str, params: dict[str, Any] | None = None, **fields: Any) -> Outbox:
    outbox = Outbox()
    await asyncio.wait_for(engine.handle(command(kind, params, **fields), outbox), 60)
    return outbox


async def ok(engine: Engine, kind: str, params: dict[str, Any] | None = None, **fields: Any) -> Any:
    result = (await run(engine, kind, params, **fields)).result()
    assert result.ok, result.error
    return json.loads(result.result_json)


async def failed(engine: Engine, kind: str, params: dict[str, Any] | None = None, **fields: Any) -> str:
    """The error code of a command that must fail; its message is checked to say something."""
    result = (await run(engine, kind, params, **fields)).result()
    assert not result.ok
    assert result.error.message
    return result.error.code


def started(engine: Engine, kind: str, params: dict[str, Any]) -> tuple[str, Outbox, asyncio.Task[None]]:
    """A streaming command running in the background: its id, its outbox and its task."""
    order = command(kind, params)
    outbox = Outbox()
    return order.id, outbox, asyncio.create_task(engine.handle(order, outbox))


def tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in files.items():
            entry = tarfile.TarInfo(path)
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def name() -> str:
    return f"wt-{SESSION}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def engine(labelled: None) -> AsyncIterator[Engine]:
    served = Engine(ENGINE_URL, allow_shell=True, timeout=10)
    yield served
    await served.close()


async def test_engine_info_is_the_engines_version_and_info(engine: Engine) -> None:
    answer = await ok(engine, "engine.info")
    assert answer["version"]["ApiVersion"]
    assert isinstance(answer["info"]["Containers"], int)


@SDK_LEAKS_FAILED_CONNECTS
async def test_an_engine_that_cannot_be_reached_is_unavailable() -> None:
    engine = Engine("unix:///nonexistent/docker.sock", allow_shell=False, timeout=5)
    try:
        assert await failed(engine, "engine.info") == "unavailable"
    finally:
        await engine.close()
        gc.collect()


async def test_an_unknown_kind_is_unsupported_and_bad_params_are_invalid(engine: Engine) -> None:
    assert await failed(engine, "containers.teleport", {"ref": "x"}) == "unsupported"
    assert await failed(engine, "containers.inspect", {}) == "invalid"
    assert await failed(engine, "containers.stop", {"ref": "x", "grace": "soon"}) == "invalid"
    assert await failed(engine, "system.prune", {"all": "yes"}) == "invalid"
    outbox = Outbox()
    await engine.handle(agent_pb2.Command(id="c1", kind="containers.inspect", params_json=b"[1"), outbox)
    assert outbox.result().error.code == "invalid"


async def test_inspect_answers_the_engines_json_and_an_unknown_ref_is_not_found(
    engine: Engine, containers: Containers
) -> None:
    container = containers.run("sleep 600")
    inspected = await ok(engine, "containers.inspect", {"ref": container.name})
    assert inspected["Id"] == container.id
    assert inspected["State"]["Running"] is True
    stats = await ok(engine, "containers.stats", {"ref": container.id})
    assert "memory_stats" in stats
    assert await failed(engine, "containers.inspect", {"ref": "wt-no-such-container"}) == "not_found"
    assert await failed(engine, "containers.stats", {"ref": "wt-no-such-container"}) == "not_found"


async def test_a_container_is_stopped_started_restarted_and_removed(
    engine: Engine, containers: Containers, docker_client: docker.DockerClient
) -> None:
    ref = str(containers.run("sleep 600").id)
    assert await ok(engine, "containers.stop", {"ref": ref, "grace": 0}) == {}
    assert docker_client.api.inspect_container(ref)["State"]["Status"] == "exited"
    assert await ok(engine, "containers.start", {"ref": ref}) == {}
    assert docker_client.api.inspect_container(ref)["State"]["Running"] is True
    first_start = docker_client.api.inspect_container(ref)["State"]["StartedAt"]
    assert await ok(engine, "containers.restart", {"ref": ref, "grace": 0}) == {}
    assert docker_client.api.inspect_container(ref)["State"]["StartedAt"] != first_start
    assert await failed(engine, "containers.remove", {"ref": ref}) == "conflict"
    assert await ok(engine, "containers.remove", {"ref": ref, "force": True, "volumes": True}) == {}
    assert await failed(engine, "containers.remove", {"ref": ref}) == "not_found"
    assert await failed(engine, "containers.start", {"ref": ref}) == "not_found"


async def test_a_prefix_of_two_containers_ids_is_ambiguous(engine: Engine, containers: Containers) -> None:
    made = [containers.create() for _ in range(20)]
    firsts = [str(c.id)[0] for c in made]
    shared = next(letter for letter in firsts if firsts.count(letter) > 1)
    assert await failed(engine, "containers.inspect", {"ref": shared}) == "ambiguous"


async def test_logs_come_in_batches_of_lines_with_their_stream_after_an_empty_one(
    engine: Engine, containers: Containers
) -> None:
    container = containers.run("echo one; echo two >&2; printf 'no newline'")
    container.wait()
    outbox = await run(engine, "containers.logs", {"ref": container.id, "follow": False})
    assert outbox.opened()
    assert sorted(outbox.lines()) == [(1, "no newline"), (1, "one"), (2, "two")]
    assert json.loads(outbox.result().result_json) == {}

    only_stderr = await run(engine, "containers.logs", {"ref": container.id, "stdout": False, "stderr": True})
    assert only_stderr.lines() == [(2, "two")]
    tail = await run(engine, "containers.logs", {"ref": container.id, "tail": 1, "stderr": False})
    assert tail.lines() == [(1, "no newline")]


async def test_the_log_of_a_container_with_a_tty_is_all_stdout(
    engine: Engine, containers: Containers
) -> None:
    container = containers.run("echo one; echo two >&2", tty=True)
    container.wait()
    outbox = await run(engine, "containers.logs", {"ref": container.id})
    assert outbox.lines() == [(1, "one"), (1, "two")]


async def test_the_log_of_an_unknown_container_is_not_found_without_opening(engine: Engine) -> None:
    outbox = await run(engine, "containers.logs", {"ref": "wt-no-such-container"})
    assert len(outbox.messages) == 1
    assert outbox.result().error.code == "not_found"


async def test_a_followed_log_receives_a_line_printed_later_and_ends_on_cancel(
    engine: Engine, containers: Containers
) -> None:
    container = containers.run("echo first; sleep 2; echo later; sleep 600")
    command_id, outbox, task = started(engine, "containers.logs", {"ref": container.id, "follow": True})
    await outbox.until(lambda o: (1, "first") in o.lines(), "the first line")
    assert outbox.opened()
    assert (1, "later") not in outbox.lines()
    await outbox.until(lambda o: (1, "later") in o.lines(), "the line printed later")
    assert not task.done()
    engine.cancel(command_id)
    await asyncio.wait_for(task, 10)
    assert outbox.result().error.code == "cancelled"


async def test_a_long_log_is_sent_in_batches_of_at_most_a_mebibyte(
    engine: Engine, containers: Containers
) -> None:
    # 3 MiB of 1 KiB lines
    container = containers.run("i=0; while [ $i -lt 3072 ]; do printf '%01023d\\n' $i; i=$((i+1)); done")
    container.wait()
    outbox = await run(engine, "containers.logs", {"ref": container.id})
    batches = [m.log_batch for m in outbox.messages if m.HasField("log_batch") and m.log_batch.lines]
    assert len(outbox.lines()) == 3072
    assert len(batches) >= 3
    assert all(sum(len(line.line) for line in batch.lines) <= 1024 * 1024 for batch in batches)


async def test_an_exec_takes_its_input_from_stdin_commands_and_ends_with_its_exit_code(
    engine: Engine, containers: Containers
) -> None:
    container = containers.run("sleep 600")
    command_id, outbox, task = started(engine, "containers.exec", {"ref": container.id, "command": ["sh"]})
    await outbox.until(Outbox.opened, "the exec to open")
    typed = b"echo h''i; exit 3\n"  # the terminal echoes what is typed: "hi" comes only from the shell
    await engine.handle(command("stdin", {"target": command_id}, data=typed), outbox)
    await asyncio.wait_for(task, 30)
    assert b"hi\r\n" in outbox.output()
    assert json.loads(outbox.result().result_json) == {"exitCode": 3}
    assert (
        await failed(engine, "containers.exec", {"ref": "wt-no-such-container", "command": ["sh"]})
        == "not_found"
    )


async def test_a_cancelled_exec_ends_cancelled(engine: Engine, containers: Containers) -> None:
    container = containers.run("sleep 600")
    command_id, outbox, task = started(engine, "containers.exec", {"ref": container.id, "command": ["sh"]})
    await outbox.until(Outbox.opened, "the exec to open")
    engine.cancel(command_id)
    await asyncio.wait_for(task, 10)
    assert outbox.result().error.code == "cancelled"


async def test_a_wait_answers_the_exit_code_and_a_cancelled_one_ends_cancelled(
    engine: Engine, containers: Containers
) -> None:
    exiting = containers.run("sleep 1; exit 7")
    assert await ok(engine, "containers.wait", {"ref": exiting.id}) == {"exitCode": 7}
    sleeping = containers.run("sleep 600")
    command_id, outbox, task = started(engine, "containers.wait", {"ref": sleeping.id})
    await asyncio.sleep(0.5)
    assert not task.done()
    engine.cancel(command_id)
    await asyncio.wait_for(task, 10)
    assert outbox.result().error.code == "cancelled"
    assert await failed(engine, "containers.wait", {"ref": "wt-no-such-container"}) == "not_found"


async def test_a_command_past_its_deadline_is_timed_out(engine: Engine, containers: Containers) -> None:
    sleeping = containers.run("sleep 600")
    deadline = int(time.time() * 1000) + 500
    started_at = time.monotonic()
    assert await failed(engine, "containers.wait", {"ref": sleeping.id}, deadline_ms=deadline) == "timed_out"
    assert time.monotonic() - started_at < 5


async def test_many_long_commands_leave_the_short_ones_their_threads(
    engine: Engine, containers: Containers
) -> None:
    before = threading.active_count()
    sleeping = containers.run("sleep 600")
    waits = [started(engine, "containers.wait", {"ref": sleeping.id}) for _ in range(50)]
    await asyncio.sleep(1)
    began = time.monotonic()
    assert (await ok(engine, "containers.inspect", {"ref": sleeping.id}))["Id"] == sleeping.id
    assert time.monotonic() - began < 5
    for command_id, _, _ in waits:
        engine.cancel(command_id)
    await asyncio.wait_for(asyncio.gather(*(task for _, _, task in waits)), 10)
    assert all(outbox.result().error.code == "cancelled" for _, outbox, _ in waits)
    deadline = time.monotonic() + 10
    while threading.active_count() > before + 40:  # the shared pool's threads may stay
        assert time.monotonic() < deadline, f"{threading.active_count()} threads left"
        await asyncio.sleep(0.1)


async def test_an_archive_is_put_into_a_container(
    engine: Engine, containers: Containers, docker_client: docker.DockerClient
) -> None:
    container = containers.create()
    archive = tar({"greeting.txt": b"hello"})
    assert await ok(engine, "containers.archive", {"ref": container.id, "path": "/"}, data=archive) == {}
    stream, _ = docker_client.api.get_archive(str(container.id), "/greeting.txt")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as copied:
        member = copied.extractfile("greeting.txt")
        assert member is not None
        assert member.read() == b"hello"
    missing_path = {"ref": container.id, "path": "/no/such/dir"}
    assert await failed(engine, "containers.archive", missing_path, data=archive) == "not_found"


async def test_volumes_are_created_listed_by_label_and_removed(engine: Engine) -> None:
    volume = name()
    label = f"{SESSION_LABEL}={SESSION}"
    assert await ok(engine, "volumes.create", {"name": volume, "labels": LABELS}) == {}
    assert await failed(engine, "volumes.create", {"name": volume, "labels": LABELS}) == "conflict"
    assert volume in (await ok(engine, "volumes.list", {"label": label}))["names"]
    assert await ok(engine, "volumes.remove", {"name": volume}) == {}
    assert volume not in (await ok(engine, "volumes.list", {"label": label}))["names"]
    assert await failed(engine, "volumes.remove", {"name": volume}) == "not_found"


async def test_a_workload_is_created_unprivileged_with_only_its_volume(
    engine: Engine, docker_client: docker.DockerClient
) -> None:
    volume = name()
    await ok(engine, "volumes.create", {"name": volume, "labels": LABELS})
    params = {
        "name": name(),
        "image": TEST_IMAGE,
        "command": ["sh", "-c", "pwd"],
        "env": {"STAGE": "build"},
        "labels": LABELS,
        "volume": volume,
        "mountPath": "/workspace",
    }
    created = await ok(engine, "workloads.create", params)
    inspected = docker_client.api.inspect_container(created["id"])
    host = inspected["HostConfig"]
    assert host["Privileged"] is False
    assert host["Init"] is True
    assert not host["Binds"]
    assert not host["Devices"]
    assert not host["CapAdd"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in inspected["Mounts"]] == [
        ("volume", volume, "/workspace")
    ]
    assert inspected["Config"]["Entrypoint"] == ["sh"]
    assert inspected["Config"]["Cmd"] == ["-c", "pwd"]
    assert inspected["Config"]["WorkingDir"] == "/workspace"
    assert "STAGE=build" in inspected["Config"]["Env"]
    assert await failed(engine, "workloads.create", params) == "conflict"
    missing_image = {**params, "name": name(), "image": "worpen-test/no-such-image:1"}
    assert await failed(engine, "workloads.create", missing_image) == "not_found"


async def test_images_list_holds_the_images_their_histories_and_the_containers(
    engine: Engine, containers: Containers, docker_client: docker.DockerClient
) -> None:
    container = containers.create()
    answer = await ok(engine, "images.list")
    image_id = docker_client.images.get(TEST_IMAGE).id
    assert any(TEST_IMAGE in (image.get("RepoTags") or ()) for image in answer["images"])
    assert answer["histories"][image_id][0]["Id"]
    assert container.id in {c["Id"] for c in answer["containers"]}


async def test_a_pull_from_an_unreachable_registry_fails_soon(engine: Engine) -> None:
    began = time.monotonic()
    outbox = await run(engine, "images.pull", {"image": "127.0.0.1:9/worpen-test/missing:1"})
    result = outbox.result()
    assert result.error.code == "engine_failed"
    assert "127.0.0.1:9" in result.error.message
    assert time.monotonic() - began < 20


async def test_system_df_answers_the_engines_usage_and_networks(engine: Engine) -> None:
    answer = await ok(engine, "system.df")
    assert {"Images", "Containers"} <= answer["df"].keys()
    assert "bridge" in {network["Name"] for network in answer["networks"]}


async def test_the_node_shell_is_forbidden_without_allow_shell() -> None:
    engine = Engine(ENGINE_URL, allow_shell=False, timeout=5)
    try:
        outbox = await run(engine, "shell.open", {"command": ["/bin/sh"]})
        assert outbox.result().error.code == "forbidden"
        assert outbox.result().error.message == "this agent was not started with --allow-shell"
    finally:
        await engine.close()


async def test_the_node_shell_runs_typed_commands_in_the_agents_home(engine: Engine) -> None:
    command_id, outbox, task = started(engine, "shell.open", {"command": ["/bin/sh"]})
    await outbox.until(Outbox.opened, "the shell to open")
    await engine.handle(command("stdin", {"target": command_id}, data=b"echo h''i; pwd; exit 4\n"), outbox)
    await asyncio.wait_for(task, 30)
    assert b"hi\r\n" in outbox.output()
    assert f"{Path.home()}\r\n".encode() in outbox.output()
    assert json.loads(outbox.result().result_json) == {"exitCode": 4}


async def test_a_cancelled_node_shell_is_killed(engine: Engine) -> None:
    command_id, outbox, task = started(engine, "shell.open", {})
    await outbox.until(Outbox.opened, "the shell to open")
    engine.cancel(command_id)
    await asyncio.wait_for(task, 10)
    assert outbox.result().error.code == "cancelled"
    assert await failed(engine, "shell.open", {"command": ["/no/such/program"]}) == "invalid"


async def test_the_inventory_lists_the_engines_containers_and_images(
    engine: Engine, containers: Containers
) -> None:
    container = containers.create()
    inventory = await engine.inventory()
    assert container.id in {c["Id"] for c in json.loads(inventory.containers_json)}
    assert any(TEST_IMAGE in (i.get("RepoTags") or ()) for i in json.loads(inventory.images_json))
    assert abs(inventory.taken_at_ms / 1000 - time.time()) < 10


async def next_event(events: AsyncIterator[agent_pb2.EngineEvent], action: str, container: str) -> None:
    """Read the events until the container named `container` does `action`."""
    async for event in events:
        raw = json.loads(event.event_json)
        actor = raw.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if (raw.get("Type"), raw.get("Action"), attributes.get("name")) == ("container", action, container):
            return


async def test_events_yield_a_started_containers_start(engine: Engine, containers: Containers) -> None:
    events = engine.events()
    container = name()
    waiting = asyncio.ensure_future(next_event(events, "start", container))
    await asyncio.sleep(1)  # the stream opens
    containers.run("sleep 600", name=container)
    await asyncio.wait_for(waiting, 10)
    await events.aclose()


@SDK_LEAKS_FAILED_CONNECTS
async def test_events_missed_while_the_engine_was_away_come_after_it_returns(
    containers: Containers, labelled: None, tmp_path: Path
) -> None:
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    engine = Engine(f"unix://{proxy.path}", allow_shell=False, timeout=5)
    events = engine.events()
    try:
        before, during = name(), name()
        waiting = asyncio.ensure_future(next_event(events, "start", before))
        await asyncio.sleep(1)
        containers.run("sleep 600", name=before)
        await asyncio.wait_for(waiting, 10)
        proxy.stop()
        await asyncio.sleep(1)
        containers.run("sleep 600", name=during)
        proxy.start()
        await asyncio.wait_for(next_event(events, "start", during), 30)
    finally:
        await events.aclose()
        proxy.stop()
        await engine.close()
        gc.collect()
