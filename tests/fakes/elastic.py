"""In-suite Elasticsearch and Kibana: the endpoints `falconet provision` uses, answered as the APIs
document them, with every request recorded.

Served on 127.0.0.1 (HTTP, or HTTPS with an `ssl.SSLContext` the test makes). What they answer:

FakeElasticsearch (every answer carries `X-Elastic-Product: Elasticsearch`, without which the
official client refuses the server):
- GET /                                    cluster info with `version.number`
- GET /_cluster/health                     status green (or `health` as set)
- GET|PUT /_ilm/policy/NAME                GET: {NAME: {version, modified_date, policy, in_use_by}}
- GET|PUT /_component_template/NAME        GET: {component_templates: [{name, component_template}]}
- GET|PUT /_index_template/NAME            PUT checks that `composed_of` templates exist (400)
- GET|PUT /_ingest/pipeline/NAME           GET of a missing pipeline: 404 with `{}`, as ES answers
- GET|PUT /_data_stream/NAME               PUT needs a matching index template with `data_stream`
Missing objects are 404 with ES's error body (resource_not_found_exception, index_not_found_exception).

FakeKibana (POSTs need a `kbn-xsrf` header, else 400 as Kibana answers):
- GET /api/status                          503 "Kibana server is not ready yet" for the first
                                           `not_ready` calls, then `status.overall.level` available
- POST [/s/SPACE]/api/saved_objects/_bulk_get   found objects, or per-object 404 errors
- POST [/s/SPACE]/api/saved_objects/_import     multipart NDJSON in form field `file`; `overwrite`;
                                           per-object `conflict` and `missing_references` errors

Faults for tests: `fail("PUT /_ingest/pipeline/x", 400, body)` answers that call with that status.
Security, when `users`/`api_keys` are set: a request without valid credentials is 401 with the
error body and WWW-Authenticate header of each product; `privileges` (ES: the cluster privileges
the user holds) and `kibana_forbidden` turn requests into 403 with the products' messages.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    """One request as a fake received it."""

    method: str
    path: str                       # percent-decoded, without the query
    query: dict[str, str]
    headers: dict[str, str]         # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def call(self) -> str:
        return f"{self.method} {self.path}"


class _Answer(Exception):
    """Raised by a route to answer with `status`, `body` (JSON unless bytes) and extra headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class _FakeServer:
    """A threaded HTTP(S) server on 127.0.0.1 that records requests and routes them to `route`."""

    product_headers: dict[str, str] = {}

    def __init__(self, tls: ssl.SSLContext | None = None, users: dict[str, str] | None = None,
                 api_keys: set[str] | None = None) -> None:
        self.tls = tls
        self.users = users
        self.api_keys = api_keys
        self.requests: list[Request] = []
        self.faults: dict[str, _Answer] = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, unquote(parts.path),
                              {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                              {k.lower(): v for k, v in self.headers.items()}, body)
                with fake.lock:
                    fake.requests.append(req)
                try:
                    fake.authenticate(req)
                    if req.call in fake.faults:
                        raise fake.faults[req.call]
                    status, payload, headers = 200, fake.route(req), {}
                except _Answer as a:
                    status, payload, headers = a.status, a.body, a.headers
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                ctype = "text/plain; charset=utf-8" if isinstance(payload, bytes) else "application/json"
                self.send_header("Content-Type", ctype)
                for k, v in {**fake.product_headers, **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        # A short poll interval: shutdown() waits for it, once per test.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> _FakeServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def calls(self) -> list[str]:
        """`METHOD /path` of every request so far, in order."""
        with self.lock:
            return [r.call for r in self.requests]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    def fail(self, call: str, status: int, body: Any) -> None:
        """Answer every `METHOD /path` request with this status and body from now on."""
        self.faults[call] = _Answer(status, body)

    # -- security ---------------------------------------------------------------------------------
    def authenticate(self, req: Request) -> None:
        if self.users is None and self.api_keys is None:
            return
        auth = req.headers.get("authorization", "")
        scheme, _, cred = auth.partition(" ")
        if scheme == "Basic" and self.users is not None:
            user, _, password = base64.b64decode(cred).decode().partition(":")
            if self.users.get(user) == password:
                req.headers["x-fake-user"] = user
                return
        if scheme == "ApiKey" and self.api_keys is not None and cred in self.api_keys:
            req.headers["x-fake-user"] = "api-key"
            return
        raise self.unauthorized(req)

    def unauthorized(self, req: Request) -> _Answer:
        raise NotImplementedError

    def route(self, req: Request) -> Any:
        raise NotImplementedError


def _es_error(status: int, type_: str, reason: str, **extra: Any) -> _Answer:
    cause = {"type": type_, "reason": reason, **extra}
    return _Answer(status, {"error": {"root_cause": [cause], **cause}, "status": status})


# Route → (action name, cluster privileges that grant it), as Elasticsearch names them in a 403.
_ES_ACTIONS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("GET", "info"): ("cluster:monitor/main", ("monitor", "manage", "all")),
    ("GET", "health"): ("cluster:monitor/health", ("monitor", "manage", "all")),
    ("GET", "ilm"): ("cluster:admin/ilm/get", ("read_ilm", "manage_ilm", "manage", "all")),
    ("PUT", "ilm"): ("cluster:admin/ilm/put", ("manage_ilm", "manage", "all")),
    ("GET", "component_template"): ("cluster:admin/component_template/get",
                                    ("manage_index_templates", "monitor", "manage", "all")),
    ("PUT", "component_template"): ("cluster:admin/component_template/put",
                                    ("manage_index_templates", "manage", "all")),
    ("GET", "index_template"): ("indices:admin/index_template/get",
                                ("manage_index_templates", "monitor", "manage", "all")),
    ("PUT", "index_template"): ("indices:admin/index_template/put", ("manage_index_templates", "manage", "all")),
    ("GET", "pipeline"): ("cluster:admin/ingest/pipeline/get",
                          ("read_pipeline", "manage_pipeline", "manage_ingest_pipelines", "manage", "all")),
    ("PUT", "pipeline"): ("cluster:admin/ingest/pipeline/put",
                          ("manage_pipeline", "manage_ingest_pipelines", "manage", "all")),
    ("GET", "data_stream"): ("indices:admin/data_stream/get", ("view_index_metadata", "manage", "all")),
    ("PUT", "data_stream"): ("indices:admin/data_stream/create", ("create_index", "manage", "all")),
}


