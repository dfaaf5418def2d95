"""What an action did, and the internal alert that puts it on the record (DESIGN.md §6 Alert).

Every attempt ends in an `Outcome`: done, skipped (with the reason) or failed. `record()` turns it
into an Alert with source "internal" and rule "Falconet internal: response" that travels the normal
output path, so Kibana shows the response next to the detection it answers: `Alert.extra` carries
the ECS `event.*` block and `falconet.response.*`, which name the triggering alert's uuid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sensor.alert import Alert, Priority
from sensor.response.match import RECORD_RULE

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
# An action that should have acted and did not, for a reason an attacker can bring about (a
# flood of decoys, a full queue): the record is Critical so that a human looks (finding 10).
WITHHELD = frozenset({"rate_limit", "queue_full", "stopped"})
_ECS_OUTCOME = {DONE: "success", FAILED: "failure", SKIPPED: "unknown"}

# Reason codes (falconet.response.reason), stable for dashboards and queries.
REASONS = {
    "done": "the action was carried out",
    "dry_run": "response.dry_run is on: nothing was done",
    "cooldown": "the same action acted on the same target within its cooldown",
    "rate_limit": "the action reached max_per_minute for the target's group: WITHHELD, loudly",
    "excluded_namespace": "the target is in a namespace listed in response.exclude_namespaces",
    "no_target": "the alert does not name a target this action can act on",
    "pid_reused": "the alert's PID now belongs to another process",
    "process_gone": "the alert's process has already exited",
    "unverifiable": "the process cannot be proven to be the alert's (no proc.pid.ts, or /proc unreadable)",
    "protected_process": "the process is PID 1, a kernel thread, the sensor or one of its ancestors",
    "other_container": "the process is not in the alert's container",
    "queue_full": "alerts for this action were dropped because its queue was full: WITHHELD, loudly",
    "invalid_target": "the alert names a pod whose namespace or name Kubernetes would not accept",
    "audit_not_opted_in": "an audit alert of a rule the action does not list in with.audit_rules",
    "failed_request": "the audit event is about a request that failed, was denied, or has no answer yet",
    "partial": "the action reached some of its targets but not all",
    "stopped": "the sensor stopped before the action ran",
    "error": "the action failed",
}

# ECS categorization per action kind: what the action changes when it succeeds.
_ECS_KIND = {
    "kill_process": (["process"], ["end"]),
    "k8s_delete_pod": (["configuration"], ["deletion"]),
    "k8s_label_pod": (["configuration"], ["change"]),
    "k8s_isolate_pod": (["configuration", "network"], ["change", "denied"]),
    "http": (["intrusion_detection"], ["info"]),
    "program": (["intrusion_detection"], ["info"]),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended. `text` is the human sentence; `reason` one of REASONS."""

    result: str           # DONE | SKIPPED | FAILED
    reason: str
    text: str
    target: str = ""


def done(text: str, target: str = "") -> Outcome:
    return Outcome(DONE, "done", text, target)


def skipped(reason: str, text: str, target: str = "") -> Outcome:
    return Outcome(SKIPPED, reason, text, target)


def failed(text: str, target: str = "", reason: str = "error") -> Outcome:
    return Outcome(FAILED, reason, text, target)


def record(action: str, do: str, outcome: Outcome, alert: Alert | None, dry_run: bool,
           hostname: str = "") -> Alert:
    """The internal alert that records one outcome of `action` (a `do` kind) on `alert`."""
    category, etype = _ECS_KIND.get(do, (["intrusion_detection"], ["info"]))
    if outcome.result == FAILED:
        etype = [*etype, "error"] if "error" not in etype else etype
    alert_id = alert.uuid if alert is not None else None
    alert_rule = alert.rule if alert is not None else None
    withheld = outcome.result == SKIPPED and outcome.reason in WITHHELD and not dry_run
    verb = "WITHHELD" if withheld else {DONE: "done", SKIPPED: "skipped", FAILED: "FAILED"}[outcome.result]
    about = f" for rule '{alert_rule}' (alert {alert_id})" if alert is not None else ""
    output = f"Falconet response {verb}: action {action} ({do}) on {outcome.target or '<none>'}: " \
             f"{outcome.text}{about}"
    fields: dict[str, Any] = {
        "response.action": action,
        "response.do": do,
        "response.target": outcome.target or None,
        "response.outcome": outcome.result,
        "response.reason": outcome.reason,
        "response.dry_run": dry_run,
        "response.alert_id": alert_id,
        "response.alert_rule": alert_rule,
    }
    extra = {
        "event": {"kind": "event", "category": category, "type": etype,
                  "outcome": _ECS_OUTCOME[outcome.result], "action": action},
        "falconet": {"response": {"action": action, "do": do, "target": outcome.target or None,
                                  "alert_id": alert_id, "alert_rule": alert_rule, "dry_run": dry_run,
                                  "reason": outcome.reason, "result": outcome.result}},
    }
    priority = Priority.CRITICAL if withheld else Priority.ERROR if outcome.result == FAILED \
        else Priority.INFORMATIONAL
    return Alert(rule=RECORD_RULE, priority=priority, source="internal", time_ns=time.time_ns(),
                 output=output, output_fields=fields, tags=[],
                 hostname=alert.hostname if alert is not None else hostname, extra=extra)
