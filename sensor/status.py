"""Exit codes, named, in one place.

- 0: done.
- 1: the command ran and found errors (rules that do not load, a failed check, an action that failed).
- 2: bad command line (click's usage errors; a Falco flag whose meaning Falconet does not implement).
- 3: the configuration (file, `-o` override) or a rule selection (`-t`, `-D`, `rules:`) is invalid.
- 4: something the command needs is missing or refused here: root, BPF, a file or directory, an
  output channel (a missing directory, program or /dev/log), a peer that is down.
- 130: stopped by SIGINT before finishing.
- 141: stdout was closed by its reader (`falconet config | head`): stopped quietly, as a Unix tool
  that SIGPIPE ends.
"""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    FAILED = 1            # the command ran and found errors (rules that do not load, a failed check)
    USAGE = 2             # bad command line (click's own code for usage errors)
    CONFIG = 3            # configuration file, -o override or rule selection is invalid
    UNAVAILABLE = 4       # a capability is missing: root, BPF, kernel headers, a peer that is down
    INTERRUPTED = 130     # stopped by SIGINT before finishing
    BROKEN_PIPE = 141     # 128 + SIGPIPE: the reader of stdout went away
