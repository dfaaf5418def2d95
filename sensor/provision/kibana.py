"""The Kibana half of the cluster back end: the saved-objects import API (multipart NDJSON).

Kibana has no official Python client; its HTTP API is small enough for urllib3 (already installed
with the Elasticsearch client). Saved objects carry no version marker Kibana keeps, so the check
is existence: `_bulk_get` the step's objects, import the missing ones (`overwrite=false`), or with
--overwrite import all of them (`overwrite=true`).
"""

from __future__ import annotations

import json
import re
import ssl
import warnings
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import urllib3
from urllib3.exceptions import HTTPError, SSLError

from sensor.errors import UnavailableError
from sensor.provision.bundle import SavedObject, ndjson
from sensor.provision.connection import (
    Endpoint,
    NotReady,
    check_version,
    credentials_hint,
    tls_hint,
    wait_ready,
)
from sensor.provision.plan import CREATED, REPLACED, UNCHANGED, Change, ProvisionError, Step

SPACE_RE = re.compile(r"^[a-z0-9_-]+$")
READY_LEVELS = ("available", "degraded")   # degraded: some plugin is unwell, saved objects still work


class KibanaTarget:
    """Provisions one Kibana (in one space)."""

    def __init__(self, endpoint: Endpoint, space: str | None = None, timeout: float = 120.0,
                 out: TextIO | None = None) -> None:
        if space and not SPACE_RE.match(space):
            raise ProvisionError(f"--space {space!r}: a Kibana space id is lower-case a-z, 0-9, _ and -")
        self.endpoint = endpoint
        self.space = space if space and space != "default" else None
        self.timeout = timeout
        self.out = out
        self.version = ""
        self.pool = urllib3.PoolManager(**pool_options(endpoint))

    @property
    def prefix(self) -> str:
        """The URL of the space: saved-object calls go to BASE/s/SPACE/api/..."""
        return self.endpoint.base + (f"/s/{quote(self.space)}" if self.space else "")

    def import_url(self, overwrite: bool) -> str:
        return f"{self.prefix}/api/saved_objects/_import?overwrite={'true' if overwrite else 'false'}"

    # -- readiness --------------------------------------------------------------------------------
    def connect(self, interval: float = 1.0) -> str:
        """Wait until Kibana reports itself available; check its version. Returns it."""
        self.version = wait_ready(self.endpoint, self._probe, self.timeout, self.out, interval)
        return self.version

    def _probe(self) -> str:
        url = f"{self.endpoint.base}/api/status"
        status, body = self._request("GET", url, retry=True)
        if status in (502, 503, 504):
            raise NotReady(_kibana_message(body) or f"HTTP {status}")
        self._raise_for(None, f"GET {url}", status, body)
        doc = _json(body)
        version = str(doc.get("version", {}).get("number", ""))
        check_version(self.endpoint, version)
        level = doc.get("status", {}).get("overall", {}).get("level")
        if level not in READY_LEVELS:
            raise NotReady(f"status {level}")
        return version

    # -- the plan's back end ----------------------------------------------------------------------
    def import_objects(self, step: Step, objects: list[SavedObject], overwrite: bool) -> list[Change]:
        present = self.existing(step, objects)
        todo = objects if overwrite else [o for o in objects if (o.type, o.id) not in present]
        if todo:
            self._import(step, todo, overwrite)
        imported = {(o.type, o.id) for o in todo}
        changes = []
        for o in objects:
            key = (o.type, o.id)
            result = UNCHANGED if key not in imported else REPLACED if key in present else CREATED
            changes.append(Change(f"{o.type}/{o.id}", result))
        return changes

    def existing(self, step: Step, objects: list[SavedObject]) -> set[tuple[str, str]]:
        """Which of the objects the space already has."""
        url = f"{self.prefix}/api/saved_objects/_bulk_get"
        payload = json.dumps([{"type": o.type, "id": o.id} for o in objects]).encode()
        status, body = self._request("POST", url, body=payload, content_type="application/json")
        self._raise_for(step, f"POST {url}", status, body)
        found = set()
        for so in _json(body).get("saved_objects", []):
            err = so.get("error")
            if err is None:
                found.add((so.get("type"), so.get("id")))
            elif err.get("statusCode") != 404:
                raise ProvisionError(f"{step.title}: Kibana at {self.endpoint.url} could not read "
                                     f"{so.get('type')}/{so.get('id')}: {err.get('message') or err}",
                                     hint=f"the user needs {step.privilege}")
        return found

    def _import(self, step: Step, objects: list[SavedObject], overwrite: bool) -> None:
        url = self.import_url(overwrite)
        fields = {"file": ("falconet.ndjson", ndjson(objects).encode(), "application/ndjson")}
        status, body = self._request("POST", url, fields=fields)
        self._raise_for(step, f"POST {url}", status, body)
        result = _json(body)
        if not result.get("success"):
            problems = [_import_problem(e) for e in result.get("errors", [])]
            raise ProvisionError(f"{step.title}: Kibana at {self.endpoint.url} imported "
                                 f"{result.get('successCount', 0)} of {len(objects)} objects: "
                                 + "; ".join(problems or [str(result)[:300]]))

    # -- HTTP -------------------------------------------------------------------------------------
    def _request(self, method: str, url: str, body: bytes | None = None, content_type: str | None = None,
                 fields: dict[str, Any] | None = None, retry: bool = False) -> tuple[int, bytes]:
        headers = {"kbn-xsrf": "falconet", **self.endpoint.auth_header()}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            if fields is not None:
                resp = self.pool.request(method, url, fields=fields, headers=headers)
            else:
                resp = self.pool.request(method, url, body=body, headers=headers)
        except SSLError as e:
            raise UnavailableError(f"TLS with Kibana at {self.endpoint.url} failed: {_reason(e)}",
                                   hint=tls_hint(self.endpoint)) from e
        except HTTPError as e:
            if retry:
                raise NotReady(_reason(e)) from e
            raise UnavailableError(f"lost Kibana at {self.endpoint.url} during {method} {url}: "
                                   f"{_reason(e)}") from e
        return resp.status, resp.data

    def _raise_for(self, step: Step | None, what: str, status: int, body: bytes) -> None:
        if 200 <= status < 300:
            return
        url = self.endpoint.url
        message = _kibana_message(body)
        if status == 401:
            raise ProvisionError(f"Kibana at {url} rejected the credentials (401) on {what}: {message}",
                                 hint=credentials_hint(self.endpoint))
        if status == 403:
            need = step.privilege if step else "access to Kibana"
            raise ProvisionError(f"{step.title if step else 'Kibana'}: permission denied for {what} at "
                                 f"{url} (403): {message}", hint=f"the user needs {need}")
        if status == 404 and self.space and "/s/" in what:
            raise ProvisionError(f"Kibana at {url} has no space '{self.space}' (404 on {what})",
                                 hint="create the space first, or check --space")
        raise ProvisionError(f"{step.title if step else 'Kibana'}: Kibana refused {what} at {url} "
                             f"(HTTP {status}): {message}")


