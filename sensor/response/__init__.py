"""Automatic response: act on alerts (kill a process, delete/label/isolate a pod, call a URL or a
program), safely and on the record.

`build(cfg, sink)` turns the `response.*` configuration into a `ResponseWorker` (or None when
response is off). The runtime calls `worker.submit(alert)` for every alert; it never blocks. Each
action runs on its own thread behind a bounded queue, and everything it does, skips or fails to do
becomes an internal alert ("Falconet internal: response") handed to `sink`, the outputs' submit.

This module only declares the keys and the entry point, so reading the config schema stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sensor.config import Key

if TYPE_CHECKING:
    from sensor.alert import Alert
    from sensor.response.worker import ResponseWorker

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


def build(cfg: Any, sink: Callable[[Alert], None], ruleset: Any = None) -> ResponseWorker | None:
    """The response worker for this configuration, started; None when response.enabled is false.
    A match.condition may use the lists and macros of `ruleset` (the loaded rules).

    Raises sensor.errors.ConfigError naming the file and line of every invalid action.
    """
    if not cfg.get("response.enabled", False):
        return None
    from sensor.response.spec import parse_actions
    from sensor.response.worker import ResponseWorker

    specs = parse_actions(cfg, ruleset)
    worker = ResponseWorker(specs, sink, dry_run=bool(cfg.get("response.dry_run", False)),
                            exclude_namespaces=cfg.get("response.exclude_namespaces", []),
                            capacity=int(cfg.get("response.queue_capacity", 1000)),
                            kubeconfig=cfg.get("response.kubeconfig", ""), hostname=cfg.hostname())
    worker.start()
    return worker



def describe(cfg: Any, ruleset: Any = None) -> list[str]:
    """What `falconet run --dry-run` prints about response: one line per action, after checking
    them as `build` would (ConfigError naming file and line when one is invalid)."""
    if not cfg.get("response.enabled", False):
        return ["Response: off"]
    from sensor.response.spec import parse_actions

    specs = parse_actions(cfg, ruleset)
    mode = " (dry run: record only)" if cfg.get("response.dry_run", False) else ""
    lines = [f"Response: {len(specs)} action(s){mode}"]
    for s in specs:
        m = s.match
        what = ", ".join(filter(None, [
            f"rules {list(m.rules)}" if m.rules else "",
            f"priority >= {m.priority}" if m.priority else "",
            f"tags {sorted(m.tags)}" if m.tags else "",
            f"sources {sorted(m.sources)}" if m.sources else "",
            f"condition {m.condition_text!r}" if m.condition_text else ""])) or "every alert"
        lines.append(f"Response action {s.name}: {s.do} on {what}; cooldown {s.cooldown:g}s, "
                     f"max {s.max_per_minute or 'unlimited'}/min ({s.where})")
    return lines
