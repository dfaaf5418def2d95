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
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sensor import __version__
from sensor.errors import ConfigError
from sensor.outputs.channel import DeliveryError, Encoder
from sensor.outputs.settings import HttpSettings
from sensor.outputs.tls import tls_context

if TYPE_CHECKING:
    from sensor.outputs.build import BuildContext

log = logging.getLogger("falconet.outputs")


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


def transport(s: HttpSettings, ctx: BuildContext) -> tuple[HttpTransport, Encoder]:
    context = None
    if s.url.startswith("https:"):
        try:
            context = tls_context(insecure=s.insecure, ca_cert=s.ca_cert, ca_path=s.ca_path,
                                  client_cert=s.client_cert if s.mtls else "",
                                  client_key=s.client_key if s.mtls else "")
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"http_output TLS files (ca_cert {s.ca_cert!r}, client_cert {s.client_cert!r}): "
                              f"{e}") from e
    fmt = s.format
    renderer = ctx.renderer
    try:
        made = HttpTransport(s.url, content_type="application/json" if renderer.is_json(fmt)
                             else "text/plain; charset=utf-8", user_agent=s.user_agent, context=context,
                             compress=s.compress, keep_alive=s.keep_alive, timeout=s.timeout)
    except ValueError as e:
        raise ConfigError(f"{s.origins('http_output.url')}: 'http_output.url': {e}") from e
    return made, lambda a: renderer.render(a, fmt).encode()
