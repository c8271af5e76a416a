"""Simulated agents for bench/agents: many agents over real gRPC streams (AgentChannel.Connect), in one
process with one event loop.

    python bench/agent_swarm.py --target HOST:PORT --keys K1,K2 --agents N --channels C --metrics URL \
        --admin-key KEY --server-pid PID

Agent i is `{prefix}{i:04d}` and authenticates with key i // 1000 of --keys (an agent key is bound to at
most 1,000 ids). Its stream is one of the --channels channels' (each its own TCP connection). Every agent
speaks the real protocol: Hello, waits for Welcome, sends its Inventory (three containers and two images,
the Docker Engine API's JSON) and a heartbeat, then heartbeats at the pace the server sets and answers
commands: ping, sync (a fresh Inventory and heartbeat, then the result), containers.inspect (the Engine
API's JSON of one of its containers, or not_found), engine.info, containers.stats and images.list from
canned JSON; any other kind is answered "unsupported".

It prints one JSON line on stdout once every agent is connected, then reads commands from stdin, one a
line, and answers each with one JSON line:

    load SECONDS RAMP QUEUE RATE
        heartbeats from every agent in turn: paced heartbeats pause and, once the server's count settled,
        credits are released every TICK seconds, each letting the next agent in line send one. With a
        RATE, RATE a second in all, at most QUEUE sent and not yet counted by the server (its
        worpen_heartbeats_ingested_total, polled every POLL seconds). With RATE 0, as fast as the server
        takes them: the rate follows the server's count so that about QUEUE wait (at most twice as many),
        which keeps the server busy without piling heartbeats up in the streams. Answers {"phase":
        "started"} when the credits start, then the server's count and CPU over SECONDS after RAMP, the
        swarm's own CPU, and how long the agents took to answer commands meanwhile, once the server
        counted every heartbeat sent (or DRAIN_TIMEOUT passed).
    handled
        p50 and p99 of the milliseconds the agents took from reading a command to writing its result,
        since the last `handled` or `load`.
    stop
        ends every stream (done writing), waits for the server to close them, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from heartbeat_bench import _cpu_seconds

from worpen_proto.v1 import agent_pb2, agent_pb2_grpc, fleet_pb2

PROTOCOL = 1
VERSION = "0.0.0-bench"
KEY_IDS = 1000
"""Agent ids per agent key (the API binds a key to at most this many)."""
POLL = 0.2
"""Seconds between two reads of the server's heartbeat count under load (/metrics: its per-node series
make it cost the server about 10 ms with 1,000 agents connected)."""
TICK = 0.005
"""Seconds between two releases of heartbeat credits under load."""
DRAIN_TIMEOUT = 60.0
"""After a flood, how long the server may take to count the heartbeats still in the streams."""
CONNECTING = 50
"""Agents connecting at once."""
CREATED = 1_796_000_000
"""When the canned containers and images were created (unix seconds)."""
SERVICES = (
    ("web", "nginx:1.27-alpine", "sha256:" + "a1" * 32, ["nginx", "-g", "daemon off;"], (80, 8080)),
    ("worker", "ghcr.io/acme/worker:2.4.1", "sha256:" + "b2" * 32, ["/app/worker", "--queue", "jobs"], None),
    ("redis", "redis:7-alpine", "sha256:" + "c3" * 32, ["redis-server", "--save", ""], (6379, None)),
)
"""The containers every simulated node runs: name, image, image id, command, (private port, public)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _container_id(agent_id: str, name: str) -> str:
    return hashlib.sha256(f"{agent_id}/{name}".encode()).hexdigest()


def _ports(port: tuple[int, int | None] | None) -> list[dict[str, Any]]:
    if port is None:
        return []
    private, public = port
    if public is None:
        return [{"PrivatePort": private, "Type": "tcp"}]
    return [
        {"IP": "0.0.0.0", "PrivatePort": private, "PublicPort": public, "Type": "tcp"},
        {"IP": "::", "PrivatePort": private, "PublicPort": public, "Type": "tcp"},
    ]


