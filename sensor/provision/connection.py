"""Where and how to reach Elasticsearch and Kibana, and waiting until they answer.

One `Endpoint` per service: URL, credentials (basic or an API key), TLS trust (a CA file, or
--insecure). `wait_ready` polls a probe until it reports ready or the timeout passes, showing the
wait on stderr (rewriting one line on a terminal, a line every few seconds otherwise).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import unquote, urlsplit, urlunsplit

from sensor.credentials import redact_url
from sensor.errors import UnavailableError
from sensor.provision.plan import ProvisionError

MIN_VERSION = (8, 8, 0)
"""The oldest Elasticsearch and Kibana the assets are written for (saved objects carry
coreMigrationVersion 8.8.0, which older Kibanas refuse)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One service to talk to."""

    name: str                       # "Elasticsearch" or "Kibana", for messages
    url: str
    username: str | None = None
    password: str | None = None
    api_key: str | None = None      # the encoded key (base64 of id:key), or id:key
    ca_cert: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise ProvisionError(f"{self.name} URL {redact_url(self.url)!r}: expected http(s)://host[:port]")
        parts = urlsplit(self.url)
        if "@" in parts.netloc:
            # user:password@ in the URL: move them to the credentials, so that no message, log line
            # or library error that shows the URL ever shows them.
            userinfo, _, host = parts.netloc.rpartition("@")
            user, _, password = userinfo.partition(":")
            if self.username or self.api_key:
                raise ProvisionError(f"{self.name} URL {redact_url(self.url)} carries credentials, and "
                                     "others were given too: give them once")
            object.__setattr__(self, "username", unquote(user))
            object.__setattr__(self, "password", unquote(password))
            object.__setattr__(self, "url", urlunsplit((parts.scheme, host, parts.path, parts.query, "")))
        if self.api_key and self.username:
            raise ProvisionError("give either an API key or --username with a password, not both")
        if self.username and self.password is None:
            raise ProvisionError(f"--username {self.username} needs a password (FALCONET_PASSWORD or --password-file)")

    @property
    def has_credentials(self) -> bool:
        return bool(self.username or self.api_key)

    @property
    def loopback(self) -> bool:
        host = urlsplit(self.url).hostname or ""
        try:
            return host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    @property
    def tls(self) -> bool:
        return self.url.lower().startswith("https://")

    def encoded_api_key(self) -> str | None:
        """The API key as the `Authorization: ApiKey` header carries it."""
        if not self.api_key:
            return None
        if ":" in self.api_key:    # id:key as printed by the create API's `id` and `api_key`
            return base64.b64encode(self.api_key.encode()).decode()
        return self.api_key

    def auth_header(self) -> dict[str, str]:
        key = self.encoded_api_key()
        if key:
            return {"Authorization": f"ApiKey {key}"}
        if self.username:
            pair = f"{self.username}:{self.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}


def parse_version(text: str) -> tuple[int, int, int]:
    """8.15.0, 8.15.0-SNAPSHOT → (8, 15, 0)."""
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", text or "")
    if not m:
        raise ProvisionError(f"cannot read the version {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def check_version(endpoint: Endpoint, version: str) -> None:
    """Refuse versions older than MIN_VERSION, naming the URL."""
    if parse_version(version) < MIN_VERSION:
        need = ".".join(map(str, MIN_VERSION))
        raise ProvisionError(f"{endpoint.name} at {endpoint.url} is version {version}; Falconet's assets "
                             f"need {need} or later", hint=f"upgrade the stack to {need}+")


class NotReady(Exception):
    """The service answered but is not ready yet, or could not be reached; keep waiting."""


def wait_ready(endpoint: Endpoint, probe: Callable[[], str], timeout: float, out: TextIO | None = None,
               interval: float = 1.0) -> str:
    """Call `probe` until it returns (its result, e.g. the version) or `timeout` seconds pass.

    `probe` raises NotReady to be called again, anything else to give up at once (bad credentials
    do not get better by waiting).
    """
    out = out or sys.stderr
    tty = out.isatty()
    start = time.monotonic()
    last_reason = ""
    last_print = -1e9
    while True:
        try:
            result = probe()
        except NotReady as e:
            last_reason = str(e)
        else:
            if last_print > -1e9 and tty:
                out.write("\n")
            return result
        waited = time.monotonic() - start
        if waited >= timeout:
            if tty and last_print > -1e9:
                out.write("\n")
            raise UnavailableError(f"{endpoint.name} at {endpoint.url} is not ready after {timeout:g}s: "
                                   f"{last_reason}", hint=_hint(endpoint, last_reason))
        line = f"Waiting for {endpoint.name} at {endpoint.url} ({waited:.0f}s of {timeout:g}s): {last_reason}"
        if tty:
            out.write("\r" + line[:200].ljust(80))
            out.flush()
            last_print = waited
        elif waited - last_print >= 10:
            out.write(line + "\n")
            out.flush()
            last_print = waited
        time.sleep(max(0.05, min(interval, timeout - waited)))


def tls_hint(endpoint: Endpoint) -> str:
    """What to do when the server's certificate is not trusted."""
    if endpoint.ca_cert:
        return f"is {endpoint.ca_cert} the CA that signed the server's certificate?"
    return "pass the CA that signed its certificate with --ca-cert (or --insecure to skip verification)"


def credentials_hint(endpoint: Endpoint) -> str:
    """What to do about a 401."""
    if endpoint.api_key:
        return "check the API key in FALCONET_ES_API_KEY / --api-key-file (the encoded key, or id:key)"
    if endpoint.username:
        return "check --username and its password (FALCONET_PASSWORD / --password-file)"
    return (f"{endpoint.name} requires authentication: give --username (its password in FALCONET_PASSWORD or "
            "--password-file) or an API key (FALCONET_ES_API_KEY or --api-key-file)")


def _hint(endpoint: Endpoint, reason: str) -> str:
    if "refused" in reason.lower():
        option = "--es-url" if endpoint.name == "Elasticsearch" else "--kibana-url"
        return f"is {endpoint.name} running, and is {option} right?"
    return "raise --timeout if it is still starting"
