"""Loads the deployment files as their tools would: the compose file with its variables filled in
from compose/.env.example, the Kubernetes manifests document by document, and the sensor
configurations they mount through Falconet's own config loader."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
K8S_DIR = ROOT / "deploy" / "kubernetes"

# Compose's interpolation syntax: $$ is a literal $, ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, $VAR.
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: line {line!r} is not KEY=VALUE"
            out[key.strip()] = value.strip()
    return out


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Fill in compose variables the way `docker compose config` does; a missing required
    variable (${VAR:?msg}) raises with its message."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        current = env.get(name)
        unset_or_empty = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":?", "?") and unset_or_empty:
            raise KeyError(f"required variable {name} is not set: {arg}")
        return current or ""

    return _VAR.sub(sub, value)


def compose_raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file with .env.example's values (or `env`) filled in."""
    return interpolate(compose_raw(), env_file() if env is None else env)


def compose_variables() -> set[str]:
    """Every variable name the compose file refers to (not $$-escaped ones)."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    return {m.group(1) or m.group(4) for m in _VAR.finditer(text) if m.group(0) != "$$"}


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment (mapping or list form) as a dict of strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def k8s_files() -> list[Path]:
    """The manifests at the top of deploy/kubernetes/ (audit/ holds non-object files)."""
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((path, doc))
    return docs


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in k8s_documents() if d.get("kind") == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in deploy/kubernetes/, found {len(found)}"
    return found[0]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))


def load_sensor_config(path: Path, env: Mapping[str, str], overrides: list[str] | None = None) -> Any:
    """A sensor configuration file through sensor.config.load, with `env` as the environment."""
    import os

    from sensor import config

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return config.load(path, overrides or [])
    finally:
        os.environ.clear()
        os.environ.update(saved)
