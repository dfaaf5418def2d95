"""kill_process: signal the alert's process, and only that process.

PID reuse must never kill an innocent process, so the kill goes through a pidfd: the PID is pinned
with pidfd_open() first, then /proc/PID/stat must show the start time the event recorded
(`proc.pid.ts`, within 2 clock ticks). If it does, the pidfd refers to the alert's process (it
started before the pidfd was opened and was still there after), and pidfd_send_signal() cannot
reach a newcomer that takes the PID later. Never signalled: PID 1, kernel threads, the sensor and
its ancestors, and a process outside the alert's container when the alert has one.

With `tree: true` the descendants go too: the whole tree is stopped (SIGSTOP) until no new child
appears, then signalled, then continued, so no child escapes by forking or re-parenting meanwhile.
A stopped process cannot exit by itself, so each descendant is pinned with a pidfd only while one
signal is sent to it: the walk holds at most two descriptors at any time and works when the sensor
is short of them. Whatever happens, everything stopped is continued (SIGCONT in `finally`), and the
record counts what was signalled and what could not be reached.

The target's group, which max_per_minute is counted per, is its container, else its cgroup: decoys
in one cgroup cannot use up the budget a process in another needs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Iterator
from typing import Any

from sensor.response import procfs
from sensor.response.params import Param
from sensor.response.records import Outcome, done, failed, skipped
from sensor.response.target import Target, event_value

# The capture guarantees proc.pid.ts within 2 ticks of /proc's start time; 1 ms covers the two
# clock readings that turn boot-relative ticks into epoch time.
START_TOLERANCE_NS = 2 * procfs.TICK_NS + 1_000_000
_MAX_TREE_ROUNDS = 20


def parse_signal(value: Any) -> signal.Signals:
    """A signal from KILL, SIGKILL, kill or 9; ValueError naming the choices otherwise."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return signal.Signals(value)
        except ValueError:
            raise ValueError(f"{value} is not a signal number") from None
    name = str(value).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise ValueError(f"unknown signal {value!r}; use a name such as KILL, TERM or INT") from None


def _check_signal(value: Any) -> Any:
    parse_signal(value)
    return value


