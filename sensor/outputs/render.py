"""How the line channels (stdout, file, program, syslog, http) render an alert: Falco's text line or
Falco's JSON alert (DESIGN.md §3, through sensor.engine.formatter), as configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sensor.alert import Alert, JsonOptions, alert_json, alert_text

FORMATS = ("", "text", "json")


class Renderer:
    """The json_output / json_include_* / time_format_iso_8601 settings, applied to alerts."""

    def __init__(self, cfg: Any) -> None:
        self.json_default = bool(cfg.get("json_output", False))
        self.iso_8601 = bool(cfg.get("time_format_iso_8601", False))
        self.json_options = JsonOptions(
            include_output=bool(cfg.get("json_include_output_property", True)),
            include_tags=bool(cfg.get("json_include_tags_property", True)),
            include_output_fields=bool(cfg.get("json_include_output_fields_property", True)),
            include_message=bool(cfg.get("json_include_message_property", False)),
            time_iso_8601=self.iso_8601,
        )

    def is_json(self, fmt: str) -> bool:
        """A channel's `format`: "json", "text", or "" to follow json_output."""
        return fmt == "json" or (fmt == "" and self.json_default)

    def render(self, alert: Alert, fmt: str = "") -> str:
        """The alert as one line (no newline)."""
        if self.is_json(fmt):
            return alert_json(alert, self.json_options)
        return alert_text(alert, self.iso_8601)

    def line_encoder(self, fmt: str = "") -> Callable[[Alert], bytes]:
        """An encoder producing the UTF-8 line with its newline."""
        if self.is_json(fmt):
            opts = self.json_options
            return lambda a: (alert_json(a, opts) + "\n").encode()
        iso = self.iso_8601
        return lambda a: (alert_text(a, iso) + "\n").encode()
