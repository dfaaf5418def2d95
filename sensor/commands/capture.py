"""`falconet capture -w FILE`: record live syscall events as JSON lines for `falconet replay`.

Each event is every field of it that has a value (sensor.engine.fields.record), so the file replays
under any rule set; what the events of one process share is written once (sensor/sources/replay.py
describes the format). What is captured is what the rules given (-r, else the configured ones)
need, as for `falconet run`; --all captures every syscall Falconet knows.

A recording holds command lines and file names of the whole machine: it is created 0600, and
processes' environments (proc.env, where secrets live) are left out unless --with-env.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from typing import Any, TextIO

import click

from sensor.commands import options
from sensor.config import Config
from sensor.engine.fields.record import record_fields
from sensor.errors import UnavailableError
from sensor.rulesetup import load_configured
from sensor.settings import RuleSettings
from sensor.sources.replay import RecordWriter
from sensor.sources.settings import SyscallSettings
from sensor.sources.syscall import SyscallSource


def open_recording(path: str) -> TextIO:
    """`path` created (or truncated) 0600 for writing, never through a symbolic link; an
    UnavailableError that says why not and what to do."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        raise UnavailableError(_open_error(path, e)) from None
    try:
        os.fchmod(fd, 0o600)              # an existing file keeps no wider mode than a new one
    except OSError:
        pass
    return os.fdopen(fd, "w", encoding="ascii")


def _open_error(path: str, e: OSError) -> str:
    parent = os.path.dirname(os.path.abspath(path))
    if e.errno == errno.ENOENT:
        return f"capture -w {path}: the directory {parent} does not exist; create it or write elsewhere"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"capture -w {path}: permission denied; write to a directory this user can write"
    if e.errno == errno.EROFS:
        return f"capture -w {path}: {parent} is on a read-only filesystem; write elsewhere"
    if e.errno == errno.EISDIR:
        return f"capture -w {path}: it is a directory; give a file name"
    if e.errno == errno.ELOOP:
        return f"capture -w {path}: it is a symbolic link; give the path of the file itself"
    return f"capture -w {path}: {e.strerror}"


@click.command("capture")
@click.option("-w", "write", metavar="FILE", help="Write the events to FILE (created 0600; '-' for stdout).")
@click.option("-M", "duration", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop after this many seconds, counted from the moment capture is attached.")
@click.option("-n", "max_events", type=click.IntRange(min=1), metavar="N", help="Stop after N events.")
@options.config_and_rules
@click.option("--all", "all_types", is_flag=True, help="Capture every syscall Falconet knows, not only "
              "what the rules need (no kernel filter either).")
@click.option("--with-env", is_flag=True,
              help="Also record each process's environment (proc.env), which often holds secrets; rules "
                   "that read proc.env match on replay only with it.")
@click.option("--full", "full", is_flag=True,
              help="Write every event in full, without shared process contexts (larger).")
@click.option("--print-bpf", is_flag=True, help="Print the final BPF program (with its -D flags) and exit.")
@click.pass_context
def capture(ctx: click.Context, write: str | None, duration: float | None, max_events: int | None,
            config_path: str | None, overrides: tuple[str, ...], rules_files: tuple[str, ...],
            all_types: bool, with_env: bool, full: bool, print_bpf: bool) -> None:
    """Record live syscall events until Ctrl-C (or -M/-n); a summary line goes to stderr."""
    settings = options.settings(ctx, config_path, overrides, rules_files)
    # Without --with-env the capture does not even read environments.
    cfg = options.load_config(settings, () if with_env else ("syscall.read_env=false",))
    if with_env and not cfg.get("syscall.read_env"):
        raise click.UsageError(f"--with-env needs syscall.read_env: true (set at {cfg.origin('syscall.read_env')})")
    if not write and not print_bpf:
        raise click.UsageError("-w FILE is required (or --print-bpf)")
    # The file first: a path that cannot be written fails before seconds of compiling.
    out: TextIO | None = None
    if not print_bpf:
        assert write is not None
        out = sys.stdout if write == "-" else open_recording(write)
    try:
        src = _source(cfg, settings.rules_files, all_types)
        if out is None:
            click.echo(src.bpf_program())
            return
        if src.unknown_types:
            click.echo(f"falconet: note: the rules name event types the capture cannot produce: "
                       f"{', '.join(src.unknown_types)}", err=True)
        written, elapsed, stats, size = _record(src, out, duration, max_events, with_env, not full)
    finally:
        if out is not None and out is not sys.stdout:
            out.close()
    per_event = f"; {size / written:.0f} bytes per event" if written else ""
    click.echo(f"Events captured: {written}; drops: {stats.get('drops', 0)}; elapsed: {elapsed:.1f}s{per_event}",
               err=True)


def _source(cfg: Config, rules_files: list[str], all_types: bool) -> SyscallSource:
    ruleset = None if all_types else load_configured(RuleSettings.from_config(cfg), rules_files)
    return SyscallSource(SyscallSettings.from_config(cfg), ruleset, all_events=True)


def _record(src: Any, out: TextIO, duration: float | None, max_events: int | None, with_env: bool,
            compact: bool) -> tuple[int, float, dict[str, Any], int]:
    writer = RecordWriter(out, with_env=with_env, compact=compact)
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    try:
        src.start()
        deadline = time.monotonic() + duration if duration else None
        while not stopping:
            if deadline is not None and time.monotonic() >= deadline:
                break
            for ev in src.poll(0.2):
                writer.write("syscall", record_fields(ev))
                if max_events is not None and writer.events >= max_events:
                    stopping = True
                    break
    finally:
        stats = src.stats()
        src.stop()
        for s, h in old.items():
            signal.signal(s, h)
        out.flush()
    return writer.events, time.monotonic() - started, stats, writer.bytes