def _summary(agent_id: str, index: int) -> dict[str, Any]:
    """One container as GET /containers/json?all=1 lists it."""
    name, image, image_id, command, port = SERVICES[index]
    return {
        "Id": _container_id(agent_id, name),
        "Names": [f"/{name}"],
        "Image": image,
        "ImageID": image_id,
        "Command": " ".join(command),
        "Created": CREATED + index,
        "Ports": _ports(port),
        "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": name},
        "State": "running",
        "Status": "Up 3 days",
        "HostConfig": {"NetworkMode": "shop_default"},
        "NetworkSettings": {
            "Networks": {"shop_default": {"Gateway": "172.18.0.1", "IPAddress": f"172.18.0.{index + 2}"}}
        },
        "Mounts": [],
    }


def _inspect(agent_id: str, index: int) -> dict[str, Any]:
    """The same container as GET /containers/{id}/json answers (the fields an engine of 2024 sends, less
    the host paths and the empty cgroup limits)."""
    name, image, image_id, command, port = SERVICES[index]
    container_id = _container_id(agent_id, name)
    exposed: dict[str, object] = {} if port is None else {f"{port[0]}/tcp": {}}
    bindings = (
        {}
        if port is None
        else {
            f"{port[0]}/tcp": (
                None
                if port[1] is None
                else [
                    {"HostIp": "0.0.0.0", "HostPort": str(port[1])},
                    {"HostIp": "::", "HostPort": str(port[1])},
                ]
            )
        }
    )
    return {
        "Id": container_id,
        "Created": "2026-11-28T09:14:07.331372493Z",
        "Path": command[0],
        "Args": command[1:],
        "State": {
            "Status": "running",
            "Running": True,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": 2851 + index,
            "ExitCode": 0,
            "Error": "",
            "StartedAt": "2026-11-28T09:14:07.659070314Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        },
        "Image": image_id,
        "Name": f"/{name}",
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": "shop_default",
            "PortBindings": bindings,
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "LogConfig": {"Type": "json-file", "Config": {}},
            "Privileged": False,
            "ReadonlyRootfs": False,
            "Memory": 0,
            "NanoCpus": 0,
        },
        "Mounts": (
            [
                {
                    "Type": "volume",
                    "Name": "shop_redis",
                    "Source": "/var/lib/docker/volumes/shop_redis/_data",
                    "Destination": "/data",
                    "Driver": "local",
                    "Mode": "z",
                    "RW": True,
                    "Propagation": "",
                }
            ]
            if name == "redis"
            else []
        ),
        "Config": {
            "Hostname": container_id[:12],
            "User": "",
            "ExposedPorts": exposed,
            "Tty": False,
            "Env": [
                f"SERVICE={name}",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ],
            "Cmd": command,
            "Image": image,
            "WorkingDir": "/app" if name == "worker" else "",
            "Entrypoint": None,
            "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": name},
        },
        "NetworkSettings": {
            "Ports": bindings,
            "Networks": {
                "shop_default": {
                    "Gateway": "172.18.0.1",
                    "IPAddress": f"172.18.0.{index + 2}",
                    "IPPrefixLen": 16,
                }
            },
        },
    }


def _images() -> list[dict[str, Any]]:
    return [
        {
            "Containers": -1,
            "Created": CREATED - 86_400,
            "Id": image_id,
            "Labels": None,
            "ParentId": "",
            "RepoDigests": [f"{image.split(':')[0]}@sha256:{image_id[7:]}"],
            "RepoTags": [image],
            "SharedSize": -1,
            "Size": 12_000_000 + 1_000_000 * index,
        }
        for index, (_name, image, image_id, _command, _port) in enumerate(SERVICES[:2])
    ]


