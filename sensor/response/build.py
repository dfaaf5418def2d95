"""ResponseSettings → the running response worker, and what a dry run says about it."""

from __future__ import annotations

from collections.abc import Callable

from sensor.alert import Alert
from sensor.response.settings import ResponseSettings
from sensor.response.spec import RuleVocabulary, parse_actions
from sensor.response.worker import ResponseWorker


def build_response(settings: ResponseSettings, sink: Callable[[Alert], None],
                   ruleset: RuleVocabulary | None = None) -> ResponseWorker | None:
    """The response worker, started; None when response.enabled is false. A match.condition may
    use the lists and macros of `ruleset` (the loaded rules).

    Raises sensor.errors.ConfigError naming the file and line of every invalid action.
    """
    if not settings.enabled:
        return None
    worker = ResponseWorker(parse_actions(settings, ruleset), sink, dry_run=settings.dry_run,
                            exclude_namespaces=settings.exclude_namespaces, capacity=settings.queue_capacity,
                            kubeconfig=settings.kubeconfig, hostname=settings.hostname)
    worker.start()
    return worker


def describe_response(settings: ResponseSettings, ruleset: RuleVocabulary | None = None) -> list[str]:
    """What `falconet run --dry-run` prints about response: one line per action, after checking
    them as `build_response` would (ConfigError naming file and line when one is invalid)."""
    if not settings.enabled:
        return ["Response: off"]
    specs = parse_actions(settings, ruleset)
    mode = " (dry run: record only)" if settings.dry_run else ""
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
