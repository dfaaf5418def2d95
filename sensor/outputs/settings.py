"""What the outputs can be told: their configuration keys and the typed settings built from them.

The keys shared by every channel (`buffered_outputs`, `outputs_queue.*`, `flood_control.*`, the
`spool` block each channel has) and each channel's own (`stdout_output.*` ... `fluent_output.*`),
and `OutputSettings.from_config(cfg)`: every value the outputs read, converted once (durations in
seconds, sizes in bytes, spool directories resolved under state_dir), including what they take
from the top-level keys (json_output and the json_include_* switches, hostname, static_fields).
A reload rebuilds the outputs exactly when their OutputSettings differ.

What can be checked from the values alone is checked here (an enabled file channel without a
file name); what needs the machine (a directory to write in, a program to run, TLS files to
load) is checked by the channel modules when they are built.

Light on purpose: sensor/config.py reads these keys to build its schema, so this module imports
nothing of the channels (no sockets, TLS, msgpack or processes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sensor import __version__
from sensor.alert import JsonOptions
from sensor.config_keys import Key, Origins, parse_duration, parse_size
from sensor.errors import ConfigError

if TYPE_CHECKING:
    from sensor.config import Config

FORMATS = ("", "text", "json")
LINE_BATCH = 100
"""Alerts a line channel (stdout, file, program, http, syslog) takes from its store per pass."""


def spool_keys(channel: str, enabled: bool, max_size: str = "256MiB") -> tuple[Key, ...]:
    """The `spool` block every channel declares (every channel can spool)."""
    return (
        Key(f"{channel}.spool.enabled", bool, enabled,
            "Queue this channel's alerts on disk instead of in memory: they survive a restart and "
            "a long outage of the destination, and leave the spool only once delivered."),
        Key(f"{channel}.spool.dir", str, "",
            f"Spool directory; empty: <state_dir>/spool/{channel.removesuffix('_output')}."),
        Key(f"{channel}.spool.max_size", str, max_size,
            "Most disk space the spool may use; alerts that do not fit are dropped and counted.",
            check=parse_size),
        Key(f"{channel}.spool.fsync", bool, False,
            "fsync every spooled alert, so that even a power cut loses none (slower)."),
    )


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

STDOUT_KEYS: tuple[Key, ...] = (
    Key("stdout_output.enabled", bool, True, "Print alerts on standard output."),
    *spool_keys("stdout_output", False),
)

FILE_KEYS: tuple[Key, ...] = (
    Key("file_output.enabled", bool, False, "Append alerts to a file."),
    Key("file_output.keep_alive", bool, False,
        "Keep the file open between alerts (true), or open and close it for every batch (false)."),
    Key("file_output.filename", str, "./events.txt", "The file alerts are appended to."),
    Key("file_output.format", str, "",
        "text or json; empty: follow json_output (so a terminal can show text while the file holds "
        "JSON).", choices=FORMATS),
    *spool_keys("file_output", False),
)

PROGRAM_KEYS: tuple[Key, ...] = (
    Key("program_output.enabled", bool, False, "Feed alerts to a program's standard input."),
    Key("program_output.keep_alive", bool, False,
        "One long-lived program fed line by line (true), or one program per alert (false)."),
    Key("program_output.program", str, "",
        "Shell command, e.g. \"jq '{text: .output}' | curl -d @- -X POST https://hooks.slack.com/...\"."),
    Key("program_output.format", str, "", "text or json; empty: follow json_output.", choices=FORMATS),
    Key("program_output.timeout", str, "30s",
        "How long a per-alert program (keep_alive: false) may run before it is killed.",
        check=parse_duration),
    *spool_keys("program_output", False),
)

HTTP_KEYS: tuple[Key, ...] = (
    Key("http_output.enabled", bool, False, "POST every alert to `url`."),
    Key("http_output.url", str, "", "Where to POST, http:// or https:// (e.g. http://falcosidekick:2801/)."),
    Key("http_output.user_agent", str, f"falconet/{__version__}", "The User-Agent header."),
    Key("http_output.format", str, "json", "json (the JSON alert), text, or empty: follow json_output.",
        choices=FORMATS),
    Key("http_output.insecure", bool, False, "Do not verify the server's certificate (testing only)."),
    Key("http_output.ca_cert", str, "", "PEM file of the CA(s) that signed the server's certificate; "
        "empty: the system's trust store."),
    Key("http_output.ca_path", str, "", "Directory of hashed CA certificates (c_rehash), besides ca_cert."),
    Key("http_output.mtls", bool, False, "Present a client certificate (mutual TLS)."),
    Key("http_output.client_cert", str, "", "PEM client certificate for mTLS."),
    Key("http_output.client_key", str, "", "PEM private key of client_cert."),
    Key("http_output.compress_uploads", bool, False, "gzip request bodies (Content-Encoding: gzip)."),
    Key("http_output.keep_alive", bool, True, "Reuse one connection for successive alerts."),
    Key("http_output.timeout", str, "10s", "Connect and response timeout of one request.",
        check=parse_duration),
    *spool_keys("http_output", True),
)

SYSLOG_KEYS: tuple[Key, ...] = (
    Key("syslog_output.enabled", bool, False,
        "Send alerts to the local syslog daemon (through syslog_output.address)."),
    Key("syslog_output.address", str, "/dev/log", "The syslog daemon's Unix datagram socket."),
    Key("syslog_output.format", str, "", "text or json; empty: follow json_output.", choices=FORMATS),
    *spool_keys("syslog_output", False),
)

FLUENT_KEYS: tuple[Key, ...] = (
    Key("fluent_output.enabled", bool, False,
        "Send alerts (ECS documents) to Fluentd with the forward protocol, each chunk acknowledged."),
    Key("fluent_output.host", str, "127.0.0.1", "Fluentd's forward input (in_forward) host."),
    Key("fluent_output.port", int, 24224, "Fluentd's forward input port."),
    Key("fluent_output.tag", str, "falconet.alerts", "The tag of alert records."),
    Key("fluent_output.tls.enabled", bool, False, "Connect with TLS (in_forward's <transport tls>)."),
    Key("fluent_output.tls.ca_cert", str, "", "PEM CA(s) of Fluentd's certificate; empty: the system's."),
    Key("fluent_output.tls.client_cert", str, "", "PEM client certificate, when Fluentd asks for one."),
    Key("fluent_output.tls.client_key", str, "", "PEM private key of client_cert."),
    Key("fluent_output.tls.verify", bool, True, "Verify Fluentd's certificate and name."),
    Key("fluent_output.tls.server_name", str, "", "Name to verify in Fluentd's certificate; empty: host."),
    Key("fluent_output.shared_key", str, "",
        "Shared key of in_forward's <security> section; empty: no handshake."),
    Key("fluent_output.self_hostname", str, "",
        "Our hostname in the handshake (must differ from Fluentd's); empty: the alert hostname."),
    Key("fluent_output.username", str, "", "User for in_forward's user_auth (with password)."),
    Key("fluent_output.password", str, "", "Password of username."),
    Key("fluent_output.batch_size", int, 500, "Most alerts in one acknowledged chunk."),
    Key("fluent_output.compress", str, "", "gzip: send CompressedPackedForward chunks.",
        choices=("", "gzip")),
    Key("fluent_output.connect_timeout", str, "10s", "Timeout of connecting and of the handshake.",
        check=parse_duration),
    Key("fluent_output.ack_timeout", str, "60s",
        "How long to wait for a chunk's ack before sending it again on a new connection.",
        check=parse_duration),
    Key("fluent_output.log_tag", str, "falconet.log",
        "Tag under which the sensor's own log goes to Fluentd (DESIGN.md names on the wire); "
        "empty: the log is not sent."),
    Key("fluent_output.log_level", str, "info", "Lowest level of the sensor's log sent to Fluentd.",
        choices=("debug", "info", "warning", "error", "critical")),
    *spool_keys("fluent_output", True, "1GiB"),
)

KEY_GROUPS: tuple[tuple[Key, ...], ...] = (CONFIG_KEYS, STDOUT_KEYS, FILE_KEYS, PROGRAM_KEYS, HTTP_KEYS,
                                           SYSLOG_KEYS, FLUENT_KEYS)
"""Every key of the outputs, in the order the bundled falconet.yaml lists them."""

# Every output key: what `falconet replay --outputs` takes in `-o` besides the rules' keys.
OUTPUT_KEYS = frozenset(k.path for group in KEY_GROUPS for k in group)


def sets_an_output_key(override: str) -> bool:
    """Whether `-o key=value` (or `key[]=value`) sets a key of the outputs, or a group of them
    (`-o 'file_output={...}'`): what a command that runs no output refuses."""
    dotted = override.split("=", 1)[0].strip().removesuffix("[]")
    return any(k.path == dotted or k.path.startswith(dotted + ".") for group in KEY_GROUPS for k in group)


# -- shared by every channel -----------------------------------------------------------------------


# The keys RenderSettings reads (declared in sensor/settings.py with the other top-level keys).
RENDER_KEYS = frozenset({"json_output", "json_include_output_property", "json_include_tags_property",
                         "json_include_output_fields_property", "json_include_message_property",
                         "time_format_iso_8601"})


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """How alerts are written as lines: Falco's top-level json_output, json_include_* and
    time_format_iso_8601 (declared with the other top-level keys in sensor/settings.py)."""

    json_output: bool = False
    iso_8601: bool = False
    json: JsonOptions = field(default_factory=JsonOptions)

    @classmethod
    def from_config(cls, cfg: Config) -> RenderSettings:
        iso = bool(cfg.get("time_format_iso_8601"))
        return cls(json_output=bool(cfg.get("json_output")), iso_8601=iso, json=JsonOptions(
            include_output=bool(cfg.get("json_include_output_property")),
            include_tags=bool(cfg.get("json_include_tags_property")),
            include_output_fields=bool(cfg.get("json_include_output_fields_property")),
            include_message=bool(cfg.get("json_include_message_property")),
            time_iso_8601=iso))


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    """A channel's `spool` block; `dir` resolved (empty: <state_dir>/spool/<channel>)."""

    enabled: bool
    dir: Path
    max_size: int                # bytes
    max_size_text: str           # as configured ("1GiB"), for what a dry run prints
    fsync: bool

    @classmethod
    def from_config(cls, cfg: Config, channel: str) -> SpoolSettings:
        prefix = f"{channel}_output.spool"
        text = cfg.get(f"{prefix}.max_size")
        return cls(enabled=bool(cfg.get(f"{prefix}.enabled")),
                   dir=Path(cfg.get(f"{prefix}.dir") or cfg.state_path("spool", channel)),
                   max_size=parse_size(text), max_size_text=str(text), fsync=bool(cfg.get(f"{prefix}.fsync")))


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """`outputs_queue.*`: each channel's memory queue and its delivery retries, in seconds."""

    capacity: int
    retry_initial: float
    retry_max: float
    shutdown_timeout: float
    report_interval: float

    @classmethod
    def from_config(cls, cfg: Config) -> QueueSettings:
        return cls(capacity=int(cfg.get("outputs_queue.capacity")),
                   retry_initial=cfg.duration("outputs_queue.retry_initial"),
                   retry_max=cfg.duration("outputs_queue.retry_max"),
                   shutdown_timeout=cfg.duration("outputs_queue.shutdown_timeout"),
                   report_interval=cfg.duration("outputs_queue.report_interval"))


