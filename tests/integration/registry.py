"""A tiny image registry on loopback for pull tests (no real registry is reachable here): it serves one
image, the test image as `docker save` gives it, through the Registry HTTP API v2 (manifest schema 2,
gzipped layers). Docker pulls from 127.0.0.0/8 over plain HTTP without configuration. A registry made
with `stall=True` serves the image with one more layer, new to the engine, of which it sends half and
then nothing more until it is closed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import docker

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class LocalRegistry:
    def __init__(
        self, client: docker.DockerClient, image: str, repository: str, tag: str, *, stall: bool = False
    ) -> None:
        self.repository = repository
        self.tag = tag
        self.closing = threading.Event()
        saved = io.BytesIO(b"".join(client.images.get(image).save()))
        with tarfile.open(fileobj=saved) as archive:
            [entry] = json.loads(_read(archive, "manifest.json"))
            config = _read(archive, entry["Config"])
            layers = [gzip.compress(_read(archive, name), mtime=0) for name in entry["Layers"]]
        self.stalling: set[str] = set()
        """Layers of which only half is sent (an engine that has every layer already would not ask)."""
        if stall:
            new_layer = _random_layer()
            described = json.loads(config)
            described["rootfs"]["diff_ids"].append(_digest(new_layer))
            described.setdefault("history", []).append({"created_by": "a layer that stalls"})
            config = json.dumps(described).encode()
            layers.append(gzip.compress(new_layer, mtime=0))
            self.stalling.add(_digest(layers[-1]))
        self.blobs = {_digest(blob): blob for blob in (config, *layers)}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": _digest(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": _digest(layer),
                }
                for layer in layers
            ],
        }
        self.manifest = json.dumps(manifest).encode()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.address = f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def image(self) -> str:
        return f"{self.address}/{self.repository}:{self.tag}"

    def __enter__(self) -> LocalRegistry:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, *, body: bool) -> None:
                manifest_path = f"/v2/{registry.repository}/manifests/"
                blob_path = f"/v2/{registry.repository}/blobs/"
                content_type = "application/octet-stream"
                if self.path == "/v2/":
                    data, content_type = b"{}", "application/json"
                elif self.path in (manifest_path + registry.tag, manifest_path + _digest(registry.manifest)):
                    data, content_type = registry.manifest, MANIFEST_TYPE
                elif self.path.startswith(blob_path) and self.path[len(blob_path) :] in registry.blobs:
                    data = registry.blobs[self.path[len(blob_path) :]]
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Docker-Content-Digest", _digest(data))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.end_headers()
                if not body:
                    return
                if self.path[len(blob_path) :] in registry.stalling:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    registry.closing.wait()
                    return
                self.wfile.write(data)

        return Handler


def _random_layer() -> bytes:
    """A layer tar holding one file of random bytes (so that compressed, it is still 512 KiB)."""
    content = os.urandom(512 * 1024)
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as archive:
        info = tarfile.TarInfo("stalled")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return layer.getvalue()


def _read(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)
    assert member is not None, name
    return member.read()
