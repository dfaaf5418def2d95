"""`falconet run [flags]` and `falconet [flags]`: capture events, match the rules, send the alerts
(Falco's `falco`). The flags are Falco's (sensor/commands/options.py); this module turns them into
RunOptions and configuration overrides, and prints what the sensor did when it stops."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sensor.commands import options
from sensor.commands.options import Settings
from sensor.engine.explain import NearMisses
from sensor.engine.ruleset import Ruleset
from sensor.errors import ConfigError, UnavailableError
from sensor.runtime import RunOptions, Sensor, prepare
from sensor.status import Exit

log = logging.getLogger("falconet")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL, "alert": logging.CRITICAL,
           "emergency": logging.CRITICAL}

# Falco's -pc / -pk formats (app/actions/init_falco_engine.cpp before the container plugin).
CONTAINER_INFO = ("container_id=%container.id container_image=%container.image.repository "
                  "container_image_tag=%container.image.tag container_name=%container.name")
K8S_INFO = "k8s_ns=%k8s.ns.name k8s_pod_name=%k8s.pod.name"


@dataclass
class RunFlags:
    """Falco's run flags as the command line gave them (see sensor/commands/options.py)."""

    duration: float | None = None
    disable: Sequence[str] = ()
    disable_tags: Sequence[str] = ()
    enable_tags: Sequence[str] = ()
    unbuffered: bool = False
    dry_run: bool = False
    verbose: bool = False
    disable_source: Sequence[str] = ()
    enable_source: Sequence[str] = ()
    pidfile: str | None = None
    print_format: str | None = None
    explain: str | None = None            # run --explain RULE: log near misses (sensor/engine/explain.py)
    explain_filter: str | None = None

    def merged(self, root: dict[str, Any]) -> RunFlags:
        """These flags (of `falconet run`) with the root command's (`falconet -M 5 run`) added."""
        out: dict[str, Any] = {}
        for name, mine in vars(self).items():
            theirs = root.get(name)
            if isinstance(mine, tuple | list):
                out[name] = (*(theirs or ()), *mine)
            else:
                out[name] = mine if mine not in (None, False) else (theirs if theirs is not None else mine)
        return RunFlags(**out)


def source_overrides(flags: RunFlags) -> list[str]:
    """--enable-source / --disable-source as configuration overrides."""
    if flags.enable_source and flags.disable_source:
        raise click.UsageError("--enable-source and --disable-source cannot be mixed (as in Falco)")
    off: set[str] = set(flags.disable_source)
    if flags.enable_source:
        off = {"syscall", "k8s_audit"} - set(flags.enable_source)
    out = []
    if "syscall" in off:
        out.append("syscall.enabled=false")
    if "k8s_audit" in off:
        out += ["k8s_audit.webhook.enabled=false", "k8s_audit.files=[]"]
    return out


def print_overrides(fmt: str | None) -> list[str]:
    """-p as append_output items (Falco 0.44: deprecated for -o append_output)."""
    if not fmt:
        return []
    log.warning("-p/--print is deprecated in Falco; use -o append_output instead")
    if fmt in ("c", "container"):
        item: dict[str, Any] = {"match": {"source": "syscall"}, "extra_output": CONTAINER_INFO}
    elif fmt in ("k", "kubernetes"):
        item = {"match": {"source": "syscall"}, "extra_output": f"{CONTAINER_INFO} {K8S_INFO}"}
    else:
        item = {"extra_output": fmt}
    return [f"append_output[]={json.dumps(item)}"]


