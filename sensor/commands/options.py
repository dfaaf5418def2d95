"""Options that several commands share, declared once (pip's cmdoptions.py, with click).

`-c`, `-o` and `-r` mean the same on the root command (`falconet -c FILE -o k=v -r RULES`, as
`falco` takes them) and on every subcommand that reads configuration or rules; a subcommand's own
value wins over the root's. Falco's run flags (`-M -D -T -t -U -v -P -p --dry-run
--disable-source --enable-source`) are declared here for both `falconet [flags]` and `falconet run
[flags]`. Flags Falco had (or has) whose meaning Falconet does not implement are declared too,
hidden, so that they fail with one line saying so and what to use instead, never "No such option".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _compose(*decorators: Decorator) -> Decorator:
    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


# -- configuration and rules (every command that reads them) ----------------------------------------

config_file = click.option(
    "-c", "config_path", metavar="FILE",
    help="Configuration file (default: $FALCONET_CONFIG, else /etc/falconet/falconet.yaml, else the "
         "bundled one). Falco's falco.yaml is accepted.")
override = click.option(
    "-o", "overrides", metavar="KEY=VALUE", multiple=True,
    help="Set a configuration key (value parsed as YAML); 'key[]=value' appends to a list, "
         "'key[N]=value' sets item N.")
rules_files = click.option(
    "-r", "rules_files", metavar="PATH", multiple=True,
    help="Rule file or directory (repeatable); replaces rules_files from the configuration.")
config = _compose(config_file, override)
config_and_rules = _compose(config_file, override, rules_files)

# -- rule selection (run, replay) --------------------------------------------------------------------

disable = click.option("-D", "disable", metavar="RULE", multiple=True,
                       help="Disable rules whose name contains RULE (or matches it, with * wildcards).")
disable_tags = click.option("-T", "disable_tags", metavar="TAG", multiple=True,
                            help="Disable rules with this tag.")
enable_tags = click.option("-t", "enable_tags", metavar="TAG", multiple=True,
                           help="Only run rules with this tag.")
selection = _compose(disable, disable_tags, enable_tags)
as_json = click.option("--json", "as_json", is_flag=True, help="JSON output (-o json_output=true).")

# -- running the sensor (falconet [flags], falconet run [flags]) ---------------------------------------

RUN_FLAGS = ("duration", "disable", "disable_tags", "enable_tags", "unbuffered", "dry_run", "verbose",
             "disable_source", "enable_source", "pidfile", "print_format")

duration = click.option("-M", "duration", type=click.FloatRange(min=0), metavar="SECONDS",
                        help="Stop after this many seconds, counted from the moment capture is attached.")
unbuffered = click.option("-U", "--unbuffered", "unbuffered", is_flag=True,
                          help="Flush every alert as it is written (buffered_outputs=false).")
dry_run = click.option("--dry-run", "dry_run", is_flag=True,
                       help="Load and check configuration, rules and every enabled output; print what "
                            "would run, and exit.")
verbose = click.option("-v", "verbose", is_flag=True,
                       help="Verbose: every loaded rule file with its counts and, per attached syscall, "
                            "what the kernel keeps of its events at start-up; at exit the alerts by "
                            "priority and by rule.")
disable_source = click.option("--disable-source", "disable_source", metavar="SOURCE", multiple=True,
                              type=click.Choice(("syscall", "k8s_audit")),
                              help="Turn off an event source (repeatable); not all of them.")
enable_source = click.option("--enable-source", "enable_source", metavar="SOURCE", multiple=True,
                             type=click.Choice(("syscall", "k8s_audit")),
                             help="Turn on only these event sources (repeatable).")
pidfile = click.option("-P", "--pidfile", "pidfile", metavar="FILE",
                       help="Write the sensor's PID to FILE (removed at exit).")
print_format = click.option("-p", "--print", "print_format", metavar="FORMAT",
                            help="Deprecated in Falco: append FORMAT to every rule's output; c|container "
                                 "and k|kubernetes append container (and pod) fields to syscall rules. "
                                 "Prefer -o append_output.")


# -- Falco's flags that Falconet does not implement -------------------------------------------------

def _refuse(why: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value:
            raise click.UsageError(f"{'/'.join(param.opts)}: {why}", ctx)
        return value
    return callback


def _not_implemented(decls: tuple[str, ...], why: str, takes_value: bool = False) -> Decorator:
    kw: dict[str, Any] = {"hidden": True, "expose_value": False, "callback": _refuse(why)}
    if takes_value:
        kw["metavar"] = "VALUE"
    else:
        kw["is_flag"] = True
    return click.option(*decls, **kw)


NOT_IMPLEMENTED: tuple[tuple[tuple[str, ...], bool, str], ...] = (
    (("-A",), False, "Falco 0.41 replaced -A with base_syscalls.all, which Falconet does not implement: it "
                     "captures the syscalls its rules name (`falconet capture --all` records every one)"),
    (("-S", "--snaplen"), True, "Falco 0.41 replaced -S with falco_libs.snaplen, which Falconet does not "
                                "implement: it reads I/O data only where a field needs it"),
    (("-b", "--print-base64"), False, "Falco 0.41 removed -b; Falconet prints data as escaped text"),
    (("-e",), True, "Falco 0.38 replaced -e with engine.kind=replay; run `falconet replay FILE` on a "
                    "recording of `falconet capture` (Falconet does not read .scap files)"),
    (("-d", "--daemon"), False, "Falco removed -d; run Falconet under systemd "
                                "(deploy/systemd/falconet.service) or a container runtime"),
    (("-k", "--k8s-api"), True, "Falco removed its Kubernetes API client; pod metadata comes from the "
                                "container runtime (syscall.container_sockets)"),
    (("-K", "--k8s-api-cert"), True, "Falco removed its Kubernetes API client; pod metadata comes from "
                                     "the container runtime (syscall.container_sockets)"),
    (("--k8s-node",), True, "Falco removed its Kubernetes API client; pod metadata comes from the "
                            "container runtime (syscall.container_sockets)"),
    (("--cri",), True, "Falconet asks the runtime sockets in syscall.container_sockets: "
                       "-o 'syscall.container_sockets[]=PATH'"),
    (("--disable-cri-async",), False, "Falconet asks the container runtime when a container's process "
                                      "is first seen; there is nothing to make synchronous"),
    (("-u", "--userspace"), False, "Falco removed -u (pdig); Falconet captures with eBPF"),
    (("-g", "--gvisor-config"), True, "Falco 0.44 removed gVisor support and Falconet has none"),
    (("--gvisor-root",), True, "Falco 0.44 removed gVisor support and Falconet has none"),
    (("--gvisor-generate-config",), False, "Falco 0.44 removed gVisor support and Falconet has none"),
    (("--modern-bpf",), False, "Falconet always captures with eBPF, as Falco's modern_ebpf does; drop the flag"),
    (("--nodriver",), False, "use --disable-source syscall (or -o syscall.enabled=false) to run without "
                             "syscall capture"),
    (("-s",), True, "Falco removed -s; the sensor's counters are on /metrics (webserver) and in metrics "
                    "snapshots (metrics.enabled)"),
    (("--stats-interval",), True, "Falco removed it; set metrics.interval with metrics.enabled=true"),
    (("-i",), False, "Falconet ignores no syscall by default: it captures the syscalls its rules name "
                     "(`falconet capture --print-bpf -r RULES` shows them)"),
    (("--list-plugins",), False, "Falconet loads no plugins: container metadata, Kubernetes audit events "
                                 "and the json fields are built in"),
    (("--plugin-info",), True, "Falconet loads no plugins: container metadata, Kubernetes audit events "
                               "and the json fields are built in"),
    (("--list-syscall-events",), False, "Falco renamed it --list-events"),
    (("--rule-schema",), False, "Falconet has no rule JSON schema; `falconet -V FILE` validates rule files "
                                "as Falco does"),
)

not_implemented = _compose(*(_not_implemented(decls, why, takes) for decls, takes, why in NOT_IMPLEMENTED))
run_flags = _compose(duration, disable, disable_tags, enable_tags, unbuffered, dry_run, verbose,
                     disable_source, enable_source, pidfile, print_format, not_implemented)


@dataclass
class Settings:
    """What the command line says about configuration and rules: the subcommand's values, else the
    root command's."""

    config_path: str | None = None
    overrides: list[str] = field(default_factory=list)
    rules_files: list[str] = field(default_factory=list)


