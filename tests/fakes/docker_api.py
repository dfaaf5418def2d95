"""Container runtime APIs on a Unix socket, modelled on the real servers for the requests the
sensor makes (sensor/capture/runtimes.py). Docker Engine cannot run on our machines; Podman can,
and its real compat API is exercised by tests/e2e/test_containers_podman.py. These peers serve the
unit tests, and the cases no real runtime here can produce.

FakeDockerAPI is Docker Engine's API (moby/moby):
- routes `GET /containers/{name}/json` and `GET /images/{name}/json`, each also under a
  `/v{version}` prefix (api/server/router/container/container.go, router/image/image.go); any
  other path, or another method on these paths, is `404 {"message":"page not found"}`
  (api/server/server.go: the mux's NotFoundHandler and MethodNotAllowedHandler);
- a version above the server's or below its minimum is 400 with "client version 1.99 is too new.
  Maximum supported API version is 1.45" (api/server/middleware/version.go; Docker 26: 1.45,
  minimum 1.24);
- a container is found by full id, by name (with or without the leading "/"), or by a unique id
  prefix; an ambiguous prefix is 400, an unknown one 404 `{"message":"No such container: <name>"}`
  (daemon/container.go GetContainer, errdefs); an image by id (with or without "sha256:"), by
  repo:tag, else 404 `{"message":"No such image: <name>"}`;
- every answer carries `Api-Version`, `Server: Docker/26.1.4 (linux)` and `Ostype`; JSON bodies
  end with a newline (Go's json.Encoder).
`flavour="podman"` answers as Podman 4.3's compat API does instead (containers/podman
pkg/api/server/handler_api.go, register_containers.go, pkg/api/handlers/utils/errors.go), as
recorded from Debian's podman 4.3.1 on our machines: no version check, `Libpod-Api-Version`
and `Server: Libpod/4.3.1 (linux)` headers, 404 bodies `{"cause","message","response"}`, an
unknown path `404 Not Found` in plain text and a wrong method `405 Method Not Allowed`.

FakeCrioAPI is CRI-O's inspect endpoint (cri-o/cri-o server/inspect.go: chi mux):
`GET /containers/{id}` answers the ContainerInfo as JSON; an unknown id is 404 in plain text
"can't find the container with id <id>"; other paths 404 "404 page not found", other methods 405.

All three are Go servers, so an HTTP/1.1 request without a Host header is refused the way Go's
net/http refuses it (server.go readRequest): "400 Bad Request: missing required Host header" and
the connection closed. Documents handed to the fakes must have the shape the real server always
sends (the keys the sensor reads are never absent there), or the fake refuses them at start.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

_VERSIONED = re.compile(r"^/v([0-9][0-9.]*)(/.*)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
DOCKER_VERSION, DOCKER_API_MAX, DOCKER_API_MIN = "26.1.4", "1.45", "1.24"
PODMAN_VERSION, PODMAN_COMPAT_API = "4.3.1", "1.41"
# What Docker's ContainerInspect always carries (api/types/container ContainerJSONBase, Config,
# HostConfig, State, Mounts), limited to what matters to a reader of the document.
CONTAINER_KEYS = ("Id", "Created", "Name", "Image", "State", "HostConfig", "Config", "Mounts")
IMAGE_KEYS = ("Id", "RepoTags", "RepoDigests", "Config")
CRIO_KEYS = ("name", "pid", "image", "image_ref", "created_time", "labels", "annotations",
             "crio_annotations", "log_path", "root", "sandbox", "ip_addresses")


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


class _GoHandler(BaseHTTPRequestHandler):
    """BaseHTTPRequestHandler answering as a Go net/http server does."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def parse_request(self) -> bool:
        # Refused before routing, as Go does: an HTTP/1.1 request without a Host header.
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/1.1" and not self.headers.get("Host"):
            msg = b"400 Bad Request: missing required Host header"
            self.wfile.write(b"HTTP/1.1 " + msg + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             b"Connection: close\r\n\r\n" + msg)
            self.close_connection = True
            return False
        return True

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, headers: dict[str, str]) -> None:
        self._send(status, json.dumps(doc).encode() + b"\n", "application/json", headers)

    def _text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8",
                   {"X-Content-Type-Options": "nosniff", **(headers or {})})

    def do_GET(self) -> None:
        self.server.peer.requests.append(self.path)
        self.server.peer.route(self, "GET")

    def do_POST(self) -> None:
        self.server.peer.requests.append(self.path)
        self.server.peer.route(self, "POST")

    do_DELETE = do_PUT = do_POST

    def log_message(self, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    peer: _Peer


class _Peer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[str] = []      # the request targets, in order
        self._server = _Server(path, _GoHandler)
        self._server.peer = self

    def route(self, h: _GoHandler, method: str) -> None:
        raise NotImplementedError

    def start(self) -> _Peer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


class FakeDockerAPI(_Peer):
    """Serves `docs` (full container id → inspect document) and `images` (image id → image
    document) on `path` until stopped; `flavour` is "docker" or "podman"."""

    def __init__(self, path: str, docs: dict[str, Any] | None = None,
                 images: dict[str, Any] | None = None, flavour: str = "docker") -> None:
        if flavour not in ("docker", "podman"):
            raise ValueError(f"flavour must be docker or podman, not {flavour!r}")
        self.flavour = flavour
        self.docs: dict[str, Any] = {}
        self.images: dict[str, Any] = {}
        for cid, doc in (docs or {}).items():
            self.add_container(cid, doc)
        for iid, doc in (images or {}).items():
            self.add_image(iid, doc)
        super().__init__(path)

    def add_container(self, cid: str, doc: dict[str, Any]) -> None:
        """Serve a container; its document must look like the real server's."""
        missing = [k for k in CONTAINER_KEYS if k not in doc]
        if missing or not _HEX64.match(cid) or doc["Id"] != cid or not doc["Name"].startswith("/"):
            raise ValueError(f"not a container document as the engine writes it ({cid}): "
                             f"missing {missing}, or Id/Name malformed")
        self.docs[cid] = doc

    def add_image(self, iid: str, doc: dict[str, Any]) -> None:
        """Serve an image (key: its id, "sha256:<64 hex>")."""
        missing = [k for k in IMAGE_KEYS if k not in doc]
        if missing or doc["Id"] != iid or not _HEX64.match(iid.removeprefix("sha256:")):
            raise ValueError(f"not an image document as the engine writes it ({iid}): missing {missing}")
        self.images[iid] = doc

    def _headers(self) -> dict[str, str]:
        if self.flavour == "podman":
            return {"Api-Version": PODMAN_COMPAT_API, "Libpod-Api-Version": PODMAN_VERSION,
                    "Server": f"Libpod/{PODMAN_VERSION} (linux)"}
        return {"Api-Version": DOCKER_API_MAX, "Docker-Experimental": "false", "Ostype": "linux",
                "Server": f"Docker/{DOCKER_VERSION} (linux)"}

    def _not_found(self, h: _GoHandler, what: str, name: str) -> None:
        if self.flavour == "podman":
            cause = "no such container" if what == "container" else "No such image"
            msg = (f"no container with name or ID \"{name}\" found: no such container"
                   if what == "container" else f"failed to find image {name}: {name}: No such image")
            h._json(404, {"cause": cause, "message": msg, "response": 404}, self._headers())
        else:
            h._json(404, {"message": f"No such {what}: {name}"}, self._headers())

    def route(self, h: _GoHandler, method: str) -> None:
        path = unquote(urlsplit(h.path).path)
        m = _VERSIONED.match(path)
        version = None
        if m:
            version, path = m.group(1), m.group(2)
        kind, name = _match_route(path)
        if kind is None or method != "GET":
            if self.flavour == "podman":
                if kind is None:
                    h._text(404, "Not Found\n")
                else:
                    h._text(405, "Method Not Allowed\n")
            else:
                h._json(404, {"message": "page not found"}, {})
            return
        if version is not None and self.flavour == "docker":
            v = _version_tuple(version)
            if v > _version_tuple(DOCKER_API_MAX):
                h._json(400, {"message": f"client version {version} is too new. Maximum supported "
                                         f"API version is {DOCKER_API_MAX}"}, {})
                return
            if v < _version_tuple(DOCKER_API_MIN):
                h._json(400, {"message": f"client version {version} is too old. Minimum supported "
                                         f"API version is {DOCKER_API_MIN}, please upgrade your "
                                         "client to a newer version"}, {})
                return
        if kind == "container":
            found = self._find_container(name)
            if found == "ambiguous":
                h._json(400, {"message": f"multiple IDs found with provided prefix: {name}"},
                        self._headers())
            elif found is None:
                self._not_found(h, "container", name)
            else:
                h._json(200, self.docs[found], self._headers())
            return
        doc = self._find_image(name)
        if doc is None:
            self._not_found(h, "image", name)
        else:
            h._json(200, doc, self._headers())

    def _find_container(self, name: str) -> str | None:
        if name in self.docs:
            return name
        for cid, doc in self.docs.items():
            if doc["Name"] in (name, "/" + name):
                return cid
        hits = [cid for cid in self.docs if name and cid.startswith(name)]
        if len(hits) > 1:
            return "ambiguous"
        return hits[0] if hits else None

    def _find_image(self, name: str) -> dict[str, Any] | None:
        key = name if name.startswith("sha256:") else "sha256:" + name
        if key in self.images:
            return self.images[key]
        for doc in self.images.values():
            if name in (doc.get("RepoTags") or []):
                return doc
        return None


def _match_route(path: str) -> tuple[str | None, str]:
    # `/containers/{name:.*}/json` and `/images/{name:.*}/json`: the name may hold slashes.
    for prefix, kind in (("/containers/", "container"), ("/images/", "image")):
        if path.startswith(prefix) and path.endswith("/json") and len(path) > len(prefix) + 5:
            return kind, path[len(prefix):-len("/json")]
    return None, ""


class FakeCrioAPI(_Peer):
    """CRI-O's inspect endpoint: `docs` maps a container id to its ContainerInfo."""

    def __init__(self, path: str, docs: dict[str, Any] | None = None) -> None:
        self.docs: dict[str, Any] = {}
        for cid, doc in (docs or {}).items():
            missing = [k for k in CRIO_KEYS if k not in doc]
            if missing:
                raise ValueError(f"not a ContainerInfo as CRI-O writes it ({cid}): missing {missing}")
            self.docs[cid] = doc
        super().__init__(path)

    def route(self, h: _GoHandler, method: str) -> None:
        path = urlsplit(h.path).path
        if not path.startswith("/containers/") or path.count("/") != 2 or path == "/containers/":
            h._text(404, "404 page not found\n")
            return
        if method != "GET":
            h._text(405, "")
            return
        cid = path[len("/containers/"):]
        if cid not in self.docs:
            h._text(404, f"can't find the container with id {cid}\n")
            return
        h._send(200, json.dumps(self.docs[cid]).encode(), "application/json", {})
