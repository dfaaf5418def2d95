"""Diagnostics a user can act on: what is wrong, where (file, line, item), and how to fix it.

One type serves rule loading, configuration and the CLI. It renders as one line of text and as the
JSON shape `falco -V` prints (`code`, `codedesc`, `message`, `context.locations[]`, `snippet`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sensor.engine.loader import FileResult

# Falco's load result codes (userspace/engine/falco_load_result.cpp), with the descriptions it prints.
CODES: dict[str, str] = {
    "LOAD_ERR_FILE_READ": "Error reading file",
    "LOAD_ERR_YAML_PARSE": "Error parsing YAML",
    "LOAD_ERR_YAML_VALIDATE": "Error validating internal structure of YAML file",
    "LOAD_ERR_COMPILE_CONDITION": "Error compiling condition",
    "LOAD_ERR_COMPILE_OUTPUT": "Error compiling output",
    "LOAD_ERR_VALIDATE": "Error validating rule/macro/list/exception objects",
    "LOAD_ERR_EXTENSION": "Error related to extension",
    "LOAD_UNKNOWN_SOURCE": "Unknown source",
    "LOAD_UNSAFE_NA_CHECK": "Unsafe comparison in condition",
    "LOAD_NO_EVTTYPE": "Condition has no event-type restriction",
    "LOAD_UNKNOWN_FILTER": "Unknown field or event-type in condition or output",
    "LOAD_UNUSED_MACRO": "Unused macro",
    "LOAD_UNUSED_LIST": "Unused list",
    "LOAD_UNKNOWN_ITEM": "Unknown item",
    "LOAD_DEPRECATED_ITEM": "Used deprecated item",
    "LOAD_WARNING_EXTENSION": "Warning related to extension",
    "LOAD_APPEND_NO_VALUES": "Overriding/appending with no values",
    "LOAD_EXCEPTION_NAME_NOT_UNIQUE": "Multiple exceptions defined with the same name",
    "LOAD_INVALID_MACRO_NAME": "Invalid macro name",
    "LOAD_INVALID_LIST_NAME": "Invalid list name",
    "LOAD_COMPILE_CONDITION": "Warning when compiling condition",
    # Ours, for configuration and runtime problems outside rule files.
    "CONFIG_INVALID": "Invalid configuration",
    "CONFIG_UNKNOWN_KEY": "Unknown configuration key",
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where a diagnostic points: a file position and the rule-file item it belongs to."""

    name: str                 # file name (or "<condition>" for a bare condition)
    line: int = 0             # 1-based, 0 when unknown
    column: int = 0           # 1-based, 0 when unknown
    offset: int = 0           # 0-based character offset in the file
    item_type: str = ""       # "rule", "macro", "list", "rules content", "condition expression", ...
    item_name: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "item_name": self.item_name,
            "item_type": self.item_type,
            "position": {"column": self.column, "line": self.line, "name": self.name,
                         "offset": self.offset},
        }

    def __str__(self) -> str:
        where = self.name
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        if self.item_type:
            where += f" ({self.item_type}"
            where += f" '{self.item_name}')" if self.item_name else ")"
        return where


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One error or warning, with every location that leads to it (outermost first)."""

    code: str
    message: str
    locations: tuple[Location, ...] = ()
    snippet: str = ""
    hint: str = ""

    @property
    def codedesc(self) -> str:
        return CODES.get(self.code, self.code)

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "codedesc": self.codedesc,
            "context": {"locations": [loc.as_json() for loc in self.locations],
                        "snippet": self.snippet},
            "message": self.message,
        }

    def __str__(self) -> str:
        where = f"{self.locations[-1]}: " if self.locations else ""
        text = f"{where}{self.code}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class FalconetError(Exception):
    """Base for errors that reach the user as one clear message (no traceback without --debug)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(FalconetError):
    """The configuration (file or -o override) is invalid; names the key and where it was set."""

    exit_code = 3


class RulesLoadError(FalconetError):
    """Rule files that do not load (sensor.engine.load_rules): every error with its file, line and
    item, the warnings, and the per-file results `rules validate` prints. Its text is one line per
    error."""

    exit_code = 1     # what `falco -V` exits with for rules that do not load

    def __init__(self, errors: list[Diagnostic], warnings: list[Diagnostic], results: list[FileResult]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors
        self.warnings = warnings
        self.results = results


class UnavailableError(FalconetError):
    """Something the command needs is missing here (root, BPF, headers, a reachable peer)."""

    exit_code = 4


@dataclass
class DiagnosticList:
    """Errors and warnings collected while loading, in the order they were found."""

    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
