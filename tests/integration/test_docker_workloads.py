"""The container runtime running work on the real local engine: workspace volumes, containers created
with nothing but a named volume, an archive copied into a created container's volume, and waits for exit
codes that neither starve the engine's other calls nor outlive the engine."""

from __future__ import annotations

import asyncio
import io
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest

from tests.integration.docker_support import (
    ENGINE_URL,
    SESSION,
    SESSION_LABEL,
    TEST_IMAGE,
    EngineProxy,
    wait_for,
)
from worpen_core.containers.model import WorkloadSpec
from worpen_core.shared.errors import Conflict, NotFound, Unavailable
from worpen_infra.docker.runtime import DockerContainerRuntime, EngineAddress

pytestmark = pytest.mark.integration

LABELS = {SESSION_LABEL: SESSION}


def _name() -> str:
    return f"wt-{SESSION}-{uuid.uuid4().hex[:8]}"


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in files.items():
            entry = tarfile.TarInfo(path)
            entry.size = len(data)
            entry.mode = 0o644
            archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def _spec(script: str, volume: str | None = None, env: dict[str, str] | None = None) -> WorkloadSpec:
    return WorkloadSpec(
        name=_name(),
        image=TEST_IMAGE,
        command=("sh", "-c", script),
        env=env or {},
        labels=LABELS,
        volume=volume,
    )


@pytest.fixture
async def runtime(labelled: None) -> AsyncIterator[DockerContainerRuntime]:
    engine = DockerContainerRuntime(EngineAddress("local", ENGINE_URL), timeout=10)
    yield engine
    await engine.close()


async def _volume(runtime: DockerContainerRuntime) -> str:
    name = _name()
    await runtime.create_volume(name, LABELS)
    return name


def _logs(client: docker.DockerClient, ref: str) -> str:
    return bytes(client.containers.get(ref).logs()).decode()


async def test_an_archive_copied_into_a_created_container_lands_in_a_volume_that_outlives_it(
    runtime: DockerContainerRuntime, docker_client: docker.DockerClient
) -> None:
    volume = await _volume(runtime)
    first = await runtime.create(
        _spec("cat src/hello.txt && echo from-the-first > out.txt", volume, env={"STAGE": "one"})
    )
    await runtime.put_archive(first, "/workspace", _tar({"src/hello.txt": b"hello from the archive\n"}))
    await runtime.start(first)
    assert await runtime.wait(first) == 0

    second = await runtime.create(_spec('cat /workspace/out.txt; echo "stage $STAGE"; exit 3', volume))
    await runtime.start(second)

    assert await runtime.wait(second) == 3
    assert _logs(docker_client, first) == "hello from the archive\n"
    assert _logs(docker_client, second) == "from-the-first\nstage \n"


async def test_a_workload_runs_unprivileged_with_its_volume_and_nothing_of_the_host(
    runtime: DockerContainerRuntime, docker_client: docker.DockerClient
) -> None:
    volume = await _volume(runtime)
    spec = _spec("true", volume, env={"STAGE": "build"})
    ref = await runtime.create(spec)

    raw = docker_client.api.inspect_container(ref)
    host = raw["HostConfig"]
    assert raw["Name"] == f"/{spec.name}"
    assert raw["State"]["Status"] == "created"
    assert host["Privileged"] is False
    assert not host["Binds"]
    assert not host["Devices"]
    assert not host["CapAdd"]
    assert host["NetworkMode"] == "default"
    assert host["AutoRemove"] is False
    assert host["Init"] is True
    assert [(m["Type"], m["Source"], m["Target"]) for m in host["Mounts"]] == [
        ("volume", volume, "/workspace")
    ]
    assert raw["Config"]["WorkingDir"] == "/workspace"
    assert [*raw["Config"]["Entrypoint"], *raw["Config"]["Cmd"]] == ["sh", "-c", "true"]
    assert "STAGE=build" in raw["Config"]["Env"]
    assert raw["Config"]["Labels"][SESSION_LABEL] == SESSION


async def test_a_missing_image_is_not_found_and_not_pulled_and_a_taken_name_conflicts(
    runtime: DockerContainerRuntime, docker_client: docker.DockerClient
) -> None:
    absent = f"worpen-test/absent-{SESSION}:1"
    with pytest.raises(NotFound) as missing:
        await runtime.create(WorkloadSpec(name=_name(), image=absent, command=("true",), labels=LABELS))
    assert (missing.value.kind, missing.value.identifier) == ("image", absent)
    assert not docker_client.images.list(name=absent.partition(":")[0])

    spec = _spec("true")
    await runtime.create(spec)
    with pytest.raises(Conflict):
        await runtime.create(spec)


