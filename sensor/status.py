"""Exit codes, named, in one place."""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    FAILED = 1            # the command ran and found errors (rules that do not load, a failed check)
    USAGE = 2             # bad command line (click's own code for usage errors)
    CONFIG = 3            # configuration file or -o override is invalid
    UNAVAILABLE = 4       # a capability is missing: root, BPF, kernel headers, a peer that is down
    INTERRUPTED = 130     # stopped by SIGINT before finishing
