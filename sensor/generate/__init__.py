"""`falconet generate`: harmless versions of what the bundled rules detect.

Each action does for real, on this host, the smallest thing its rule looks for, and undoes it:
reads /etc/shadow and throws the bytes away, creates and removes a file below /etc, runs a shell,
a package manager or a connection inside a throw-away cgroup laid out like a container runtime's
(a real cgroup v2 directory; the process is moved in through cgroup.procs and gets its own PID,
UTS and IPC namespaces), attaches ptrace to a child it owns, runs /bin/true from a memfd, deletes
a file named like a shell history, and asks the kernel to load an empty file as a module (which it
refuses: nothing is loaded). Nothing is loaded into the kernel and everything created is removed.

An action this host or container does not allow fails with the exact reason (host.py): a
read-only mount, a missing capability, a port in use, a security policy. The lab runs them in its
own event-generator service (compose/docker-compose.yml), as Falco's event-generator runs in its
own container.

Modules: actions.py (the actions and their table), container.py (the imitated container and a
listener), host.py (what this host allows, and the sentences for what it does not).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from sensor.generate.actions import ACTIONS, BY_NAME, NOT_GENERATED, Action
from sensor.generate.container import FakeContainer
from sensor.generate.host import CannotRun

__all__ = ["ACTIONS", "BY_NAME", "NOT_GENERATED", "Action", "CannotRun", "FakeContainer", "perform"]


def perform(names: Sequence[str] = (), pause: float = 0.0) -> Iterator[dict[str, Any]]:
    """Run the named actions (all when none), one result each: {action, rule, ok, expect | error,
    note}. An action that cannot run here does not stop the others."""
    for i, a in enumerate([BY_NAME[n] for n in names] if names else ACTIONS):
        if i and pause:
            time.sleep(pause)
        try:
            result: dict[str, Any] = {"action": a.name, "rule": a.rule, "ok": True, "expect": a.run()}
            note = a.note() if a.note else None
            if note:
                result["note"] = note
        except CannotRun as e:
            result = {"action": a.name, "rule": a.rule, "ok": False, "error": str(e)}
        yield result