async def test_copying_into_an_unknown_container_or_path_is_not_found(
    runtime: DockerContainerRuntime,
) -> None:
    ref = await runtime.create(_spec("true"))
    archive = _tar({"a.txt": b"a"})

    with pytest.raises(NotFound) as no_container:
        await runtime.put_archive(f"wt-{SESSION}-absent", "/", archive)
    with pytest.raises(NotFound) as no_path:
        await runtime.put_archive(ref, "/no/such/dir", archive)

    assert no_container.value.kind == "container"
    assert no_path.value.kind == "path"


async def test_volumes_are_listed_by_label_and_removed_once_no_container_uses_them(
    runtime: DockerContainerRuntime,
) -> None:
    name = _name()
    await runtime.create_volume(name, {**LABELS, "worpen.test.kind": "workspace"})

    assert name in await runtime.volumes(f"{SESSION_LABEL}={SESSION}")
    assert name in await runtime.volumes("worpen.test.kind")
    assert name not in await runtime.volumes("worpen.test.kind=cache")
    with pytest.raises(Conflict):
        await runtime.create_volume(name, LABELS)

    user = await runtime.create(_spec("true", name))
    with pytest.raises(Conflict):
        await runtime.remove_volume(name)
    await runtime.remove(user, force=True, volumes=False)
    await runtime.remove_volume(name)

    assert name not in await runtime.volumes(SESSION_LABEL)
    with pytest.raises(NotFound):
        await runtime.remove_volume(name)


async def test_a_workload_killed_by_a_stop_without_grace_exits_137(runtime: DockerContainerRuntime) -> None:
    ref = await runtime.create(_spec("trap '' TERM; sleep 600"))
    await runtime.start(ref)
    waiting = asyncio.create_task(runtime.wait(ref))

    await runtime.stop(ref, 0)

    assert await asyncio.wait_for(waiting, 30) == 137


async def test_a_stopped_shell_gets_the_stop_signal_through_the_init_process(
    runtime: DockerContainerRuntime,
) -> None:
    """Without an init process the shell, PID 1, would ignore TERM and be killed when the grace ends."""
    ref = await runtime.create(_spec("sleep 600"))
    await runtime.start(ref)
    waiting = asyncio.create_task(runtime.wait(ref))

    began = time.monotonic()
    await runtime.stop(ref, 30)

    assert await asyncio.wait_for(waiting, 60) == 143
    assert time.monotonic() - began < 30


async def test_a_container_removed_while_waited_for_reports_that_it_was_killed(
    runtime: DockerContainerRuntime,
) -> None:
    ref = await runtime.create(_spec("sleep 600"))
    await runtime.start(ref)
    waiting = asyncio.create_task(runtime.wait(ref))

    await runtime.remove(ref, force=True, volumes=False)

    assert await asyncio.wait_for(waiting, 30) == 137
    with pytest.raises(NotFound):
        await runtime.wait(ref)


async def test_many_waits_leave_the_engine_calls_their_threads(labelled: None) -> None:
    runtime = DockerContainerRuntime(EngineAddress("local", ENGINE_URL), timeout=10, threads=2)
    try:
        refs = [await runtime.create(_spec("sleep 600")) for _ in range(4)]
        for ref in refs:
            await runtime.start(ref)
        waits = [asyncio.create_task(runtime.wait(ref)) for ref in refs]
        await asyncio.sleep(0.5)

        info = await asyncio.wait_for(runtime.info(), 15)
        listed = {c.id for c in await asyncio.wait_for(runtime.list_containers(), 15)}

        assert info.version
        assert set(refs) <= listed
        assert not any(task.done() for task in waits)
        for ref in refs:
            await runtime.stop(ref, 30)
        assert await asyncio.wait_for(asyncio.gather(*waits), 30) == [143] * 4
    finally:
        await runtime.close()


async def test_a_cancelled_wait_frees_its_thread(runtime: DockerContainerRuntime) -> None:
    ref = await runtime.create(_spec("sleep 600"))
    await runtime.start(ref)
    waiting = asyncio.create_task(runtime.wait(ref))
    await asyncio.sleep(0.5)

    def waiters() -> int:
        return sum(thread.name == "docker-local-wait" for thread in threading.enumerate())

    assert waiters() == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    wait_for(lambda: waiters() == 0, "the waiting thread to end", seconds=10)


async def test_a_wait_ends_unavailable_when_the_engine_goes_away(
    runtime: DockerContainerRuntime,
) -> None:
    ref = await runtime.create(_spec("sleep 600"))
    await runtime.start(ref)
    with tempfile.TemporaryDirectory(prefix="wt-") as directory:
        socket_path = Path(directory) / "engine.sock"
        proxy = EngineProxy(socket_path)
        proxy.start()
        through_proxy = DockerContainerRuntime(EngineAddress("proxied", f"unix://{socket_path}"), timeout=10)
        try:
            waiting = asyncio.create_task(through_proxy.wait(ref))
            await asyncio.sleep(0.5)
            assert not waiting.done()

            proxy.stop()

            with pytest.raises(Unavailable):
                await asyncio.wait_for(waiting, 15)
        finally:
            proxy.stop()
            await through_proxy.close()
