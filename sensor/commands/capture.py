"""`falconet capture -w FILE`: record live syscall events as JSON lines for `falconet replay`.

Each line is `{"source": "syscall", "fields": {...}}` with every field of the event that has a
value (sensor.engine.fields.record), so the file replays under any rule set. What is captured is
what the rules given (-r, else the configured ones) need, as for `falconet run`; --all captures
every syscall Falconet knows.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any, TextIO

import click

from sensor import config as config_mod
from sensor.engine.loader import RulesLoadError
from sensor.status import Exit


@click.command("capture")
@click.option("-w", "write", metavar="FILE", help="Write the events to FILE ('-' for stdout).")
@click.option("-M", "duration", type=float, metavar="SECONDS", help="Stop after this many seconds.")
@click.option("-n", "max_events", type=int, metavar="N", help="Stop after N events.")
@click.option("-r", "rules_files", multiple=True, metavar="PATH",
              help="Capture what these rules need (repeatable); default: the configured rules.")
@click.option("-c", "config_path", metavar="FILE", help="Configuration file.")
@click.option("-o", "overrides", multiple=True, metavar="KEY=VALUE", help="Set a configuration key.")
@click.option("--all", "all_types", is_flag=True, help="Capture every syscall Falconet knows, not only "
              "what the rules need (no kernel filter either).")
@click.option("--print-bpf", is_flag=True, help="Print the final BPF program (with its -D flags) and exit.")
@click.pass_context
def capture(ctx: click.Context, write: str | None, duration: float | None, max_events: int | None,
            rules_files: tuple[str, ...], config_path: str | None, overrides: tuple[str, ...],
            all_types: bool, print_bpf: bool) -> None:
    """Record live syscall events until Ctrl-C (or -M/-n); a summary line goes to stderr."""
    root = ctx.find_root().obj or {}
    cfg = config_mod.load(config_path or root.get("config_path"), [*root.get("overrides", []), *overrides])
    ruleset = None
    if not all_types:
        from sensor.rulesetup import load_configured

        try:
            ruleset = load_configured(cfg, list(rules_files) or root.get("rules_files", []))
        except RulesLoadError as e:
            for d in e.errors:
                click.echo(f"falconet: error: {d}", err=True)
            ctx.exit(Exit.FAILED)
    from sensor.sources.syscall import SyscallSource

    src = SyscallSource(cfg, ruleset, all_events=True)
    if print_bpf:
        click.echo(src.bpf_program())
        return
    if not write:
        raise click.UsageError("-w FILE is required (or --print-bpf)")
    if src.unknown_types:
        click.echo(f"falconet: note: the rules name event types the capture cannot produce: "
                   f"{', '.join(src.unknown_types)}", err=True)
    from sensor.engine.fields.record import record_fields

    out: TextIO = sys.stdout if write == "-" else open(write, "w", encoding="utf-8")
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    written = 0
    started = time.monotonic()
    src.start()
    try:
        deadline = started + duration if duration else None
        while not stopping:
            if deadline is not None and time.monotonic() >= deadline:
                break
            for ev in src.poll(0.2):
                line = {"source": "syscall", "fields": record_fields(ev)}
                out.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False, default=str) + "\n")
                written += 1
                if max_events is not None and written >= max_events:
                    stopping = True
                    break
    finally:
        stats = src.stats()
        src.stop()
        for s, h in old.items():
            signal.signal(s, h)
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    click.echo(f"Events captured: {written}; drops: {stats.get('drops', 0)}; "
               f"elapsed: {time.monotonic() - started:.1f}s", err=True)