ENGINE_INFO = {
    "version": {"Version": "26.1.5", "ApiVersion": "1.45", "Os": "linux", "Arch": "amd64"},
    "info": {
        "Name": "",
        "Containers": 3,
        "ContainersRunning": 3,
        "Images": 2,
        "NCPU": 4,
        "MemTotal": 8_237_686_784,
        "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
        "KernelVersion": "6.1.0-28-amd64",
    },
}
STATS = {
    "cpu_stats": {
        "cpu_usage": {"total_usage": 52_000_000_000},
        "system_cpu_usage": 9_100_000_000_000,
        "online_cpus": 4,
    },
    "memory_stats": {"usage": 48_000_000},
}


@dataclass
class Tally:
    """What the swarm did, for the driver's checks."""

    beats: int = 0
    sending: int = 0
    """Heartbeats being written."""
    answered: Counter[str] = field(default_factory=Counter)
    handling: list[float] = field(default_factory=list)
    """Milliseconds from reading a command to its result written, since the last `handled()`."""
    errors: list[str] = field(default_factory=list)

    def handled(self) -> dict[str, float]:
        """p50 and p99 of `handling`, which starts again."""
        values, self.handling = self.handling, []
        if len(values) < 2:
            return {"p50": values[0] if values else math.nan, "p99": values[0] if values else math.nan}
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return {"p50": cuts[49], "p99": cuts[98]}

    def error(self, agent_id: str, what: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"{agent_id}: {what}")
        else:
            self.errors[-1] = f"... and more ({agent_id}: {what})"