@dataclass(frozen=True, slots=True)
class FloodSettings:
    """`flood_control.*`."""

    enabled: bool
    window: float
    rules: tuple[str, ...]
    key_fields: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: Config) -> FloodSettings:
        return cls(enabled=bool(cfg.get("flood_control.enabled")), window=cfg.duration("flood_control.window"),
                   rules=tuple(cfg.get("flood_control.rules") or ()),
                   key_fields=tuple(cfg.get("flood_control.key_fields") or ()))


class ChannelSettings(Protocol):
    """What every channel's settings tell the outputs: whether it is on, how it stores what waits,
    and how many alerts its transport takes at once (each channel declares its own)."""

    name: ClassVar[str]

    @property
    def enabled(self) -> bool: ...

    @property
    def spool(self) -> SpoolSettings: ...

    @property
    def batch_size(self) -> int: ...


def _not_empty(cfg: Config, key: str, what: str, hint: str) -> None:
    if not cfg.get(key):
        raise ConfigError(f"{cfg.origin(key)}: '{key}' is empty{what}", hint=hint)


# -- the channels ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StdoutSettings:
    """`stdout_output.*`."""

    name: ClassVar[str] = "stdout"
    enabled: bool
    spool: SpoolSettings
    batch_size: int = LINE_BATCH

    @classmethod
    def from_config(cls, cfg: Config) -> StdoutSettings:
        return cls(enabled=bool(cfg.get("stdout_output.enabled")), spool=SpoolSettings.from_config(cfg, cls.name))


