"""Output channels: stdout, file, program, http, syslog and fluent, behind one `Outputs` sink.

`build(cfg)` returns the started `Outputs` for the enabled channels. Each channel has its own
bounded store (memory queue, or disk spool when its `spool.enabled`) and worker thread, so the
engine never waits for a channel (channel.py). This module declares the keys shared by all
channels; each channel module declares its own, next to its code.

A channel module has `from_config(cfg, ctx)` (its transport and encoder, or None when disabled)
and may have `check(cfg)`: what the channel needs from this machine (a directory to write in, a
program to run, a syslog socket), checked at start-up, by `run --dry-run` and at reload, so that a
channel that cannot deliver fails the start (UnavailableError, exit 4) instead of dropping alerts.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sensor.config import Key, parse_duration, parse_size

if TYPE_CHECKING:
    from sensor.alert import Alert
    from sensor.outputs.dispatch import Outputs
    from sensor.outputs.render import Renderer

CONFIG_KEYS: tuple[Key, ...] = (
    Key("buffered_outputs", bool, False,
        "false: flush every alert as it is written (Falco's default); true: flush once per batch."),
    Key("outputs_queue.capacity", int, 10_000,
        "Alerts each channel without a spool holds in memory while it delivers; when full, new alerts "
        "for that channel are dropped and counted (falcosecurity_falco_outputs_queue_num_drops_total)."),
    Key("outputs_queue.retry_initial", str, "500ms", "First pause after a failed delivery.",
        check=parse_duration),
    Key("outputs_queue.retry_max", str, "30s", "Longest pause between delivery attempts (it doubles).",
        check=parse_duration),
    Key("outputs_queue.shutdown_timeout", str, "10s",
        "At exit, how long channels keep delivering; then spools keep the rest, queues count it dropped.",
        check=parse_duration),
    Key("outputs_queue.report_interval", str, "60s",
        "Most frequent \"Falconet internal: alerts dropped\" alert (one per interval, with the counts).",
        check=parse_duration),
    Key("flood_control.enabled", bool, False,
        "Deliver the first of identical alerts at once and, per window, one summary alert with the "
        "count of the identical ones that followed."),
    Key("flood_control.window", str, "60s", "How long identical alerts are counted instead of sent.",
        check=parse_duration),
    Key("flood_control.rules", list, ["*"], "Rules subject to flood control (names, * wildcards).",
        items=str),
    Key("flood_control.key_fields", list, [],
        "Output fields that make alerts of a rule identical (e.g. [proc.name, container.id]); "
        "empty: the whole output text.", items=str),
)

CHANNEL_MODULES = ("stdout", "file", "program", "http", "syslog", "fluent")


@dataclass
class BuildContext:
    """What channel modules need beyond the configuration."""

    renderer: Renderer
    hostname: str
    unbuffered: bool
    stdout: BinaryIO | None = None
    serializer: Callable[[Alert], dict[str, Any]] | None = None   # ECS for fluent; None: sensor.ecs


def validate(cfg: Any, serializer: Callable[[Alert], dict[str, Any]] | None = None) -> list[str]:
    """Check every enabled channel's settings without opening anything (a dry run, a reload).

    Returns one line per enabled channel; raises ConfigError or UnavailableError like `build`.
    """
    from sensor.errors import UnavailableError
    from sensor.outputs.render import Renderer

    ctx = BuildContext(Renderer(cfg), cfg.hostname(), not cfg.get("buffered_outputs"), None, serializer)
    lines = []
    for mod_name, transport, _ in _transports(cfg, ctx):
        transport.close()
        prefix = f"{mod_name}_output"
        if cfg.get(f"{prefix}.spool.enabled"):
            where = _spool_dir(cfg, mod_name)
            probe = where
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent
            if not os.access(probe, os.W_OK | os.X_OK):
                raise UnavailableError(f"{prefix}.spool: {where} cannot be created or written by this user",
                                       hint=f"set state_dir or {prefix}.spool.dir to a writable directory")
            lines.append(f"{mod_name}: spooled in {where} (up to {cfg.get(f'{prefix}.spool.max_size')})")
        else:
            lines.append(f"{mod_name}: in-memory queue of {cfg.get('outputs_queue.capacity')} alerts")
    return lines


def build(cfg: Any, *, stdout: BinaryIO | None = None,
          serializer: Callable[[Alert], dict[str, Any]] | None = None) -> Outputs:
    """The started Outputs of every enabled channel.

    Raises ConfigError for an unusable channel setting and UnavailableError for a spool directory
    the sensor cannot use (or that another sensor uses).
    """
    from sensor.errors import UnavailableError
    from sensor.outputs.channel import Channel
    from sensor.outputs.dispatch import Outputs
    from sensor.outputs.flood import FloodControl
    from sensor.outputs.queue import MemoryQueue
    from sensor.outputs.render import Renderer
    from sensor.outputs.spool import DiskSpool, SpoolError

    hostname = cfg.hostname()
    ctx = BuildContext(Renderer(cfg), hostname, not cfg.get("buffered_outputs"), stdout, serializer)
    capacity = cfg.get("outputs_queue.capacity")
    retry = (cfg.duration("outputs_queue.retry_initial"), cfg.duration("outputs_queue.retry_max"))
    channels: list[Channel] = []
    try:
        for mod_name, transport, encode in _transports(cfg, ctx):
            prefix = f"{mod_name}_output"
            if cfg.get(f"{prefix}.spool.enabled"):
                try:
                    store: Any = DiskSpool(_spool_dir(cfg, mod_name),
                                           parse_size(cfg.get(f"{prefix}.spool.max_size")),
                                           fsync=bool(cfg.get(f"{prefix}.spool.fsync")))
                except SpoolError as e:
                    raise UnavailableError(f"{prefix}.spool: {e}") from e
            else:
                store = MemoryQueue(max(1, capacity))
            batch = cfg.get("fluent_output.batch_size") if mod_name == "fluent" else 100
            channels.append(Channel(transport, encode, store, batch_max=batch, retry_initial=retry[0],
                                    retry_max=retry[1], hold_max=max(1, capacity)))
    except BaseException:
        for ch in channels:
            ch.store.close()
        raise
    outputs = Outputs(channels, static_fields=cfg.get("static_fields") or {}, hostname=hostname,
                      report_interval=cfg.duration("outputs_queue.report_interval"),
                      shutdown_timeout=cfg.duration("outputs_queue.shutdown_timeout"))
    if cfg.get("flood_control.enabled"):
        outputs.set_flood_control(FloodControl(cfg.duration("flood_control.window"),
                                               cfg.get("flood_control.rules"),
                                               cfg.get("flood_control.key_fields"),
                                               outputs.submit, hostname))
    return outputs.start()


def _transports(cfg: Any, ctx: BuildContext) -> list[tuple[str, Any, Any]]:
    out = []
    try:
        for mod_name in CHANNEL_MODULES:
            mod = importlib.import_module(f"sensor.outputs.{mod_name}")
            check = getattr(mod, "check", None)
            if (check is not None and cfg.get(f"{mod_name}_output.enabled")
                    and not (mod_name == "stdout" and ctx.stdout is not None)):
                check(cfg)
            made = mod.from_config(cfg, ctx)
            if made is not None:
                out.append((mod_name, *made))
    except BaseException:
        for _, transport, _ in out:
            transport.close()
        raise
    return out


def _spool_dir(cfg: Any, mod_name: str) -> Path:
    return Path(cfg.get(f"{mod_name}_output.spool.dir") or cfg.state_path("spool", mod_name))