class Agent:
    def __init__(self, index: int, prefix: str, key: str, tally: Tally) -> None:
        self.id = f"{prefix}{index:04d}"
        self._metadata = (("authorization", f"Bearer {key}"), ("worpen-agent-id", self.id))
        self._tally = tally
        self._index = index
        self._call: Any = None
        self._write = asyncio.Lock()
        self._last_ms = 0
        self._seq = 0
        self.interval = 10.0
        self.closing = False
        self._containers = [_summary(self.id, i) for i in range(len(SERVICES))]
        self._inventory_json = (json.dumps(self._containers).encode(), json.dumps(_images()).encode())
        self._inspected = {
            summary["Id"]: json.dumps(_inspect(self.id, i)).encode()
            for i, summary in enumerate(self._containers)
        }
        self._names = {summary["Names"][0][1:]: summary["Id"] for summary in self._containers}

    async def connect(self, stub: Any) -> None:
        """Hello, Welcome, then the Inventory and a first heartbeat; raises what the server ended with."""
        self._call = stub.Connect(metadata=self._metadata)
        await self._send(
            agent_pb2.AgentMessage(
                hello=agent_pb2.Hello(
                    id=self.id,
                    version=VERSION,
                    protocol=PROTOCOL,
                    capabilities=["docker"],
                    labels={"region": ("eu", "us", "ap")[self._index % 3], "bench": "agents"},
                    session=f"bench-{self.id}",
                )
            )
        )
        first = await self._call.read()
        if first is grpc.aio.EOF or first.WhichOneof("body") != "welcome":
            raise RuntimeError(f"expected Welcome, got {first}")
        self.interval = float(first.welcome.heartbeat_seconds or 10)
        await self.inventory()
        await self.heartbeat()

    async def _send(self, message: agent_pb2.AgentMessage) -> None:
        async with self._write:
            await self._call.write(message)

    async def inventory(self) -> None:
        containers, images = self._inventory_json
        await self._send(
            agent_pb2.AgentMessage(
                inventory=agent_pb2.Inventory(
                    containers_json=containers, images_json=images, taken_at_ms=_now_ms()
                )
            )
        )

    async def heartbeat(self) -> None:
        """The readings bench/heartbeat sends over HTTP for the same index, measured now."""
        i = self._index
        measured = max(_now_ms(), self._last_ms + 1)  # one sample per instant and agent
        self._last_ms = measured
        beat = fleet_pb2.Heartbeat(
            id=self.id,
            cpu=5 + (i % 70) + 0.5,
            ram=30 + (i % 40) + 0.25,
            status=fleet_pb2.AGENT_STATUS_ONLINE,
            ip=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
        )
        # Numbered as worpen-agent numbers its buffer: the server acknowledges them (Received, read and
        # passed over by `serve`), at the cost a real agent's heartbeats have.
        self._seq += 1
        await self._send(
            agent_pb2.AgentMessage(
                heartbeat=agent_pb2.AgentHeartbeat(beat=beat, measured_at_ms=measured), seq=self._seq
            )
        )
        self._tally.beats += 1

    async def serve(self) -> None:
        """Read control messages until the stream ends, answering commands in order."""
        try:
            while (message := await self._call.read()) is not grpc.aio.EOF:
                body = message.WhichOneof("body")
                if body == "command":
                    received = time.perf_counter()
                    await self._answer(message.command)
                    self._tally.handling.append((time.perf_counter() - received) * 1000)
                elif body == "pace":
                    self.interval = float(message.pace.next_heartbeat_seconds or self.interval)
        except grpc.aio.AioRpcError as exc:
            if not self.closing:
                self._tally.error(self.id, f"stream ended: {exc.code().name} {exc.details()}")
            return
        if not self.closing:
            self._tally.error(self.id, "the server ended the stream")

    async def _answer(self, command: agent_pb2.Command) -> None:
        kind = command.kind
        params = json.loads(command.params_json or b"{}")
        result: bytes | None = b"{}"
        error: tuple[str, str] | None = None
        if kind == "sync":
            await self.inventory()
            await self.heartbeat()
        elif kind == "containers.inspect":
            result = self._find(str(params.get("ref", "")))
            if result is None:
                error = ("not_found", f"No such container: {params.get('ref')}")
        elif kind == "engine.info":
            result = json.dumps(ENGINE_INFO).encode()
        elif kind == "containers.stats":
            result = json.dumps(STATS).encode() if self._find(str(params.get("ref", ""))) else None
            if result is None:
                error = ("not_found", f"No such container: {params.get('ref')}")
        elif kind == "images.list":
            containers, images = self._inventory_json
            result = b'{"images": %s, "containers": %s, "histories": {}}' % (images, containers)
        elif kind != "ping":
            error = ("unsupported", f"the bench's simulated agent does not do {kind}")
        self._tally.answered[kind if error is None else f"{kind} ({error[0]})"] += 1
        answer = (
            agent_pb2.CommandResult(id=command.id, ok=True, result_json=result or b"")
            if error is None
            else agent_pb2.CommandResult(
                id=command.id, ok=False, error=agent_pb2.CommandError(code=error[0], message=error[1])
            )
        )
        await self._send(agent_pb2.AgentMessage(result=answer))

    def _find(self, ref: str) -> bytes | None:
        """A container by name, id or unique id prefix, as the engine resolves references."""
        ref = ref.removeprefix("/")
        if ref in self._names:
            return self._inspected[self._names[ref]]
        matches = [cid for cid in self._inspected if cid.startswith(ref)] if ref else []
        return self._inspected[matches[0]] if len(matches) == 1 else None

    async def paced(self, running: asyncio.Event) -> None:
        """Heartbeats at the server's pace, from a random point of the first interval; skipped while
        `running` is clear (the load commands send their own)."""
        await asyncio.sleep(random.uniform(0, self.interval))
        while not self.closing:
            if running.is_set():
                await self.heartbeat()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        self.closing = True
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            async with self._write:
                await self._call.done_writing()


class Counted:
    """The server's worpen_heartbeats_ingested_total, read from /metrics."""

    def __init__(self, url: str, key: str) -> None:
        self._client = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10)
        self._url = url

    async def read(self) -> int:
        answer = await self._client.get(self._url)
        answer.raise_for_status()
        for line in answer.text.splitlines():
            if line.startswith("worpen_heartbeats_ingested_total "):
                return int(float(line.rpartition(" ")[2]))
        raise RuntimeError("the server's /metrics has no worpen_heartbeats_ingested_total")

    async def close(self) -> None:
        await self._client.aclose()


