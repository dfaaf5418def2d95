"""sensor/syscalls.py: the one syscall table the capture and the engine's fields share."""

from __future__ import annotations

from sensor import syscalls
from sensor.capture import syscalls as capture_syscalls


def test_every_row_is_named_once_and_every_traced_one_has_a_number() -> None:
    assert len(syscalls.BY_NAME) == len(syscalls.TABLE)
    assert all(s.nr is not None and s.tracepoint for s in syscalls.CAPTURED)
    assert all(s.nr is None and not s.params for s in syscalls.UNTRACED)


def test_every_traced_syscall_has_a_category_for_the_fields() -> None:
    for s in syscalls.CAPTURED:
        assert syscalls.INFO[s.name] == (s.category, s.flags) and s.category, s.name


def test_what_creates_an_fd_for_the_capture_creates_one_for_the_fields() -> None:
    # The decoder enters a new fd into the table exactly for the rows whose fd.* fields Falco
    # reads as the created fd.
    for s in syscalls.CAPTURED:
        if s.creates_fd:
            assert s.flags & syscalls.CREATES_FD, s.name


def test_the_capture_reads_the_same_table() -> None:
    assert capture_syscalls.SYSCALLS is syscalls.CAPTURED
    assert capture_syscalls.BY_NR is syscalls.BY_NR


def test_a_relative_path_knows_its_directory_fd() -> None:
    assert syscalls.BY_NAME["openat"].dirfd_of(0) == 0
    assert syscalls.BY_NAME["renameat2"].dirfd_of(1) == 2
    assert syscalls.BY_NAME["open"].dirfd_of(0) == -1
