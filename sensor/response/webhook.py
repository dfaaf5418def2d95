"""http: POST the alert, as Falcosidekick-compatible JSON (Falco's JSON alert plus `uuid`), to a URL.

Transient failures (connection errors, timeouts, HTTP 429 and 5xx) are retried `retries` times
with a doubling backoff; any other status is a failure at once. Only this action's thread waits.
The cooldown target is the alert's rule, so `cooldown` reads "at most once per rule per period".

Redirects are not followed: urllib would re-send the request, Authorization header included, to
whatever host the Location names, and report the third party's 200 as ours. A 3xx is recorded as
a failure naming where it pointed; only a 2xx from `url` itself is "done".
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from sensor.alert import alert_dict
from sensor.response.params import Param, non_negative, positive
from sensor.response.records import Outcome, done, failed, skipped
from sensor.response.target import Target

BACKOFF_S = 0.5


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every 3xx into an HTTPError instead of a new request elsewhere."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


def _check_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


def shown_url(url: str) -> str:
    """The URL without user:password, for records."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    handlers: list[Any] = [_NoRedirects()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


class HttpPost:
    """POST the alert JSON to `url`."""

    do = "http"
    PARAMS = {
        "url": Param(str, description="Where to POST (http:// or https://).", check=_check_url),
        "headers": Param(dict, {}, "Extra request headers (e.g. Authorization)."),
        "timeout": Param(float, 5.0, "Seconds per attempt.", check=positive),
        "retries": Param(int, 2, "Further attempts after a transient failure.", check=non_negative),
        "ca_cert": Param(str, "", "CA bundle to verify the server with (default: the system's)."),
        "client_cert": Param(str, "", "Client certificate (PEM) for mutual TLS."),
        "client_key": Param(str, "", "Key of the client certificate."),
        "insecure_skip_verify": Param(bool, False, "Do not verify the server's certificate."),
    }

    def __init__(self, params: dict[str, Any], ctx: Any = None) -> None:
        self.url = params["url"]
        self.headers = {"Content-Type": "application/json", "User-Agent": "falconet-response",
                        **{str(k): str(v) for k, v in params["headers"].items()}}
        self.timeout = float(params["timeout"])
        self.retries = int(params["retries"])
        self.context = self._tls(params) if self.url.startswith("https:") else None
        self.opener = _opener(self.context)

    @staticmethod
    def _tls(params: dict[str, Any]) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=params["ca_cert"] or None)
        if params["client_cert"]:
            ctx.load_cert_chain(params["client_cert"], params["client_key"] or None)
        if params["insecure_skip_verify"]:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def resolve(self, alert: Any) -> Target | Outcome:
        return Target(key=alert.rule, text=shown_url(self.url))

    def execute(self, alert: Any, target: Target, dry_run: bool) -> Outcome:
        if dry_run:
            return skipped("dry_run", f"would POST the alert to {target.text}", target.text)
        body = json.dumps(alert_dict(alert), separators=(",", ":"), default=str).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
            try:
                with self.opener.open(req, timeout=self.timeout) as resp:
                    return done(f"POSTed the alert to {target.text}: HTTP {resp.status}", target.text)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} {e.reason}"
                if 300 <= e.code < 400:
                    where = shown_url(e.headers.get("Location", "")) if e.headers else ""
                    return failed(f"POST to {target.text} answered {last}, a redirect"
                                  f"{' to ' + where if where else ''}; not followed (the alert and its "
                                  "headers go only to with.url)", target.text)
                if e.code != 429 and e.code < 500:
                    return failed(f"POST to {target.text} answered {last}", target.text)
            except (urllib.error.URLError, OSError) as e:
                last = str(getattr(e, "reason", e))
        return failed(f"POST to {target.text} failed after {self.retries + 1} attempt(s): {last}",
                      target.text)
