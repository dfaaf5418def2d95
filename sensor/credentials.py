"""Secrets: where the CLI reads them from, how they are kept out of messages, and out of the
environment of the programs the sensor starts.

- A secret never comes from a command-line argument (every local user can read those in `ps`):
  `read_secret_option` takes it from a file, the environment, or a prompt on the terminal.
- `redact` and `redact_url` replace secrets with REDACTED in anything shown: configuration values
  under secret-looking names (password, token, shared_key, api_key, Authorization, ...) and the
  user:password part of URLs.
- `child_environment` is the environment of every program the sensor runs (response `program`
  actions, `program_output`): the sensor's own, less every variable whose name says it holds a
  secret (FLUENT_SHARED_KEY, FALCONET_PASSWORD, *_TOKEN, *_API_KEY, ...). A program that needs a
  secret of its own reads it from a file.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

REDACTED = "<redacted>"

# The names the sensor's own secrets travel under, whatever the patterns below say.
SECRET_ENV = ("FLUENT_SHARED_KEY", "FALCONET_PASSWORD", "FALCONET_ES_API_KEY", "FALCONET_AUDIT_WEBHOOK_TOKEN",
              "FALCONET_WEBSERVER_TOKEN")
_SECRET_ENV_NAME = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|SHARED_KEY|API_?KEY|PRIVATE_KEY|"
                              r"CREDENTIAL|AUTH", re.IGNORECASE)
_SECRET_KEY_NAME = re.compile(r"(password|passwd|passphrase|secret|token|shared_key|api_?key|private_key|"
                              r"credentials?|authorization)$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s@]+)@")


def is_secret_name(name: str) -> bool:
    """True for a configuration key or mapping key that names a secret (`fluent_output.shared_key`,
    `token`, `Authorization`), judged by its last dotted part."""
    return bool(_SECRET_KEY_NAME.search(str(name).rsplit(".", 1)[-1]))


def redact_url(url: str) -> str:
    """The URL with the password of its user:password part (all of the part when it has no
    password: a bare user part is often a token) replaced by REDACTED."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, _ = userinfo.partition(":")
    shown = f"{user}:{REDACTED}" if sep else REDACTED
    return urlunsplit((parts.scheme, f"{shown}@{host}", parts.path, parts.query, parts.fragment))


def redact_text(text: str) -> str:
    """Any URL's user:password part inside free text (an error message) replaced by REDACTED."""
    return _URL_USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)


def redact(value: Any, name: str = "") -> Any:
    """A copy of a configuration value with secrets replaced: the value of a secret-looking name
    (when it is set), mappings member by member, lists item by item, URLs in strings."""
    if name and is_secret_name(name) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and "@" in value:
        return redact_text(value)
    return value


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a program the sensor starts: its own, without its secrets."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k not in SECRET_ENV and not _SECRET_ENV_NAME.search(k)}


def read_secret_option(path: str | None, env: str, what: str) -> str | None:
    """A secret from a file (`path`; "-" reads standard input, prompting when it is a terminal),
    else from the environment variable `env`, else None. Trailing newlines are dropped; an empty
    secret is an error naming where it came from."""
    if path is not None:
        if path == "-":
            if sys.stdin.isatty():
                value = click.prompt(what, hide_input=True, err=True)
            else:
                value = sys.stdin.readline()
            where = "standard input"
        else:
            try:
                value = Path(path).read_text()
            except OSError as e:
                raise click.BadParameter(f"cannot read {path}: {e.strerror or e}") from e
            where = path
        value = value.rstrip("\r\n")
        if not value:
            raise click.BadParameter(f"{what} read from {where} is empty")
        return value
    return os.environ.get(env) or None
