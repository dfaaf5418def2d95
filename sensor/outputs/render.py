"""How the line channels (stdout, file, program, syslog, http) render an alert: Falco's text line or
Falco's JSON alert (DESIGN.md §3, through sensor.alert), as configured.
"""

from __future__ import annotations

from collections.abc import Callable

from sensor.alert import Alert, alert_json, alert_text
from sensor.outputs.settings import RenderSettings


class Renderer:
    """The json_output / json_include_* / time_format_iso_8601 settings, applied to alerts."""

    def __init__(self, settings: RenderSettings) -> None:
        self.json_default = settings.json_output
        self.iso_8601 = settings.iso_8601
        self.json_options = settings.json

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
