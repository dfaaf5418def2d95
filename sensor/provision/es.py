"""The Elasticsearch half of the cluster back end, on the official `elasticsearch` client.

For each asset: GET it; missing → PUT (created); present with the same `_meta` → nothing
(unchanged); present with another `_meta` → left alone (kept) unless --overwrite (replaced).
Every failure names the call, the URL and what would fix it: a 403 names the privilege the step
needs, a 401 the credentials, a refused connection or TLS failure the option to check.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, TextIO

from elastic_transport import TlsError
from elasticsearch import (
    ApiError,
    AuthenticationException,
    AuthorizationException,
    ConnectionTimeout,
    Elasticsearch,
    NotFoundError,
    UnsupportedProductError,
)
from elasticsearch import ConnectionError as EsConnectionError

from sensor.errors import UnavailableError
from sensor.provision.bundle import EsAsset
from sensor.provision.connection import (
    Endpoint,
    NotReady,
    check_version,
    credentials_hint,
    tls_hint,
    wait_ready,
)
from sensor.provision.plan import CREATED, KEPT, REPLACED, UNCHANGED, Change, ProvisionError, Step

_MISSING = object()
READINESS = Step("readiness", "Readiness", "", "elasticsearch", "the cluster privilege monitor")


class ElasticsearchTarget:
    """Provisions one Elasticsearch cluster."""

    def __init__(self, endpoint: Endpoint, timeout: float = 120.0, out: TextIO | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.out = out
        self.version = ""
        self.client = Elasticsearch(hosts=[endpoint.url], **client_options(endpoint))

    # -- readiness --------------------------------------------------------------------------------
    def connect(self, interval: float = 1.0) -> str:
        """Wait until the cluster answers and is at least yellow; check its version. Returns it."""
        self.version = wait_ready(self.endpoint, self._probe, self.timeout, self.out, interval)
        return self.version

    def _probe(self) -> str:
        try:
            info = self._call(READINESS, "GET /", self.client.info, retry=True)
        except _NotFound as e:
            raise ProvisionError(f"{self.endpoint.url} is not Elasticsearch (GET / answered 404)",
                                 hint="check --es-url") from e
        version = str(info.get("version", {}).get("number", ""))
        check_version(self.endpoint, version)
        health = self._call(READINESS, "GET /_cluster/health", self.client.cluster.health, retry=True,
                            wait_for_status="yellow", timeout="2s")
        status = health.get("status")
        if health.get("timed_out") or status not in ("green", "yellow"):
            raise NotReady(f"cluster health is {status}")
        return version

    # -- the plan's back end ----------------------------------------------------------------------
    def put_asset(self, step: Step, asset: EsAsset, overwrite: bool) -> Change:
        existing = self._existing_meta(step, asset)
        if existing is _MISSING:
            self._put(step, asset)
            return Change(asset.name, CREATED)
        if not overwrite:
            if existing == asset.meta:
                return Change(asset.name, UNCHANGED)
            return Change(asset.name, KEPT, describe_meta(existing))
        self._put(step, asset)
        return Change(asset.name, REPLACED)

    def create_data_stream(self, step: Step, name: str) -> Change:
        try:
            self._call(step, f"GET /_data_stream/{name}", self.client.indices.get_data_stream, name=name)
            return Change(name, UNCHANGED)
        except _NotFound:
            pass
        self._call(step, f"PUT /_data_stream/{name}", self.client.indices.create_data_stream, name=name)
        return Change(name, CREATED)

    # -- one object -------------------------------------------------------------------------------
    def _existing_meta(self, step: Step, asset: EsAsset) -> Any:
        what = f"GET {asset.endpoint}"
        try:
            if asset.kind == "ilm":
                resp = self._call(step, what, self.client.ilm.get_lifecycle, name=asset.name)
                return resp.get(asset.name, {}).get("policy", {}).get("_meta")
            if asset.kind == "component_templates":
                resp = self._call(step, what, self.client.cluster.get_component_template, name=asset.name)
                found = resp.get("component_templates") or [{}]
                return found[0].get("component_template", {}).get("_meta")
            if asset.kind == "index_templates":
                resp = self._call(step, what, self.client.indices.get_index_template, name=asset.name)
                found = resp.get("index_templates") or [{}]
                return found[0].get("index_template", {}).get("_meta")
            if asset.kind == "ingest_pipelines":
                resp = self._call(step, what, self.client.ingest.get_pipeline, id=asset.name)
                return resp.get(asset.name, {}).get("_meta")
        except _NotFound:
            return _MISSING
        raise ProvisionError(f"{asset.path}: unknown asset kind {asset.kind}")

    def _put(self, step: Step, asset: EsAsset) -> None:
        what = f"PUT {asset.endpoint}"
        api = {
            "ilm": (self.client.ilm.put_lifecycle, "name"),
            "component_templates": (self.client.cluster.put_component_template, "name"),
            "index_templates": (self.client.indices.put_index_template, "name"),
            "ingest_pipelines": (self.client.ingest.put_pipeline, "id"),
        }
        method, key = api[asset.kind]
        kwargs: dict[str, Any] = {key: asset.name, "body": asset.body}
        self._call(step, what, method, source=asset.path, **kwargs)

    def _call(self, step: Step, what: str, method: Any, retry: bool = False, source: Path | None = None,
              **kwargs: Any) -> Any:
        """Call one client API, turning its exceptions into errors a user can act on."""
        url = self.endpoint.url
        try:
            return method(**kwargs).body
        except NotFoundError as e:
            raise _NotFound() from e
        except TlsError as e:
            raise UnavailableError(f"TLS with Elasticsearch at {url} failed: {_transport_reason(e)}",
                                   hint=tls_hint(self.endpoint)) from e
        except (EsConnectionError, ConnectionTimeout) as e:
            reason = _transport_reason(e)
            if retry:
                raise NotReady(reason) from e
            raise UnavailableError(f"lost Elasticsearch at {url} during {what}: {reason}") from e
        except UnsupportedProductError as e:
            raise ProvisionError(f"{url} is not Elasticsearch (no 'X-Elastic-Product: Elasticsearch' "
                                 "header in its answer)", hint="check --es-url") from e
        except AuthenticationException as e:
            raise ProvisionError(f"Elasticsearch at {url} rejected the credentials (401) on {what}: "
                                 f"{api_reason(e)}", hint=credentials_hint(self.endpoint)) from e
        except AuthorizationException as e:
            raise ProvisionError(f"{step.title}: permission denied for {what} at {url} (403): "
                                 f"{api_reason(e)}", hint=f"the user needs {step.privilege}") from e
        except ApiError as e:
            if retry and e.meta.status == 408 and isinstance(e.body, dict) and "timed_out" in e.body:
                raise NotReady(f"cluster health is {e.body.get('status')}") from e   # wait_for_status
            if retry and e.meta.status in (408, 429, 500, 502, 503, 504):
                raise NotReady(f"HTTP {e.meta.status}: {api_reason(e)}") from e
            where = f" (body from {source})" if source else ""
            raise ProvisionError(f"{step.title}: Elasticsearch refused {what} at {url} "
                                 f"(HTTP {e.meta.status}){where}: {api_reason(e)}") from e


class _NotFound(Exception):
    """404: the object does not exist (yet)."""


def client_options(endpoint: Endpoint) -> dict[str, Any]:
    """Keyword arguments for `Elasticsearch()`: auth, TLS trust, and no retries (we wait ourselves)."""
    opts: dict[str, Any] = {"request_timeout": 30, "max_retries": 0, "retry_on_timeout": False}
    key = endpoint.encoded_api_key()
    if key:
        opts["api_key"] = key
    elif endpoint.username:
        opts["basic_auth"] = (endpoint.username, endpoint.password or "")
    if endpoint.tls:
        if endpoint.insecure:
            opts.update(verify_certs=False, ssl_show_warn=False)
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        elif endpoint.ca_cert:
            if not Path(endpoint.ca_cert).is_file():
                raise ProvisionError(f"--ca-cert {endpoint.ca_cert}: no such file")
            opts["ca_certs"] = endpoint.ca_cert
    return opts


def api_reason(e: ApiError) -> str:
    """The `reason` of an Elasticsearch error body, or its text."""
    body = e.body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("reason") or err.get("type") or err)
        if err:
            return str(err)
    return str(body or e.message)


def _transport_reason(e: Exception) -> str:
    # elastic_transport keeps the detail (urllib3's error) in `message` and the cause, not in str().
    text = " ".join(dict.fromkeys(str(x) for x in (getattr(e, "message", ""), e.__cause__, e) if x))
    low = text.lower()
    if "refused" in low:
        return "connection refused"
    if "certificate verify failed" in low:
        tail = text[low.index("certificate verify failed"):]
        return tail.split("(")[0].split(")")[0].strip()
    if "timed out" in low or isinstance(e, ConnectionTimeout):
        return "timed out"
    if "name or service not known" in low or "nodename nor servname" in low:
        return "unknown host"
    return text[:300]


def describe_meta(meta: Any) -> str:
    """Why an existing object was kept: whose it is and how it differs."""
    if not isinstance(meta, dict) or meta.get("managed_by") != "falconet":
        return "not installed by Falconet"
    parts = [f"version {meta.get('version')}"]
    if "retention" in meta:
        parts.append(f"retention {meta['retention']}")
    return "installed with " + ", ".join(parts)

