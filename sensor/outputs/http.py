"""http: every alert POSTed to a URL (Falcosidekick, a webhook), over TLS or mutual TLS when asked.

One request per alert, the JSON alert as the body (`Content-Type: application/json`; with
`format: text` the text line as text/plain), on a kept-alive connection. A 2xx answer delivers the
alert; 408, 429 and 5xx answers and connection errors are retried (the alert waits in the spool);
any other 4xx means the server will never take this alert: it is dropped and counted as rejected.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from sensor import __version__
from sensor.config import Key, parse_duration
from sensor.errors import ConfigError
from sensor.outputs.channel import DeliveryError
from sensor.outputs.spool import spool_keys
from sensor.outputs.tls import tls_context

log = logging.getLogger("falconet.outputs")

CONFIG_KEYS: tuple[Key, ...] = (
    Key("http_output.enabled", bool, False, "POST every alert to `url`."),
    Key("http_output.url", str, "", "Where to POST, http:// or https:// (e.g. http://falcosidekick:2801/)."),
    Key("http_output.user_agent", str, f"falconet/{__version__}", "The User-Agent header."),
    Key("http_output.format", str, "json", "json (the JSON alert), text, or empty: follow json_output.",
        choices=("", "text", "json")),
    Key("http_output.insecure", bool, False, "Do not verify the server's certificate (testing only)."),
    Key("http_output.ca_cert", str, "", "PEM file of the CA(s) that signed the server's certificate; "
        "empty: the system's trust store."),
    Key("http_output.ca_path", str, "", "Directory of hashed CA certificates (c_rehash), besides ca_cert."),
    Key("http_output.mtls", bool, False, "Present a client certificate (mutual TLS)."),
    Key("http_output.client_cert", str, "", "PEM client certificate for mTLS."),
    Key("http_output.client_key", str, "", "PEM private key of client_cert."),
    Key("http_output.compress_uploads", bool, False, "gzip request bodies (Content-Encoding: gzip)."),
    Key("http_output.keep_alive", bool, True, "Reuse one connection for successive alerts."),
    Key("http_output.timeout", str, "10s", "Connect and response timeout of one request.",
        check=parse_duration),
    *spool_keys("http_output", True),
)

RETRYABLE = frozenset({408, 425, 429})


class HttpTransport:
    """POSTs records one by one to a URL."""

    name = "http"

    def __init__(self, url: str, *, content_type: str = "application/json", user_agent: str = "",
                 context: ssl.SSLContext | None = None, compress: bool = False, keep_alive: bool = True,
                 timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.context = context if context is not None or not self.https else tls_context()
        self.compress = compress
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.headers = {"Content-Type": content_type, "User-Agent": user_agent or f"falconet/{__version__}"}
        if compress:
            self.headers["Content-Encoding"] = "gzip"
        if not keep_alive:
            self.headers["Connection"] = "close"
        self.rejected_last = ""
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                         context=self.context)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _post(self, body: bytes) -> tuple[int, bytes]:
        payload = gzip.compress(body) if self.compress else body
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", self.path, payload, self.headers)
                resp = conn.getresponse()
                data = resp.read()
                if not self.keep_alive or resp.will_close:
                    self.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed meanwhile: one fresh attempt.
                self.close()
                if attempt == 2:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def send(self, records: list[bytes]) -> int:
        rejected = 0
        for i, body in enumerate(records):
            try:
                status, data = self._post(body)
            except (OSError, http.client.HTTPException) as e:
                raise DeliveryError(f"POST {self.url}: {e}", delivered=i, rejected=rejected) from e
            if 200 <= status < 300:
                continue
            detail = data[:200].decode("utf-8", "replace").strip()
            if 400 <= status < 500 and status not in RETRYABLE:
                rejected += 1
                self.rejected_last = f"HTTP {status} {detail}"
                log.error("output http: %s rejected an alert for good: HTTP %d %s", self.url, status, detail)
                continue
            raise DeliveryError(f"POST {self.url}: HTTP {status} {detail}", delivered=i, rejected=rejected)
        return rejected

    def reopen(self) -> None:
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def from_config(cfg: Any, ctx: Any) -> tuple[HttpTransport, Any] | None:
    if not cfg.get("http_output.enabled"):
        return None
    url = cfg.get("http_output.url")
    where = cfg.origin("http_output.url")
    if not url:
        raise ConfigError(f"{where}: 'http_output.url' is empty while http_output is enabled",
                          hint="set the URL alerts are POSTed to")
    context = None
    if url.startswith("https:"):
        mtls = bool(cfg.get("http_output.mtls"))
        if mtls and not cfg.get("http_output.client_cert"):
            raise ConfigError(f"{cfg.origin('http_output.mtls')}: http_output.mtls is on but "
                              f"http_output.client_cert is empty", hint="set client_cert and client_key")
        try:
            context = tls_context(insecure=bool(cfg.get("http_output.insecure")),
                                  ca_cert=cfg.get("http_output.ca_cert"),
                                  ca_path=cfg.get("http_output.ca_path"),
                                  client_cert=cfg.get("http_output.client_cert") if mtls else "",
                                  client_key=cfg.get("http_output.client_key") if mtls else "")
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"http_output TLS files (ca_cert {cfg.get('http_output.ca_cert')!r}, "
                              f"client_cert {cfg.get('http_output.client_cert')!r}): {e}") from e
    fmt = cfg.get("http_output.format", "json")
    renderer = ctx.renderer
    try:
        transport = HttpTransport(url, content_type="application/json" if renderer.is_json(fmt)
                                  else "text/plain; charset=utf-8",
                                  user_agent=cfg.get("http_output.user_agent"), context=context,
                                  compress=bool(cfg.get("http_output.compress_uploads")),
                                  keep_alive=bool(cfg.get("http_output.keep_alive")),
                                  timeout=cfg.duration("http_output.timeout"))
    except ValueError as e:
        raise ConfigError(f"{where}: 'http_output.url': {e}") from e
    return transport, lambda a: renderer.render(a, fmt).encode()
