"""Running `falconet` in-process as a user would, and reading the asset files."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import pytest

from sensor.assets import asset_dir
from sensor.cli import main

ENV = ("FALCONET_ES_URL", "FALCONET_KIBANA_URL", "FALCONET_ES_API_KEY", "FALCONET_USERNAME",
       "FALCONET_PASSWORD", "FALCONET_CONFIG", "FALCONET_DEBUG")
ES_DIR = asset_dir("elasticsearch")
KIBANA_DIR = asset_dir("kibana")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def falconet(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str,
             env: dict[str, str] | None = None) -> Result:
    """Run `falconet ARGS` through its console entry point; return exit code, stdout, stderr."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    code = exc.value.code
    return Result(code if isinstance(code, int) else 1, out.out, out.err)


def asset(rel: str) -> Any:
    """An Elasticsearch asset file's body: asset('ilm/falconet.json')."""
    return json.loads((ES_DIR / rel).read_text())


def es_files() -> dict[str, list[str]]:
    """Asset names per kind directory, sorted."""
    return {kind: sorted(p.stem for p in (ES_DIR / kind).glob("*.json"))
            for kind in ("ilm", "component_templates", "index_templates", "ingest_pipelines")}


def kibana_objects() -> list[dict[str, Any]]:
    """Every saved object file, data view first, in the order provision imports them."""
    out = []
    for type_ in ("index-pattern", "search", "lens", "dashboard"):
        for p in sorted((KIBANA_DIR / type_).glob("*.json")):
            out.append(json.loads(p.read_text()))
    return out


def closed_port() -> int:
    """A local port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