class KillProcess:
    """Signal the alert's process (`signal`, default KILL), and its descendants with `tree`."""

    do = "kill_process"
    PARAMS = {
        "signal": Param(str, "KILL", "Signal name or number.", check=_check_signal),
        "tree": Param(bool, False, "Also signal every descendant of the process."),
    }

    def __init__(self, params: dict[str, Any], ctx: Any = None) -> None:
        self.signal = parse_signal(params["signal"])
        self.tree = params["tree"]

    def resolve(self, alert: Any) -> Target | Outcome:
        pid = event_value(alert, "proc.pid")
        if not isinstance(pid, int) or isinstance(pid, bool):
            return skipped("no_target", "the alert's event has no proc.pid")
        name = event_value(alert, "proc.name")
        ts = event_value(alert, "proc.pid.ts")
        cid = event_value(alert, "container.id")
        text = f"pid {pid} ({name})" if name else f"pid {pid}"
        return Target(key=(pid, ts), text=text, namespace=event_value(alert, "k8s.ns.name"),
                      data=(pid, ts if isinstance(ts, int) else None, cid), group=_group(pid, cid))

    def execute(self, alert: Any, target: Target, dry_run: bool) -> Outcome:
        pid, ts, cid = target.data
        sig = self.signal.name
        if pid <= 1 or pid in self._protected():
            return skipped("protected_process", f"pid {pid} is protected (PID 1, the sensor or its "
                                                f"ancestors): not sending {sig}", target.text)
        if ts is None:
            return skipped("unverifiable", "the alert has no proc.pid.ts, so the process cannot be "
                                           f"told from a later one with the same PID: not sending {sig}",
                           target.text)
        try:
            return self._pinned(pid, ts, cid, target.text, dry_run)
        except OSError as e:
            # Pinning or reading /proc failed for want of a resource (file descriptors, memory).
            return failed(f"cannot act on pid {pid}: {e.strerror or e}; {sig} not sent", target.text)

    def _pinned(self, pid: int, ts: int, cid: str | None, target: str, dry_run: bool) -> Outcome:
        sig = self.signal.name
        with _pidfd(pid) as pidfd:
            if pidfd is None:
                return skipped("process_gone", f"pid {pid} has already exited", target)
            why = self._refuse(pid, ts, cid)
            if why is not None:
                return Outcome(why.result, why.reason, why.text, target)
            if dry_run:
                extra = " and its descendants" if self.tree else ""
                return skipped("dry_run", f"would send {sig} to pid {pid}{extra}", target)
            try:
                if self.tree:
                    return self._signal_tree(pid, pidfd, target)
                signal.pidfd_send_signal(pidfd, self.signal)
            except ProcessLookupError:
                return skipped("process_gone", f"pid {pid} exited before {sig} was sent", target)
            except PermissionError as e:
                return failed(f"not permitted to send {sig} to pid {pid} ({e.strerror}); the sensor "
                              "needs CAP_KILL", target)
            except OSError as e:
                return failed(f"sending {sig} to pid {pid} failed: {e.strerror or e}", target)
        return done(f"sent {sig} to pid {pid}", target)

    def _protected(self) -> set[int]:
        me = os.getpid()
        return {1, 2, me, *procfs.ancestors(me)}

    def _refuse(self, pid: int, ts: int, cid: str | None) -> Outcome | None:
        """Why the process at `pid` (pinned by a pidfd) must not be signalled, or None."""
        if cid not in (None, "host"):
            now_cid = procfs.container_id(pid)
            if now_cid is None:
                return skipped("process_gone", f"pid {pid} has already exited")
            if now_cid != cid:
                where = "the host" if now_cid == "host" else f"container {now_cid}"
                return skipped("other_container", f"pid {pid} is in {where}, not in the alert's "
                                                  f"container {cid}")
        # Read last: a match here proves the PID held the alert's process throughout.
        st = procfs.read_stat(pid)
        if st is None:
            return skipped("process_gone", f"pid {pid} has already exited")
        if st.kernel_thread:
            return skipped("protected_process", f"pid {pid} ({st.comm}) is a kernel thread")
        if abs(st.start_ns - ts) > START_TOLERANCE_NS:
            return skipped("pid_reused", f"pid {pid} now belongs to another process ({st.comm}, started "
                                         f"{(st.start_ns - ts) / 1e9:+.3f}s after the alert's process)")
        return None

    def _signal_tree(self, pid: int, pidfd: int, target: str) -> Outcome:
        """Stop the process and all its descendants, signal them, continue them; the outcome says
        how many descendants were signalled and how many could not be reached."""
        sig = self.signal.name
        protected = self._protected()
        stopped: dict[int, int] = {}          # descendant pid -> start time (ns)
        missed: dict[int, str] = {}           # descendant pid -> why it was not reached
        incomplete = ""
        signal.pidfd_send_signal(pidfd, signal.SIGSTOP)
        try:
            for _ in range(_MAX_TREE_ROUNDS):
                try:
                    found = procfs.descendants(pid)
                except OSError as e:
                    incomplete = f"the descendants could not all be listed ({e.strerror or e})"
                    break
                fresh = 0
                for st in found:
                    if st.pid in stopped or st.pid in protected:
                        continue
                    why = _signal_verified(st.pid, st.start_ns, signal.SIGSTOP)
                    if why is None:
                        stopped[st.pid] = st.start_ns
                        missed.pop(st.pid, None)
                        fresh += 1
                    elif why != "gone":
                        missed[st.pid] = why
                if not fresh:
                    break
            signal.pidfd_send_signal(pidfd, self.signal)
            sent = 0
            for child, start in stopped.items():
                why = _signal_verified(child, start, self.signal)
                if why is None:
                    sent += 1
                elif why != "gone":
                    missed[child] = why
        finally:
            # Never leave a process stopped, even when the walk failed half way.
            for child, start in stopped.items():
                if _signal_verified(child, start, signal.SIGCONT) not in (None, "gone"):
                    with contextlib.suppress(OSError):
                        os.kill(child, signal.SIGCONT)    # no pidfd to be had: a stray SIGCONT is harmless
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGCONT)
        text = f"sent {sig} to pid {pid} and {sent} descendant(s)"
        if missed or incomplete:
            reasons = sorted(set(missed.values()))
            problems = ([f"{len(missed)} descendant(s) not reached ({'; '.join(reasons)})"] if missed else []) + \
                ([incomplete] if incomplete else [])
            return failed(f"{text}; {'; '.join(problems)}", target, reason="partial")
        return done(text, target)


def _group(pid: int, cid: Any) -> tuple[str, str]:
    """What the process's max_per_minute is counted per: its container, else its cgroup."""
    if isinstance(cid, str) and cid not in ("", "host"):
        return ("container", cid)
    membership = procfs.cgroup(pid)
    if membership is None:
        return ("pid", str(pid))
    return ("cgroup", procfs.cgroup_name(membership) if procfs.cgroup_name(membership) != "/" else membership)


def _signal_verified(pid: int, start_ns: int, sig: signal.Signals) -> str | None:
    """Send `sig` to `pid` through a pidfd held only for this, if it still holds the process that
    started at `start_ns`. None when sent; "gone" when that process has exited; else why not."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return "gone"
    except OSError as e:
        return f"cannot pin it: {e.strerror or errno.errorcode.get(e.errno or 0, str(e))}"
    try:
        try:
            now = procfs.read_stat(pid)
        except OSError as e:
            return f"cannot verify it: {e.strerror or e}"
        if now is None or abs(now.start_ns - start_ns) > START_TOLERANCE_NS:
            return "gone"
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return "gone"
        except OSError as e:
            return f"{sig.name} failed: {e.strerror or e}"
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)
