"""An in-suite Kubernetes API server for the response actions: it answers the few endpoints they use
as the Kubernetes API documents them, and records every request.

Served on 127.0.0.1 over plain HTTP (the client takes `http://` servers from a kubeconfig), with a
bearer token checked as the API server does (401 without it). What it serves:

- pods:    GET/DELETE/PATCH /api/v1/namespaces/{ns}/pods/{name}
           PATCH accepts strategic-merge-patch+json and merge-patch+json (labels/annotations are
           maps, where both merge the same way); any other patch type is 415, as the API answers.
- network policies: POST /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies (409
           AlreadyExists when the name is taken), GET/PATCH .../networkpolicies/{name}.
Errors are `Status` objects (kind Status, reason, code, message) shaped like the API server's.

Faults for tests: `fail(method, path_regex, code)` answers a matching request with that Status
code; `stall(method, path_regex, seconds)` delays the answer past a client's timeout.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

TOKEN = "falconet-test-token"
SERVICE_ACCOUNT = "system:serviceaccount:falconet:falconet"
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            409: "AlreadyExists", 415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError",
            503: "ServiceUnavailable"}
_PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json")
_POD_RE = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$")
_NP_LIST_RE = re.compile(r"^/apis/networking\.k8s\.io/v1/namespaces/([^/]+)/networkpolicies$")
_NP_RE = re.compile(r"^/apis/networking\.k8s\.io/v1/namespaces/([^/]+)/networkpolicies/([^/]+)$")


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    code: int = 0
    delay: float = 0.0


@dataclass
class State:
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    policies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deleted: list[tuple[str, str]] = field(default_factory=list)


def pod(namespace: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A minimal Pod object as the API returns it."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
                         "resourceVersion": "1", "labels": dict(labels or {"app": name})},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
            "status": {"phase": "Running"}}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes a key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class FakeKubeAPI:
    """Start with `with FakeKubeAPI() as api:`; `api.url`, `api.kubeconfig(path)`, `api.requests`."""

    def __init__(self) -> None:
        self.state = State()
        self.requests: list[Request] = []
        self.faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_pod(self, namespace: str, name: str, labels: dict[str, str] | None = None) -> None:
        self.state.pods[(namespace, name)] = pod(namespace, name, labels)

    def fail(self, method: str, path_regex: str, code: int) -> None:
        """Answer requests matching method and path with a Status of `code`."""
        self.faults.append(_Fault(method, re.compile(path_regex), code=code))

    def stall(self, method: str, path_regex: str, seconds: float) -> None:
        """Wait `seconds` before answering requests matching method and path."""
        self.faults.append(_Fault(method, re.compile(path_regex), delay=seconds))

    def kubeconfig(self, path: Path, token: str = TOKEN) -> Path:
        """Write a kubeconfig that points at this server with a bearer token; return its path."""
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
               "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
               "users": [{"name": "falconet", "user": {"token": token}}],
               "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "falconet"}}]}
        path.write_text(yaml.safe_dump(doc))
        return path

    def calls(self, method: str | None = None) -> list[Request]:
        """The recorded requests, optionally only one method's."""
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    # -- serving -----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                req = Request(self.command, parts.path, parse_qs(parts.query),
                              {k.lower(): v for k, v in self.headers.items()}, body)
                with api._lock:
                    api.requests.append(req)
                code, obj = api._answer(req)
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass        # the client gave up (a timeout test)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        return Handler

    def _answer(self, req: Request) -> tuple[int, dict[str, Any]]:
        for f in self.faults:
            if f.method == req.method and f.pattern.search(req.path):
                if f.delay:
                    time.sleep(f.delay)
                if f.code:
                    return f.code, status(f.code, _forbidden_message(req) if f.code == 403 else
                                          f"injected failure for {req.method} {req.path}")
        if req.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, status(401, "Unauthorized")
        with self._lock:
            return self._route(req)

    def _route(self, req: Request) -> tuple[int, dict[str, Any]]:
        m = _POD_RE.match(req.path)
        if m:
            return self._pod(req, m.group(1), m.group(2))
        m = _NP_LIST_RE.match(req.path)
        if m and req.method == "POST":
            return self._create_policy(req, m.group(1))
        m = _NP_RE.match(req.path)
        if m:
            return self._policy(req, m.group(1), m.group(2))
        return 404, status(404, "the server could not find the requested resource")

    def _pod(self, req: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        obj = self.state.pods.get((ns, name))
        if obj is None:
            return 404, status(404, f'pods "{name}" not found', name=name, kind="pods")
        if req.method == "GET":
            return 200, obj
        if req.method == "DELETE":
            del self.state.pods[(ns, name)]
            self.state.deleted.append((ns, name))
            gone = copy.deepcopy(obj)
            gone["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            gone["metadata"]["deletionGracePeriodSeconds"] = _grace(req)
            return 200, gone
        if req.method == "PATCH":
            ctype = req.headers.get("content-type", "").split(";")[0].strip()
            if ctype not in _PATCH_TYPES:
                return 415, status(415, f"the body of the request was in an unknown format - accepted "
                                        f"media types include: {', '.join(_PATCH_TYPES)}")
            if not isinstance(req.body, dict):
                return 400, status(400, "the patch is not a JSON object")
            self.state.pods[(ns, name)] = merge_patch(obj, req.body)
            return 200, self.state.pods[(ns, name)]
        return 405, status(405, f"method {req.method} not allowed")

    def _create_policy(self, req: Request, ns: str) -> tuple[int, dict[str, Any]]:
        body = req.body if isinstance(req.body, dict) else {}
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return 422, status(422, "NetworkPolicy.networking.k8s.io is invalid: metadata.name: Required")
        if (ns, name) in self.state.policies:
            return 409, status(409, f'networkpolicies.networking.k8s.io "{name}" already exists',
                               name=name, kind="networkpolicies")
        self.state.policies[(ns, name)] = body
        return 201, body

    def _policy(self, req: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        obj = self.state.policies.get((ns, name))
        if obj is None:
            return 404, status(404, f'networkpolicies.networking.k8s.io "{name}" not found',
                               name=name, kind="networkpolicies")
        if req.method == "GET":
            return 200, obj
        if req.method == "PATCH":
            ctype = req.headers.get("content-type", "").split(";")[0].strip()
            if ctype not in _PATCH_TYPES:
                return 415, status(415, "unsupported patch type")
            self.state.policies[(ns, name)] = merge_patch(obj, req.body)
            return 200, self.state.policies[(ns, name)]
        return 405, status(405, f"method {req.method} not allowed")


def _grace(req: Request) -> int | None:
    q = req.query.get("gracePeriodSeconds")
    if q:
        return int(q[0])
    if isinstance(req.body, dict) and "gracePeriodSeconds" in req.body:
        return int(req.body["gracePeriodSeconds"])
    return None


def _forbidden_message(req: Request) -> str:
    verb = {"GET": "get", "DELETE": "delete", "PATCH": "patch", "POST": "create"}.get(req.method, "use")
    m = _POD_RE.match(req.path) or _NP_RE.match(req.path) or _NP_LIST_RE.match(req.path)
    ns = m.group(1) if m else ""
    resource = "pods" if "/pods" in req.path else "networkpolicies"
    group = "" if resource == "pods" else "networking.k8s.io"
    return (f'{resource} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource "{resource}" '
            f'in API group "{group}" in the namespace "{ns}"')


def status(code: int, message: str, name: str = "", kind: str = "") -> dict[str, Any]:
    """A metav1.Status failure as the API server writes it."""
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": _REASONS.get(code, ""), "code": code}
    if name or kind:
        out["details"] = {"name": name, "kind": kind}
    return out
