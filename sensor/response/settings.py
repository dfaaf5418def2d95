"""What automatic response can be told: the `response.*` keys and ResponseSettings built from them.

The actions stay as written (mappings) here: checking them needs the action classes and the loaded
rules (a match.condition may use their macros), which sensor/response/spec.py does when the worker
is built. ResponseSettings keeps where each of their values was written, so that every mistake is
reported with its file and line.

Light on purpose: sensor/config.py reads these keys to build its schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sensor.config_keys import Key, Origins

if TYPE_CHECKING:
    from sensor.config import Config

CONFIG_KEYS: tuple[Key, ...] = (
    Key("response.enabled", bool, False, "Act on alerts with the actions below (off by default)."),
    Key("response.dry_run", bool, False,
        "Record what each action would do, and do nothing (safety checks still run)."),
    Key("response.exclude_namespaces", list, ["kube-system", "kube-public"],
        "Kubernetes namespaces whose pods and processes are never acted on."),
    Key("response.actions", list, [],
        "Actions: items {name, match: {rules, priority, tags, sources, condition}, do, with, "
        "cooldown, max_per_minute}; `do` is one of kill_process, k8s_delete_pod, k8s_label_pod, "
        "k8s_isolate_pod, http, program. See docs/response.md."),
    Key("response.queue_capacity", int, 1000,
        "Alerts waiting per action; when full, further alerts for that action are dropped and counted."),
    Key("response.kubeconfig", str, "",
        "Kubeconfig for the k8s_* actions; empty: the in-cluster service account when running in a "
        "pod, else $KUBECONFIG or ~/.kube/config."),
)


@dataclass(frozen=True, slots=True)
class ResponseSettings:
    """`response.*`; `actions` as configured (sensor/response/spec.py checks them), `hostname` the
    one the records carry."""

    enabled: bool = False
    dry_run: bool = False
    exclude_namespaces: tuple[str, ...] = ()
    actions: tuple[Any, ...] = ()                   # as written: each should be a mapping
    queue_capacity: int = 1000
    kubeconfig: str = ""
    hostname: str = ""
    origins: Origins = field(default=Origins(), compare=False, repr=False)

    @classmethod
    def from_config(cls, cfg: Config) -> ResponseSettings:
        return cls(enabled=bool(cfg.get("response.enabled")), dry_run=bool(cfg.get("response.dry_run")),
                   exclude_namespaces=tuple(cfg.get("response.exclude_namespaces") or ()),
                   actions=tuple(cfg.get("response.actions") or ()),
                   queue_capacity=int(cfg.get("response.queue_capacity")),
                   kubeconfig=cfg.get("response.kubeconfig") or "", hostname=cfg.hostname(), origins=cfg.origins)