class Swarm:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        keys = args.keys.split(",")
        self.tally = Tally()
        self.agents = [Agent(i, args.prefix, keys[i // KEY_IDS], self.tally) for i in range(args.agents)]
        self.channels = [
            # A local subchannel pool: each channel its own TCP connection (equal channels share one).
            grpc.aio.insecure_channel(args.target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(args.channels)
        ]
        self.running = asyncio.Event()
        self.running.set()
        self.serving: list[asyncio.Task[None]] = []
        self.pacing: list[asyncio.Task[None]] = []
        self.counted = Counted(args.metrics, args.admin_key)

    async def connect(self) -> dict[str, object]:
        started = time.monotonic()
        stubs = [agent_pb2_grpc.AgentChannelStub(channel) for channel in self.channels]
        gate = asyncio.Semaphore(CONNECTING)

        async def one(agent: Agent, stub: Any) -> None:
            async with gate:
                await agent.connect(stub)
            self.serving.append(asyncio.create_task(agent.serve()))
            self.pacing.append(asyncio.create_task(agent.paced(self.running)))

        results = await asyncio.gather(
            *(one(agent, stubs[i % len(stubs)]) for i, agent in enumerate(self.agents)),
            return_exceptions=True,
        )
        failed = 0
        for agent, result in zip(self.agents, results, strict=True):
            if isinstance(result, BaseException):
                failed += 1
                what = (
                    f"{result.code().name} {result.details()}"
                    if isinstance(result, grpc.aio.AioRpcError)
                    else repr(result)
                )
                self.tally.error(agent.id, f"connect: {what}")
        return {
            "phase": "connected",
            "agents": len(self.agents) - failed,
            "failed": failed,
            "seconds": time.monotonic() - started,
            "interval": self.agents[0].interval if self.agents else None,
        }

    async def load(self, seconds: float, ramp: float, queue: int, rate: float) -> dict[str, object]:
        """Heartbeats from every agent in turn, `rate` a second in all with at most `queue` sent and not
        yet counted; or with `rate` 0 as fast as the server counts them, about `queue` not yet counted.
        Figures over `seconds` after `ramp`."""
        self.running.clear()
        counted_before = await self._quiet()
        self.tally.handled()
        beats_before = self.tally.beats
        credits = asyncio.Semaphore(0)
        stopping = False
        issued = counted = 0  # credits released (heartbeats sent or about to be); the server's count
        pace = rate or queue / POLL  # heartbeats a second
        samples: list[tuple[float, int, float, float]] = []

        async def pump(agent: Agent) -> None:
            while True:
                await credits.acquire()
                if stopping or agent.closing:
                    return
                await agent.heartbeat()

        async def poll() -> None:
            """Read the server's count; flooding, follow its rate, faster while fewer than `queue` wait
            and slower while more do (a proportional controller over two polls)."""
            nonlocal counted, pace
            while not stopping:
                now, issued_then = time.monotonic(), issued
                total = await self.counted.read()
                server_cpu = await asyncio.to_thread(_cpu_seconds, self.args.server_pid)
                counted = total - counted_before
                if samples and not rate:
                    taken = (total - samples[-1][1]) / (now - samples[-1][0])
                    pace = max(0.0, taken + (queue - (issued_then - counted)) / (2 * POLL))
                samples.append((now, total, server_cpu, time.process_time()))
                await asyncio.sleep(POLL)

        _emit({"phase": "started"})
        pumps = [asyncio.create_task(pump(agent)) for agent in self.agents]
        poller = asyncio.create_task(poll())
        cap = queue if rate else 2 * queue
        started = last = time.monotonic()
        allowance = 0.0
        try:
            while (now := time.monotonic()) < started + ramp + seconds:
                allowance += pace * (now - last)
                last = now
                due = max(0, min(int(allowance), cap - (issued - counted)))
                for _ in range(due):
                    credits.release()
                issued += due
                allowance = min(allowance - due, 1.0)  # what the cap held back is not sent later at once
                await asyncio.sleep(TICK)
        finally:
            stopping = True
            for _ in range(len(pumps)):
                credits.release()
            await asyncio.gather(*pumps, poller, return_exceptions=True)
        sent, counted = await self._drain(beats_before, counted_before)
        self.running.set()
        window_samples = [sample for sample in samples if sample[0] >= started + ramp]
        (t0, c0, server0, own0), (t1, c1, server1, own1) = window_samples[0], window_samples[-1]
        return {
            "phase": "load",
            "heartbeats": c1 - c0,
            "seconds": t1 - t0,
            "server_cpu_s": server1 - server0,
            "swarm_cpu_s": own1 - own0,
            "sent": sent,
            "counted": counted,
            "agent_ms": self.tally.handled(),
        }

    async def _quiet(self) -> int:
        """The server's count once no heartbeat is on its way (paced ones are paused): two equal reads."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        last = -1
        while time.monotonic() < deadline:
            count = await self.counted.read()
            if count == last and not self.tally.sending:
                return count
            last = count
            await asyncio.sleep(POLL)
        raise RuntimeError("the server's heartbeat count did not settle")

    async def _drain(self, beats_before: int, counted_before: int) -> tuple[int, int]:
        """Heartbeats sent since `beats_before`, and how many of them the server counted, once it counted
        them all or DRAIN_TIMEOUT passed."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            counted = await self.counted.read() - counted_before
            sent = self.tally.beats - beats_before
            if (counted >= sent and not self.tally.sending) or time.monotonic() > deadline:
                return sent, counted
            await asyncio.sleep(POLL)

    async def stop(self) -> dict[str, object]:
        for task in self.pacing:
            task.cancel()
        await asyncio.gather(*(agent.close() for agent in self.agents))
        # The server ends each stream once it read the agent's end of it.
        _done, pending = await asyncio.wait(self.serving, timeout=15) if self.serving else (set(), set())
        for task in pending:
            task.cancel()
        for channel in self.channels:
            await channel.close()
        await self.counted.close()
        return {
            "phase": "stopped",
            "beats": self.tally.beats,
            "answered": dict(self.tally.answered),
            "errors": self.tally.errors,
            "lingering": len(pending),
        }


def _args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="agent_swarm", description=__doc__)
    p.add_argument("--target", required=True, help="the server's gRPC address, host:port")
    p.add_argument("--keys", required=True, help="agent keys, comma separated: key n for agents n*1000..")
    p.add_argument("--agents", type=int, required=True)
    p.add_argument("--channels", type=int, default=10)
    p.add_argument("--prefix", default="bee-")
    p.add_argument("--metrics", required=True, help="the server's /metrics URL")
    p.add_argument("--admin-key", required=True, help="a key that may read /metrics")
    p.add_argument("--server-pid", type=int, required=True, help="for the server's CPU time, from /proc")
    return p.parse_args(argv)


def _emit(line: dict[str, object]) -> None:
    print(json.dumps(line), flush=True)


async def _main(argv: Sequence[str]) -> None:
    swarm = Swarm(_args(argv))
    _emit(await swarm.connect())
    while True:
        # End of input (the driver went away) stops the swarm like `stop`.
        words = (await asyncio.to_thread(sys.stdin.readline)).split() or ["stop"]
        if words[0] == "load":
            _emit(await swarm.load(float(words[1]), float(words[2]), int(words[3]), float(words[4])))
        elif words[0] == "handled":
            _emit({"phase": "handled", "agent_ms": swarm.tally.handled()})
        elif words[0] == "stop":
            _emit(await swarm.stop())
            return
        else:
            _emit({"phase": "error", "error": f"unknown command {words[0]!r}"})


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