class FakeElasticsearch(_FakeServer):
    """Elasticsearch: cluster info and health, ILM policies, component and index templates, ingest
    pipelines, data streams."""

    product_headers = {"X-Elastic-Product": "Elasticsearch"}

    def __init__(self, version: str = "8.15.0", privileges: set[str] | None = None, health: str = "green",
                 **kwargs: Any) -> None:
        self.version = version
        self.privileges = privileges          # None: every privilege
        self.health = health
        self.ilm: dict[str, dict[str, Any]] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.data_streams: dict[str, dict[str, Any]] = {}
        super().__init__(**kwargs)

    def unauthorized(self, req: Request) -> _Answer:
        a = _es_error(401, "security_exception", f"missing authentication credentials for REST request "
                                                  f"[{req.path}]",
                      header={"WWW-Authenticate": ['Basic realm="security" charset="UTF-8"', "ApiKey"]})
        a.headers = {"WWW-Authenticate": 'Basic realm="security" charset="UTF-8"'}
        return a

    def _authorize(self, req: Request, kind: str) -> None:
        if self.privileges is None:
            return
        action, granted_by = _ES_ACTIONS[(req.method if req.method != "HEAD" else "GET", kind)]
        if self.privileges & set(granted_by):
            return
        user = req.headers.get("x-fake-user", "_anonymous")
        on, level = "", "cluster"
        if kind == "data_stream":
            on, level = f" on indices [{req.path.rsplit('/', 1)[-1]}]", "index"
        raise _es_error(403, "security_exception",
                        f"action [{action}] is unauthorized for user [{user}] with effective roles "
                        f"[falconet_test]{on}, this action is granted by the {level} privileges "
                        f"[{','.join(granted_by)}]")

    def route(self, req: Request) -> Any:
        parts = [p for p in req.path.split("/") if p]
        m = req.method
        if not parts:
            self._authorize(req, "info")
            return {"name": "fake-node", "cluster_name": "fake-cluster", "cluster_uuid": "fAkEcLuStErUuId00000000",
                    "version": {"number": self.version, "build_flavor": "default", "build_type": "docker",
                                "build_hash": "0" * 40, "build_date": "2024-08-05T10:05:34.233336849Z",
                                "build_snapshot": False, "lucene_version": "9.11.1",
                                "minimum_wire_compatibility_version": "7.17.0",
                                "minimum_index_compatibility_version": "7.0.0"},
                    "tagline": "You Know, for Search"}
        if parts == ["_cluster", "health"]:
            self._authorize(req, "health")
            timed_out = self.health == "red" and "wait_for_status" in req.query
            body = {"cluster_name": "fake-cluster", "status": self.health, "timed_out": timed_out,
                    "number_of_nodes": 1, "number_of_data_nodes": 1, "active_primary_shards": 0,
                    "active_shards": 0, "relocating_shards": 0, "initializing_shards": 0,
                    "unassigned_shards": 0, "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0,
                    "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
                    "active_shards_percent_as_number": 100.0}
            if timed_out:
                raise _Answer(408, body)
            return body
        if len(parts) == 3 and parts[:2] == ["_ilm", "policy"]:
            return self._ilm(req, parts[2])
        if len(parts) == 2 and parts[0] == "_component_template":
            return self._component_template(req, parts[1])
        if len(parts) == 2 and parts[0] == "_index_template":
            return self._index_template(req, parts[1])
        if len(parts) == 3 and parts[:2] == ["_ingest", "pipeline"]:
            return self._pipeline(req, parts[2])
        if len(parts) == 2 and parts[0] == "_data_stream":
            return self._data_stream(req, parts[1])
        raise _es_error(400, "illegal_argument_exception",
                        f"no handler found for uri [{req.path}] and method [{m}]")

    def _ilm(self, req: Request, name: str) -> Any:
        self._authorize(req, "ilm")
        if req.method == "PUT":
            body = req.json() or {}
            old = self.ilm.get(name)
            self.ilm[name] = {"version": (old["version"] + 1) if old else 1, "modified_date": _now(),
                              "policy": body.get("policy", {}),
                              "in_use_by": {"indices": [], "data_streams": [], "composable_templates": []}}
            return {"acknowledged": True}
        if name not in self.ilm:
            raise _es_error(404, "resource_not_found_exception", f"Lifecycle policy not found: {name}")
        return {name: copy.deepcopy(self.ilm[name])}

    def _component_template(self, req: Request, name: str) -> Any:
        self._authorize(req, "component_template")
        if req.method == "PUT":
            self.component_templates[name] = req.json() or {}
            return {"acknowledged": True}
        if name not in self.component_templates:
            raise _es_error(404, "resource_not_found_exception", f"component template matching [{name}] not found")
        return {"component_templates": [{"name": name, "component_template": copy.deepcopy(
            self.component_templates[name])}]}

    def _index_template(self, req: Request, name: str) -> Any:
        self._authorize(req, "index_template")
        if req.method == "PUT":
            body = req.json() or {}
            missing = [c for c in body.get("composed_of", []) if c not in self.component_templates]
            if missing:
                raise _es_error(400, "invalid_index_template_exception",
                                f"index_template [{name}] invalid, cause [index template [{name}] specifies "
                                f"component templates [{', '.join(missing)}] that do not exist]")
            self.index_templates[name] = body
            return {"acknowledged": True}
        if name not in self.index_templates:
            raise _es_error(404, "resource_not_found_exception", f"index template matching [{name}] not found")
        return {"index_templates": [{"name": name, "index_template": copy.deepcopy(self.index_templates[name])}]}

    def _pipeline(self, req: Request, name: str) -> Any:
        self._authorize(req, "pipeline")
        if req.method == "PUT":
            self.pipelines[name] = req.json() or {}
            return {"acknowledged": True}
        if name not in self.pipelines:
            raise _Answer(404, {})
        return {name: copy.deepcopy(self.pipelines[name])}

    def _matching_template(self, name: str) -> str | None:
        from fnmatch import fnmatchcase

        best = None
        for tname, body in self.index_templates.items():
            if any(fnmatchcase(name, p) for p in body.get("index_patterns", [])):
                if best is None or body.get("priority", 0) > self.index_templates[best].get("priority", 0):
                    best = tname
        return best

    def _data_stream(self, req: Request, name: str) -> Any:
        self._authorize(req, "data_stream")
        if req.method == "PUT":
            if name in self.data_streams:
                raise _es_error(400, "resource_already_exists_exception", f"data_stream [{name}] already exists")
            tname = self._matching_template(name)
            if tname is None or "data_stream" not in self.index_templates[tname]:
                raise _es_error(400, "illegal_argument_exception",
                                f"no matching index template found for data stream [{name}]")
            settings = self.index_templates[tname].get("template", {}).get("settings", {})
            policy = None
            for c in self.index_templates[tname].get("composed_of", []):
                cs = self.component_templates.get(c, {}).get("template", {}).get("settings", {})
                policy = cs.get("index", {}).get("lifecycle", {}).get("name", policy)
            policy = settings.get("index", {}).get("lifecycle", {}).get("name", policy)
            day = datetime.now(UTC).strftime("%Y.%m.%d")
            self.data_streams[name] = {
                "name": name, "timestamp_field": {"name": "@timestamp"},
                "indices": [{"index_name": f".ds-{name}-{day}-000001", "index_uuid": "fAkEiNdExUuId0000000"}],
                "generation": 1, "status": "GREEN", "template": tname, "ilm_policy": policy,
                "hidden": False, "system": False, "allow_custom_routing": False, "replicated": False}
            return {"acknowledged": True}
        if name not in self.data_streams:
            raise _es_error(404, "index_not_found_exception", f"no such index [{name}]", index_uuid="_na_",
                            **{"resource.type": "index_or_alias", "resource.id": name}, index=name)
        return {"data_streams": [copy.deepcopy(self.data_streams[name])]}