@dataclass(frozen=True, slots=True)
class FileSettings:
    """`file_output.*`. `filename` as configured (relative to the sensor's working directory)."""

    name: ClassVar[str] = "file"
    enabled: bool
    filename: str
    keep_alive: bool
    format: str
    spool: SpoolSettings
    origins: Origins = field(default=Origins(), compare=False, repr=False)
    batch_size: int = LINE_BATCH

    @classmethod
    def from_config(cls, cfg: Config) -> FileSettings:
        enabled = bool(cfg.get("file_output.enabled"))
        if enabled:
            _not_empty(cfg, "file_output.filename", "", "set the file alerts are appended to")
        return cls(enabled=enabled, filename=cfg.get("file_output.filename"),
                   keep_alive=bool(cfg.get("file_output.keep_alive")), format=cfg.get("file_output.format"),
                   spool=SpoolSettings.from_config(cfg, cls.name), origins=cfg.origins)


@dataclass(frozen=True, slots=True)
class ProgramSettings:
    """`program_output.*`."""

    name: ClassVar[str] = "program"
    enabled: bool
    program: str
    keep_alive: bool
    format: str
    timeout: float
    spool: SpoolSettings
    origins: Origins = field(default=Origins(), compare=False, repr=False)
    batch_size: int = LINE_BATCH

    @classmethod
    def from_config(cls, cfg: Config) -> ProgramSettings:
        enabled = bool(cfg.get("program_output.enabled"))
        if enabled:
            _not_empty(cfg, "program_output.program", " while program_output is enabled",
                       "set the shell command to run")
        return cls(enabled=enabled, program=cfg.get("program_output.program"),
                   keep_alive=bool(cfg.get("program_output.keep_alive")), format=cfg.get("program_output.format"),
                   timeout=cfg.duration("program_output.timeout"), spool=SpoolSettings.from_config(cfg, cls.name),
                   origins=cfg.origins)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """`http_output.*`; the client certificate is presented only with `mtls`."""

    name: ClassVar[str] = "http"
    enabled: bool
    url: str
    user_agent: str
    format: str
    insecure: bool
    ca_cert: str
    ca_path: str
    mtls: bool
    client_cert: str
    client_key: str
    compress: bool
    keep_alive: bool
    timeout: float
    spool: SpoolSettings
    origins: Origins = field(default=Origins(), compare=False, repr=False)
    batch_size: int = LINE_BATCH

    @classmethod
    def from_config(cls, cfg: Config) -> HttpSettings:
        enabled = bool(cfg.get("http_output.enabled"))
        url = cfg.get("http_output.url")
        mtls = bool(cfg.get("http_output.mtls"))
        if enabled:
            _not_empty(cfg, "http_output.url", " while http_output is enabled", "set the URL alerts are POSTed to")
            if url.startswith("https:") and mtls and not cfg.get("http_output.client_cert"):
                raise ConfigError(f"{cfg.origin('http_output.mtls')}: http_output.mtls is on but "
                                  f"http_output.client_cert is empty", hint="set client_cert and client_key")
        return cls(enabled=enabled, url=url, user_agent=cfg.get("http_output.user_agent"),
                   format=cfg.get("http_output.format"), insecure=bool(cfg.get("http_output.insecure")),
                   ca_cert=cfg.get("http_output.ca_cert"), ca_path=cfg.get("http_output.ca_path"), mtls=mtls,
                   client_cert=cfg.get("http_output.client_cert"), client_key=cfg.get("http_output.client_key"),
                   compress=bool(cfg.get("http_output.compress_uploads")),
                   keep_alive=bool(cfg.get("http_output.keep_alive")), timeout=cfg.duration("http_output.timeout"),
                   spool=SpoolSettings.from_config(cfg, cls.name), origins=cfg.origins)


