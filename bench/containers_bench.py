"""Container list and log latency through Worpen against the Docker Engine's own API, from one run.

For each fleet size (50 and 200 containers by default) it makes the local engine hold that many
containers, then times, interleaved in rounds:

- `GET /api/v1/containers` through a real `worpen serve` against `GET /containers/json?all=1` sent
  straight to the engine's socket;
- `GET /api/v1/containers/{id}/logs?tail=100` against the engine's own
  `GET /containers/{id}/logs?stdout=1&stderr=1&timestamps=1&tail=100`.

Both sides use a keep-alive HTTP client in this process and read the whole body. It prints the medians
and their ratio (target: Worpen within 1.5x of the engine at both sizes), then a JSON summary. It
removes every container it made. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import httpx
from worpen_process import admin_key, start_worpen

ENGINE_SOCKET = "/var/run/docker.sock"
IMAGE = os.environ.get("WORPEN_TEST_IMAGE", "worpen-test/busybox:1")
LABEL = "worpen.bench"
TARGET_RATIO = 1.5
LOGGER = "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo line $i of the log; done; sleep 3600"


def fill(client: docker.DockerClient, size: int, run: str) -> int:
    """Run sleeping containers until the engine holds `size` (or more, if it already did)."""
    held = len(client.containers.list(all=True))
    for _ in range(max(0, size - held)):
        client.containers.run(
            IMAGE, ["sleep", "3600"], detach=True, labels={LABEL: run}, stop_signal="SIGKILL"
        )
    return len(client.containers.list(all=True))


def median_ms(call: Callable[[], httpx.Response], samples: list[float]) -> None:
    started = time.perf_counter()
    response = call()
    samples.append((time.perf_counter() - started) * 1000)
    if response.status_code != 200:
        raise SystemExit(f"{response.request.url} answered {response.status_code}: {response.text[:300]}")


def measure(
    worpen: Callable[[], httpx.Response], engine: Callable[[], httpx.Response], rounds: int, per_round: int
) -> tuple[float, float]:
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(5):  # warm-up
        worpen()
        engine()
    for number in range(rounds):
        order = [(worpen, ours), (engine, theirs)]
        for call, samples in order if number % 2 == 0 else reversed(order):
            for _ in range(per_round):
                median_ms(call, samples)
    return statistics.median(ours), statistics.median(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=50)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    client = docker.DockerClient(base_url=f"unix://{ENGINE_SOCKET}", timeout=120)
    version = client.version()["ApiVersion"]
    raw = httpx.Client(transport=httpx.HTTPTransport(uds=ENGINE_SOCKET), base_url=f"http://docker/v{version}")
    sizes: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as workdir:
        settings = {
            "WORPEN_DATABASE_URL": f"sqlite+aiosqlite:///{Path(workdir) / 'worpen.db'}",
            "WORPEN_DOCKER_HOSTS": f"local=unix://{ENGINE_SOCKET}",
        }
        process, url, log_path = start_worpen(Path(workdir), settings)
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key(log_path)}"})
        try:
            logger = client.containers.run(
                IMAGE,
                ["sh", "-c", LOGGER],
                detach=True,
                labels={LABEL: run},
                stop_signal="SIGKILL",
            )
            while b"line 1000 " not in logger.logs(tail=1):
                time.sleep(0.1)
            print(f"engine API {version}; {args.rounds} rounds of {args.per_round} calls a side; medians, ms")
            print(f"{'containers':>10} {'call':<22} {'worpen':>9} {'engine':>9} {'ratio':>7}")
            for size in args.sizes:
                held = fill(client, size, run)
                rows = {}
                for name, ours, theirs in (
                    (
                        "list",
                        lambda: api.get("/api/v1/containers"),
                        lambda: raw.get("/containers/json", params={"all": 1}),
                    ),
                    (
                        "logs?tail=100",
                        lambda: api.get(f"/api/v1/containers/{logger.id}/logs", params={"tail": 100}),
                        lambda: raw.get(
                            f"/containers/{logger.id}/logs",
                            params={"stdout": 1, "stderr": 1, "timestamps": 1, "tail": 100},
                        ),
                    ),
                ):
                    worpen_ms, engine_ms = measure(ours, theirs, args.rounds, args.per_round)
                    ratio = worpen_ms / engine_ms
                    rows[name] = {
                        "worpen_ms": round(worpen_ms, 3),
                        "engine_ms": round(engine_ms, 3),
                        "ratio": round(ratio, 3),
                        "met": ratio <= TARGET_RATIO,
                    }
                    print(f"{held:>10} {name:<22} {worpen_ms:>9.2f} {engine_ms:>9.2f} {ratio:>6.2f}x")
                listed = len(api.get("/api/v1/containers").json())
                assert listed == held, f"Worpen listed {listed} containers, the engine holds {held}"
                sizes.append({"containers": held, **rows})
        finally:
            api.close()
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
            for container in client.containers.list(all=True, filters={"label": f"{LABEL}={run}"}):
                container.remove(force=True)
            raw.close()
            client.close()
    print(json.dumps({"target_ratio": TARGET_RATIO, "sizes": sizes}))


if __name__ == "__main__":
    main()