def settings(ctx: click.Context, config_path: str | None = None, overrides: tuple[str, ...] = (),
             rules_files: tuple[str, ...] = ()) -> Settings:
    """-c, -o and -r of the root command merged with a subcommand's (whose -o come later, so win)."""
    root = ctx.find_root().obj or {}
    return Settings(config_path or root.get("config_path"),
                    [*root.get("overrides", []), *overrides],
                    list(rules_files) or list(root.get("rules_files", [])))


def load_config(s: Settings, extra_overrides: tuple[str, ...] = ()) -> Any:
    """The configuration the settings name; its warnings (Falco keys Falconet does not use) go to
    stderr, once."""
    from sensor import config as config_mod

    cfg = config_mod.load(s.config_path, [*s.overrides, *extra_overrides])
    for w in cfg.warnings:
        click.echo(f"falconet: warning: {w}", err=True)
    return cfg


def first_unused_override(overrides: Iterable[str], used: Collection[str]) -> str | None:
    """The first `-o` that sets a declared key outside `used` (the key paths a command reads), or
    None: an option that would do nothing is refused, not ignored. A whole group (`-o
    'file_output={...}'`) sets every key under it; a key nothing declares is left to loading the
    configuration, which names it as unknown."""
    from sensor import config as config_mod

    declared = config_mod.schema()
    for item in overrides:
        dotted = re.sub(r"\[\d*\]$", "", item.split("=", 1)[0].strip())
        touched = [p for p in declared if p == dotted or p.startswith(dotted + ".") or dotted.startswith(p + ".")]
        if any(p not in used for p in touched):
            return item
    return None