@dataclass(frozen=True, slots=True)
class SyslogSettings:
    """`syslog_output.*`."""

    name: ClassVar[str] = "syslog"
    enabled: bool
    address: str
    format: str
    spool: SpoolSettings
    origins: Origins = field(default=Origins(), compare=False, repr=False)
    batch_size: int = LINE_BATCH

    @classmethod
    def from_config(cls, cfg: Config) -> SyslogSettings:
        return cls(enabled=bool(cfg.get("syslog_output.enabled")), address=cfg.get("syslog_output.address"),
                   format=cfg.get("syslog_output.format"), spool=SpoolSettings.from_config(cfg, cls.name),
                   origins=cfg.origins)


@dataclass(frozen=True, slots=True)
class FluentTLSSettings:
    """`fluent_output.tls.*`."""

    enabled: bool
    ca_cert: str
    client_cert: str
    client_key: str
    verify: bool
    server_name: str


@dataclass(frozen=True, slots=True)
class FluentSettings:
    """`fluent_output.*`: the forward connection (shared with the sensor's own log), the chunks
    (`batch_size` alerts at most, each acknowledged) and the log's tag and level.
    `self_hostname` resolved (empty: the alert hostname)."""

    name: ClassVar[str] = "fluent"
    enabled: bool
    host: str
    port: int
    tag: str
    tls: FluentTLSSettings
    shared_key: str
    self_hostname: str
    username: str
    password: str
    batch_size: int
    compress: bool
    connect_timeout: float
    ack_timeout: float
    log_tag: str
    log_level: str
    spool: SpoolSettings

    @classmethod
    def from_config(cls, cfg: Config) -> FluentSettings:
        enabled = bool(cfg.get("fluent_output.enabled"))
        batch = cfg.get("fluent_output.batch_size")
        if enabled and batch < 1:
            raise ConfigError(f"{cfg.origin('fluent_output.batch_size')}: 'fluent_output.batch_size' must be "
                              f"at least 1")
        tls = FluentTLSSettings(
            enabled=bool(cfg.get("fluent_output.tls.enabled")), ca_cert=cfg.get("fluent_output.tls.ca_cert"),
            client_cert=cfg.get("fluent_output.tls.client_cert"), client_key=cfg.get("fluent_output.tls.client_key"),
            verify=bool(cfg.get("fluent_output.tls.verify")), server_name=cfg.get("fluent_output.tls.server_name"))
        return cls(enabled=enabled, host=cfg.get("fluent_output.host"), port=cfg.get("fluent_output.port"),
                   tag=cfg.get("fluent_output.tag"), tls=tls, shared_key=cfg.get("fluent_output.shared_key"),
                   self_hostname=cfg.get("fluent_output.self_hostname") or cfg.hostname(),
                   username=cfg.get("fluent_output.username"), password=cfg.get("fluent_output.password"),
                   batch_size=batch, compress=cfg.get("fluent_output.compress") == "gzip",
                   connect_timeout=cfg.duration("fluent_output.connect_timeout"),
                   ack_timeout=cfg.duration("fluent_output.ack_timeout"), log_tag=cfg.get("fluent_output.log_tag"),
                   log_level=cfg.get("fluent_output.log_level"), spool=SpoolSettings.from_config(cfg, cls.name))


