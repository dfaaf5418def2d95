"""The response worker: matches alerts on the engine's thread, acts on them on its own.

`submit(alert)` runs on the engine thread and never blocks: it tests each action's match (the
static part is cached per rule) and offers the alert to that action's lane, a bounded queue with
one thread. A full lane drops the alert, counts it, and its thread puts the count on the record.
One thread per action keeps a slow webhook from delaying a kill, and lets each lane own its
cooldown and rate limit without locks.

The target (the PID and start time, the pod) is resolved in `submit`, on the engine thread that
owns the capture state the event points into. In a lane, in order: no target → skipped, excluded
namespace, cooldown, rate limit, then the action itself (which runs its own safety checks, and in
dry run stops short of the effect). Every outcome becomes a record handed to `sink`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sensor.alert import Alert
from sensor.response.kube import api_client
from sensor.response.limits import Cooldown, RateLimit
from sensor.response.records import DONE, FAILED, SKIPPED, Outcome, failed, record, skipped
from sensor.response.spec import ACTIONS, ActionSpec
from sensor.response.target import Target

log = logging.getLogger("falconet.response")
DROP_REPORT_INTERVAL_S = 5.0


def _group_text(group: Any) -> str:
    """How a target group reads in a record: ("cgroup", "/a/b") → cgroup /a/b."""
    if isinstance(group, tuple) and len(group) == 2:
        return f"{group[0]} {group[1]}"
    return str(group)


class ActionContext:
    """What actions share: the Kubernetes client, made once when the first k8s action needs it."""

    def __init__(self, kubeconfig: str = "") -> None:
        self.kubeconfig = kubeconfig
        self._kube: Any = None

    def kube_client(self) -> Any:
        if self._kube is None:
            self._kube = api_client(self.kubeconfig)
        return self._kube


class Lane:
    """One action: its queue, its thread, its limits and its counters."""

    def __init__(self, spec: ActionSpec, action: Any, worker: ResponseWorker, capacity: int) -> None:
        self.spec = spec
        self.action = action
        self.worker = worker
        self.queue: queue.Queue[tuple[Alert, Target | Outcome] | None] = queue.Queue(maxsize=capacity)
        self.cooldown = Cooldown(spec.cooldown)
        self.rate = RateLimit(spec.max_per_minute)
        self.thread = threading.Thread(target=self._run, name=f"response-{spec.name}", daemon=True)
        # Written by the engine thread only:
        self.queued = 0
        self.dropped = 0
        # Written by this lane's thread only:
        self.outcomes = {DONE: 0, SKIPPED: 0, FAILED: 0}
        self.reasons: dict[str, int] = {}
        self.dropped_reported = 0
        self._last_report = 0.0
        # Written by stop() only, after the lane gave up:
        self.abandoned = 0

    def offer(self, alert: Alert, target: Target | Outcome) -> None:
        try:
            self.queue.put_nowait((alert, target))
            self.queued += 1
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        stop, abandon = self.worker._stopping, self.worker._abandon
        while not abandon.is_set():     # after stop()'s timeout, stop() counts what is left
            try:
                item = self.queue.get(timeout=0.25)
            except queue.Empty:
                self._report_drops(force=True)
                if stop.is_set():
                    return
                continue
            if item is None:            # stop()'s wake-up: everything queued before it is done
                self._report_drops(force=True)
                return
            self.handle(*item)
            self._report_drops()

    def handle(self, alert: Alert, target: Target | Outcome) -> Outcome:
        """Act on one alert (on this lane's thread) and record the outcome."""
        spec, dry_run = self.spec, self.worker.dry_run
        if isinstance(target, Target):
            outcome = self._limited(target) or self._execute(alert, target, dry_run)
        else:
            outcome = target
        self.outcomes[outcome.result] += 1
        self.reasons[outcome.reason] = self.reasons.get(outcome.reason, 0) + 1
        self.worker.emit(record(spec.name, spec.do, outcome, alert, dry_run))
        return outcome

    def _limited(self, target: Target) -> Outcome | None:
        if target.namespace and target.namespace in self.worker.exclude_namespaces:
            return skipped("excluded_namespace", f"namespace {target.namespace} is in "
                                                 "response.exclude_namespaces", target.text)
        left = self.cooldown.remaining(target.key)
        if left > 0:
            return skipped("cooldown", f"acted on {target.text} within the last "
                                       f"{self.spec.cooldown:g}s ({left:.1f}s of cooldown left)",
                           target.text)
        if not self.rate.allows(target.group):
            where = f" on {_group_text(target.group)}" if target.group is not None else ""
            log.warning("response action %s withheld on %s: max_per_minute (%d) reached%s",
                        self.spec.name, target.text, self.spec.max_per_minute, where)
            return skipped("rate_limit", f"WITHHELD: {self.spec.max_per_minute} actions in the last minute"
                                         f"{where} (max_per_minute); {target.text} was not acted on",
                           target.text)
        return None

    def _execute(self, alert: Alert, target: Target, dry_run: bool) -> Outcome:
        try:
            outcome = self.action.execute(alert, target, dry_run)
        except Exception as e:  # an action's bug must not kill the lane; it is recorded instead
            log.exception("response action %s failed unexpectedly", self.spec.name)
            outcome = failed(f"unexpected {type(e).__name__}: {e}", target.text)
        if outcome.result == DONE or outcome.reason == "dry_run":
            self.cooldown.note(target.key)
            self.rate.note(target.group)
        elif outcome.result == FAILED:
            self.rate.note(target.group)      # a failing endpoint is not hammered faster than the limit
        return outcome

    def _report_drops(self, force: bool = False) -> None:
        new = self.dropped - self.dropped_reported
        if new <= 0:
            return
        now = time.monotonic()
        if not force and now - self._last_report < DROP_REPORT_INTERVAL_S:
            return
        self._last_report = now
        self.dropped_reported += new
        text = (f"dropped {new} alert(s) because this action's queue was full (capacity "
                f"{self.queue.maxsize}; {self.dropped} in all); raise response.queue_capacity or narrow "
                "its match")
        self.worker.emit(record(self.spec.name, self.spec.do, skipped("queue_full", text), None,
                                self.worker.dry_run, self.worker.hostname))

    def stats(self) -> dict[str, int]:
        return {"queued": self.queued, "drops": self.dropped + self.abandoned,
                "done": self.outcomes[DONE], "skipped": self.outcomes[SKIPPED],
                "failed": self.outcomes[FAILED], "pending": self.queue.qsize()}


class ResponseWorker:
    """Runs the configured actions on alerts, off the engine's thread (see the module doc)."""

    def __init__(self, specs: Iterable[ActionSpec], sink: Callable[[Alert], None], *,
                 dry_run: bool = False, exclude_namespaces: Iterable[str] = (),
                 capacity: int = 1000, kubeconfig: str = "", hostname: str = "") -> None:
        self.sink = sink
        self.dry_run = dry_run
        self.exclude_namespaces = frozenset(exclude_namespaces)
        self.hostname = hostname
        self.context = ActionContext(kubeconfig)
        self.lanes = [Lane(s, ACTIONS[s.do](s.params, self.context), self, max(1, capacity))
                      for s in specs]
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self.alerts = 0
        self.match_errors = 0
        self.record_errors = 0
        self._record_lock = threading.Lock()

    def start(self) -> None:
        for lane in self.lanes:
            lane.thread.start()

    def submit(self, alert: Alert) -> None:
        """Offer an alert to every action it matches. Never blocks; never raises."""
        self.alerts += 1
        for lane in self.lanes:
            try:
                if not lane.spec.match.matches(alert):
                    continue
                # The target's fields are read here, on the engine thread that owns the capture
                # state the event points into; the lane only ever sees the values.
                target = lane.action.resolve(alert)
            except Exception:  # a condition or field that fails on this event must not stop the engine
                self.match_errors += 1
                if self.match_errors == 1 or self.match_errors % 1000 == 0:
                    log.exception("response action %s could not match an alert of rule %r (%d so far)",
                                  lane.spec.name, alert.rule, self.match_errors)
                continue
            lane.offer(alert, target)

    def emit(self, rec: Alert) -> None:
        """Hand a record to the outputs; a sink that fails is counted, never raised into a lane."""
        try:
            self.sink(rec)
        except Exception:
            with self._record_lock:
                self.record_errors += 1
            log.exception("response: the output sink refused a record")

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued (up to `timeout` seconds), then stop. What could not be finished is
        counted as dropped and put on the record."""
        self._stopping.set()
        for lane in self.lanes:
            with contextlib.suppress(queue.Full):   # a full lane notices the stop when it empties
                lane.queue.put_nowait(None)
        deadline = time.monotonic() + timeout
        for lane in self.lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        self._abandon.set()
        for lane in self.lanes:
            left = 0
            while True:
                try:
                    left += lane.queue.get_nowait() is not None
                except queue.Empty:
                    break
            if left:
                lane.abandoned += left
                self.emit(record(lane.spec.name, lane.spec.do,
                                 skipped("stopped", f"the sensor stopped with {left} alert(s) not yet "
                                                    f"acted on (stop timeout {timeout:g}s)"),
                                 None, self.dry_run, self.hostname))

    def stats(self) -> dict[str, int]:
        """Counters for the summary and /metrics: alerts seen, queued, drops, done/skipped/failed."""
        out = {"alerts": self.alerts, "queued": 0, "drops": 0, "done": 0, "skipped": 0, "failed": 0,
               "pending": 0}
        for lane in self.lanes:
            for k, v in lane.stats().items():
                out[k] += v
        out["match_errors"] = self.match_errors
        out["record_errors"] = self.record_errors
        return out

    def action_stats(self) -> dict[str, dict[str, Any]]:
        """The same counters per action, with the count of each reason."""
        return {lane.spec.name: {**lane.stats(), "reasons": dict(lane.reasons)} for lane in self.lanes}
