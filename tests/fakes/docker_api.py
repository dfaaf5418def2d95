"""Container runtime API peers on a Unix socket. FakeDockerAPI answers `GET /containers/<id>/json` as
Docker documents it (404 with a message for unknown ids); FakeCrioAPI answers CRI-O's inspect
endpoint, `GET /containers/<id>`, with a ContainerInfo (404 for unknown ids). No container runtime
exists on our machines; the capture's container metadata is tested against these."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    docs: dict[str, Any] = {}

    suffix = "/json"                # Docker's route: /containers/<id>/json
    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        cid = ""
        if self.path.startswith("/containers/") and self.path.endswith(self.suffix):
            cid = self.path[len("/containers/"):len(self.path) - len(self.suffix)]
        doc = self.docs.get(cid)
        body = json.dumps(doc or {"message": f"No such container: {cid}"}).encode()
        self.send_response(200 if doc else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeDockerAPI:
    """Serves `docs` (container id → inspect document) on `path` until stopped."""

    suffix = "/json"

    def __init__(self, path: str, docs: dict[str, Any] | None = None) -> None:
        self.path = path
        handler = type("Handler", (_Handler,), {"docs": dict(docs or {}), "suffix": self.suffix,
                                                 "requests": []})
        self.handler = handler
        self._server = _Server(path, handler)

    @property
    def docs(self) -> dict[str, Any]:
        return self.handler.docs

    @property
    def requests(self) -> list[str]:
        """The paths asked for, in order."""
        return self.handler.requests

    def start(self) -> FakeDockerAPI:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeDockerAPI:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


class FakeCrioAPI(FakeDockerAPI):
    """CRI-O's inspect endpoint: `docs` maps a container id to its ContainerInfo."""

    suffix = ""