class FakeKibana(_FakeServer):
    """Kibana: status, and saved objects per space through _bulk_get and _import."""

    def __init__(self, version: str = "8.15.0", not_ready: int = 0, spaces: tuple[str, ...] = ("default",),
                 kibana_forbidden: bool = False, **kwargs: Any) -> None:
        self.version = version
        self.not_ready = not_ready
        self.kibana_forbidden = kibana_forbidden
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {s: {} for s in spaces}
        self.imports: list[dict[str, Any]] = []    # {space, overwrite, filename, content_type, objects}
        super().__init__(**kwargs)

    def unauthorized(self, req: Request) -> _Answer:
        return _Answer(401, {"statusCode": 401, "error": "Unauthorized",
                             "message": "[security_exception]: missing authentication credentials for REST "
                                        f"request [{req.path}]"},
                       {"WWW-Authenticate": 'Basic realm="kibana"'})

    def route(self, req: Request) -> Any:
        path, space = req.path, "default"
        if path.startswith("/s/"):
            _, _, space, rest = path.split("/", 3)
            path = "/" + rest
        if path == "/api/status" and req.method == "GET":
            if self.not_ready > 0:
                self.not_ready -= 1
                raise _Answer(503, b"Kibana server is not ready yet")
            return {"name": "fake-kibana", "uuid": "5b2de169-2785-441b-ae8c-186a1936b17d",
                    "version": {"number": self.version, "build_hash": "0" * 40, "build_number": 1,
                                "build_snapshot": False, "build_flavor": "traditional",
                                "build_date": "2024-08-05T10:05:34.233Z"},
                    "status": {"overall": _level("All services and plugins are available"),
                               "core": {"elasticsearch": _level("Elasticsearch is available"),
                                        "savedObjects": _level("SavedObjects service has completed migrations "
                                                               "and is available")},
                               "plugins": {}}}
        if req.method == "POST" and "kbn-xsrf" not in req.headers:
            raise _Answer(400, {"statusCode": 400, "error": "Bad Request",
                                "message": "Request must contain a kbn-xsrf header."})
        if space not in self.objects:
            raise _Answer(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})
        store = self.objects[space]
        if path == "/api/saved_objects/_bulk_get" and req.method == "POST":
            wanted = req.json() or []
            if self.kibana_forbidden:
                types = sorted({w["type"] for w in wanted})
                raise _Answer(403, {"statusCode": 403, "error": "Forbidden",
                                    "message": f"Unable to bulk_get {','.join(types)}"})
            out = []
            for w in wanted:
                obj = store.get((w["type"], w["id"]))
                if obj is None:
                    out.append({"id": w["id"], "type": w["type"],
                                "error": {"statusCode": 404, "error": "Not Found",
                                          "message": f"Saved object [{w['type']}/{w['id']}] not found"}})
                else:
                    out.append({**copy.deepcopy(obj), "namespaces": [space], "version": "WzEsMV0="})
            return {"saved_objects": out}
        if path == "/api/saved_objects/_import" and req.method == "POST":
            return self._import(req, space, store)
        raise _Answer(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})

    def _import(self, req: Request, space: str, store: dict[tuple[str, str], dict[str, Any]]) -> Any:
        overwrite = req.query.get("overwrite") == "true"
        filename, ctype, data = _multipart_file(req)
        if filename is None or not filename.endswith(".ndjson"):
            raise _Answer(415, {"statusCode": 415, "error": "Unsupported Media Type",
                                "message": "Invalid file extension .json"})
        objects = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        self.imports.append({"space": space, "overwrite": overwrite, "filename": filename,
                             "content_type": ctype, "objects": objects})
        if self.kibana_forbidden:
            types = sorted({o["type"] for o in objects})
            raise _Answer(403, {"statusCode": 403, "error": "Forbidden",
                                "message": f"Unable to bulk_create {','.join(types)}"})
        in_file = {(o["type"], o["id"]) for o in objects}
        errors, ok = [], []
        for o in objects:
            key = (o["type"], o["id"])
            title = o.get("attributes", {}).get("title")
            missing = [{"type": r["type"], "id": r["id"]} for r in o.get("references", [])
                       if (r["type"], r["id"]) not in in_file and (r["type"], r["id"]) not in store]
            if missing:
                errors.append({"id": o["id"], "type": o["type"], "title": title, "meta": {"title": title},
                               "error": {"type": "missing_references", "references": missing}})
            elif key in store and not overwrite:
                errors.append({"id": o["id"], "type": o["type"], "title": title, "meta": {"title": title},
                               "error": {"type": "conflict"}})
            else:
                ok.append((key, o))
        if errors:    # Kibana imports nothing from a file with errors it cannot resolve
            return {"success": False, "successCount": 0, "errors": errors, "warnings": []}
        results = []
        for key, o in ok:
            existed = key in store
            store[key] = o
            res = {"type": o["type"], "id": o["id"], "meta": {"title": o.get("attributes", {}).get("title"),
                                                             "icon": o["type"]}}
            if existed:
                res["overwrite"] = True
            results.append(res)
        return {"success": True, "successCount": len(results), "successResults": results, "warnings": []}


def _multipart_file(req: Request) -> tuple[str | None, str | None, bytes]:
    """The `file` part of a multipart/form-data body: (filename, content type, data)."""
    ctype = req.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data") or "boundary=" not in ctype:
        raise _Answer(415, {"statusCode": 415, "error": "Unsupported Media Type",
                            "message": "Unsupported Media Type"})
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
    for part in req.body.split(b"--" + boundary):
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = {}
        for line in head.decode().strip().split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        params = dict(p.strip().split("=", 1) for p in disp.split(";")[1:] if "=" in p)
        if params.get("name", "").strip('"') == "file":
            return params.get("filename", "").strip('"') or None, headers.get("content-type"), \
                data.removesuffix(b"\r\n")
    raise _Answer(400, {"statusCode": 400, "error": "Bad Request",
                        "message": "[request body.file]: expected value of type [Stream] but got [undefined]"})


def _level(summary: str) -> dict[str, str]:
    return {"level": "available", "summary": summary}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
