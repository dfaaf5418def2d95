"""The rules engine: Falco's rules language, compiled once into Python callables.

Stable entry points (DESIGN.md §4):
- `parse_condition(text) -> Node`; raises `RuleSyntaxError` (with line/column) on invalid input.
- `load_rules(paths, ...) -> Ruleset`; raises `RulesLoadError` listing every error.
- `Ruleset.process(event) -> list[Alert]`; `Ruleset.event_types(source) -> frozenset | None`.
- `compile_filter(text, source) -> Callable[[Event], bool]` for conditions outside rule files.

The engine imports only sensor.event, sensor.errors, the standard library, lark and yaml.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RuleSyntaxError", "RulesLoadError", "Ruleset", "compile_filter", "load_rules",
           "parse_condition"]

_LAZY = {
    "parse_condition": "sensor.engine.parser",
    "RuleSyntaxError": "sensor.engine.parser",
    "load_rules": "sensor.engine.loader",
    "RulesLoadError": "sensor.engine.loader",
    "Ruleset": "sensor.engine.ruleset",
    "compile_filter": "sensor.engine.compiler",
}

if TYPE_CHECKING:
    from sensor.engine.compiler import compile_filter
    from sensor.engine.loader import RulesLoadError, load_rules
    from sensor.engine.parser import RuleSyntaxError, parse_condition
    from sensor.engine.ruleset import Ruleset


def __getattr__(name: str) -> Any:
    # Lazy, so importing sensor.engine.fields (the capture does) does not build the parser.
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(mod), name)
