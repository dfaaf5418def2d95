"""Shared fixtures of the output tests."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.tls import TlsFiles, make_tls_files

from sensor.alert import Alert
from sensor.outputs.settings import OutputSettings

# 2024-03-01T12:34:56.123456789Z
T0 = 1_709_296_496_123_456_789
_n = itertools.count()


def make_alert(i: int | None = None, **kw: Any) -> Alert:
    """A deterministic alert (fixed time and uuid) unless overridden."""
    i = next(_n) if i is None else i
    base: dict[str, Any] = dict(
        rule="Terminal shell in container", priority="Notice", source="syscall", time_ns=T0 + i,
        output=f"A shell was spawned in a container (user=root shell=bash pid={i})",
        output_fields={"user.name": "root", "proc.name": "bash", "proc.pid": i, "container.id": None},
        tags=["shell", "container", "mitre_execution"], hostname="node-1",
        uuid=f"00000000-0000-4000-8000-{i:012d}")
    base.update(kw)
    return Alert(**base)


@pytest.fixture
def alert_factory() -> Any:
    return make_alert


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def cfg_dir(tmp_path: Path) -> str:
    return f"state_dir={tmp_path / 'state'}"


# make_alert(5) rendered as Falco renders it (DESIGN.md §3): the JSON alert, and the text line with
# an ISO 8601 time (the local-time prefix depends on TZ; tests that use it pin TZ=UTC).
JSON_5 = ('{"hostname":"node-1","output":"12:34:56.123456794: Notice A shell was spawned in a container '
          '(user=root shell=bash pid=5)","output_fields":{"user.name":"root","proc.name":"bash","proc.pid":5,'
          '"container.id":null},"priority":"Notice","rule":"Terminal shell in container","source":"syscall",'
          '"tags":["container","mitre_execution","shell"],"time":"2024-03-01T12:34:56.123456794Z",'
          '"uuid":"00000000-0000-4000-8000-000000000005"}')
TEXT_5_UTC = "12:34:56.123456794: Notice A shell was spawned in a container (user=root shell=bash pid=5)"
TEXT_5_ISO = ("2024-03-01T12:34:56.123456794+0000: Notice A shell was spawned in a container "
              "(user=root shell=bash pid=5)")


def output_settings(tmp_path: Path, *overrides: str) -> OutputSettings:
    """The outputs' settings of a configuration with every channel off, state under tmp_path, and
    these overrides."""
    from sensor import config

    return OutputSettings.from_config(config.load(None, ["stdout_output.enabled=false", "webserver.enabled=false",
                                                         f"state_dir={tmp_path / 'state'}", *overrides]))