# -- all of them -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputSettings:
    """Everything the outputs read. `static_fields` and `hostname` are added to every alert."""

    buffered: bool
    queue: QueueSettings
    flood: FloodSettings
    render: RenderSettings
    hostname: str
    static_fields: Mapping[str, Any]
    stdout: StdoutSettings
    file: FileSettings
    program: ProgramSettings
    http: HttpSettings
    syslog: SyslogSettings
    fluent: FluentSettings

    @classmethod
    def from_config(cls, cfg: Config) -> OutputSettings:
        """Raises ConfigError naming the key (and its file and line) an enabled channel cannot use."""
        return cls(buffered=bool(cfg.get("buffered_outputs")), queue=QueueSettings.from_config(cfg),
                   flood=FloodSettings.from_config(cfg), render=RenderSettings.from_config(cfg),
                   hostname=cfg.hostname(), static_fields=dict(cfg.get("static_fields") or {}),
                   stdout=StdoutSettings.from_config(cfg), file=FileSettings.from_config(cfg),
                   program=ProgramSettings.from_config(cfg), http=HttpSettings.from_config(cfg),
                   syslog=SyslogSettings.from_config(cfg), fluent=FluentSettings.from_config(cfg))

    def channels(self) -> tuple[ChannelSettings, ...]:
        """Every channel's settings, enabled or not, in the order they are built."""
        return (self.stdout, self.file, self.program, self.http, self.syslog, self.fluent)

    def enabled(self) -> tuple[ChannelSettings, ...]:
        return tuple(c for c in self.channels() if c.enabled)