def pool_options(endpoint: Endpoint) -> dict[str, Any]:
    """urllib3 PoolManager arguments: TLS trust, timeouts, no retries (we wait ourselves)."""
    opts: dict[str, Any] = {"timeout": urllib3.Timeout(connect=10.0, read=60.0), "retries": False}
    if endpoint.tls:
        if endpoint.insecure:
            opts.update(cert_reqs=ssl.CERT_NONE, assert_hostname=False)
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        else:
            opts["cert_reqs"] = ssl.CERT_REQUIRED
            if endpoint.ca_cert:
                if not Path(endpoint.ca_cert).is_file():
                    raise ProvisionError(f"--ca-cert {endpoint.ca_cert}: no such file")
                opts["ca_certs"] = endpoint.ca_cert
    return opts


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _kibana_message(body: bytes) -> str:
    """Kibana's error bodies are {"statusCode", "error", "message"}; while starting, plain text."""
    doc = _json(body)
    if doc.get("message"):
        return str(doc["message"])
    return body.decode("utf-8", "replace").strip()[:300]


def _import_problem(err: dict[str, Any]) -> str:
    what = f"{err.get('type')}/{err.get('id')}"
    title = err.get("title") or err.get("meta", {}).get("title")
    if title:
        what += f" ({title})"
    e = err.get("error", {})
    kind = e.get("type", "error")
    if kind == "missing_references":
        refs = ", ".join(f"{r.get('type')}/{r.get('id')}" for r in e.get("references", []))
        return f"{what}: missing references {refs}"
    detail = e.get("message") or e.get("reason") or ""
    return f"{what}: {kind}" + (f" ({detail})" if detail else "")


def _reason(e: Exception) -> str:
    text = str(e)
    low = text.lower()
    if "refused" in low:
        return "connection refused"
    if "certificate verify failed" in low:
        return "certificate verify failed"
    if "timed out" in low:
        return "timed out"
    return text[:300]