def run_sensor(settings: Settings, flags: RunFlags) -> int:
    """Run the sensor (or its dry run) as the flags say; return the exit code."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s falconet %(levelname)s %(message)s")
    if flags.verbose:       # per attached syscall, what the kernel keeps of its events
        logging.getLogger("falconet.capture").setLevel(logging.DEBUG)
    near = _near_misses(flags)
    # Explaining needs the events the kernel filter would drop: near misses are among them.
    explaining = ["syscall.kernel_filter=false"] if near is not None else []
    run_options = RunOptions(
        config_path=settings.config_path,
        overrides=[*settings.overrides, *source_overrides(flags), *print_overrides(flags.print_format),
                   *explaining],
        rules_files=settings.rules_files, disable=flags.disable, disable_tags=flags.disable_tags,
        enable_tags=flags.enable_tags, unbuffered=flags.unbuffered, verbose=flags.verbose,
        require_source=True)
    if flags.dry_run:
        plan = prepare(run_options)
        if near is not None:
            _bind(near, plan.ruleset, lambda: None)
        for w in plan.cfg.warnings:
            click.echo(f"falconet: warning: {w}", err=True)
        for line in plan.describe():
            click.echo(line)
        if near is not None:
            click.echo(f"Explain: near misses of rule '{flags.explain}' (in-kernel open filter off)")
        if not plan.settings.sources.planned():
            raise ConfigError("no event source is enabled", hint=_NO_SOURCE_HINT)
        return Exit.OK
    sensor = Sensor(run_options)
    sensor.start()
    assert sensor.plan is not None and sensor.runtime is not None
    if near is not None:
        _bind(near, sensor.plan.ruleset, sensor.close)
        sensor.runtime.observe = near
    logging.getLogger().setLevel(_LEVELS[sensor.plan.settings.log_level])
    with _pidfile(flags.pidfile):
        summary = sensor.run(flags.duration)
    sys.stdout.flush()
    if near is not None:
        log.info("%s", near.summary())
    if flags.verbose:
        for line in summary.falco_stats():
            click.echo(line, err=True)
    click.echo(summary.line(), err=True)
    return Exit.OK


def _near_misses(flags: RunFlags) -> NearMisses | None:
    """The near-miss logger of --explain RULE, or None; --explain-filter alone is refused."""
    if flags.explain_filter and not flags.explain:
        raise click.UsageError("--explain-filter needs --explain RULE")
    if not flags.explain:
        return None
    return NearMisses(flags.explain, flags.explain_filter, log)


def _bind(near: NearMisses, ruleset: Ruleset, close: Callable[[], None]) -> None:
    try:
        near.bind(ruleset)
    except ValueError as e:
        close()
        raise click.BadParameter(str(e), param_hint="--explain") from None


_NO_SOURCE_HINT = ("keep one of syscall.enabled, k8s_audit.webhook.enabled or k8s_audit.files on "
                   "(check --disable-source/--enable-source)")


class _pidfile:
    """-P FILE: the PID written while the sensor runs, removed when it stops."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None

    def __enter__(self) -> None:
        if self.path is None:
            return
        try:
            self.path.write_text(f"{os.getpid()}\n")
        except OSError as e:
            raise UnavailableError(f"-P {self.path}: cannot write the PID file: {e.strerror}",
                                   hint="choose a writable path, e.g. /run/falconet.pid") from e

    def __exit__(self, *exc: Any) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@click.command("run")
@options.config_and_rules
@options.run_flags
@click.option("--explain", "explain", metavar="RULE",
              help="Log why RULE did not match events of its types (near misses), at most 5 a minute.")
@click.option("--explain-filter", "explain_filter", metavar="CONDITION",
              help="With --explain: only events this condition selects (e.g. 'proc.name=nc').")
@click.pass_context
def run(ctx: click.Context, config_path: str | None, overrides: tuple[str, ...], rules_files: tuple[str, ...],
        **flags: Any) -> None:
    """Run the sensor until SIGINT/SIGTERM (or -M seconds after capture is attached). SIGHUP reloads
    configuration and rules (keeping the old ones if the new ones fail); SIGUSR1 reopens output
    files. A summary line goes to stderr at the end; with -v the alerts by priority and by rule."""
    settings = options.settings(ctx, config_path, overrides, rules_files)
    root_flags = (ctx.find_root().obj or {}).get("run", {})
    ctx.exit(run_sensor(settings, RunFlags(**flags).merged(root_flags)))
