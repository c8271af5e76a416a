"""gRPC load for bench/heartbeat: unary calls with heartbeat messages for rotating agent ids, for a while.

    python bench/grpc_load.py TARGET METHOD KEY IDS CONCURRENCY SECONDS

Calls METHOD (e.g. /worpen.v1.FleetService/ReportHeartbeat) on TARGET (host:port) with CONCURRENCY
calls in flight over as many channels as there are CPUs, each message a Heartbeat for one of the ids
bench-00000 .. (the same values as bench/heartbeat.lua sends over HTTP), serialized once up front, with
`authorization: Bearer KEY`. Prints one JSON line: {"requests", "seconds", "errors", "p50_ms", "p99_ms"}.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import sys
import time

import grpc

from worpen_proto.v1 import fleet_pb2


def _messages(ids: int) -> list[bytes]:
    return [
        fleet_pb2.Heartbeat(
            id=f"bench-{i:05d}",
            cpu=5 + (i % 70) + 0.5,
            ram=30 + (i % 40) + 0.25,
            status=fleet_pb2.AGENT_STATUS_ONLINE,
            ip=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
        ).SerializeToString()
        for i in range(ids)
    ]


async def _load(target: str, method: str, key: str, ids: int, concurrency: int, seconds: float) -> None:
    messages = _messages(ids)
    metadata = (("authorization", f"Bearer {key}"),)
    channels = [grpc.aio.insecure_channel(target) for _ in range(os.cpu_count() or 1)]
    calls = [channel.unary_unary(method) for channel in channels]  # bytes in, bytes out
    latencies: list[float] = []
    errors = 0
    order = itertools.cycle(messages)
    end = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal errors
        call = calls[n % len(calls)]
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                await call(next(order), metadata=metadata, timeout=10)
            except grpc.RpcError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    took = time.monotonic() - started
    for channel in channels:
        await channel.close()
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(
        json.dumps(
            {
                "requests": len(latencies) - errors,
                "seconds": took,
                "errors": errors,
                "p50_ms": cuts[49] * 1000,
                "p99_ms": cuts[98] * 1000,
            }
        )
    )


def main() -> None:
    target, method, key, ids, concurrency, seconds = sys.argv[1:7]
    asyncio.run(_load(target, method, key, int(ids), int(concurrency), float(seconds)))


if __name__ == "__main__":
    main()
