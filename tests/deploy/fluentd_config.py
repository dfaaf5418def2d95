"""A reader of Fluentd's v1 configuration syntax, for checking fluent/fluent.conf without Fluentd.

It follows Fluentd's own parser (lib/fluent/config/v1_parser.rb, literal_parser.rb,
basic_parser.rb): directives `<name arg>...</name>`, `key value` lines, comments, single- and
double-quoted values with escapes, JSON array/hash values, `@include` (a glob, relative to the
including file, allowed inside directives too) and embedded Ruby in double-quoted strings.

Embedded Ruby is evaluated against a given environment, for the small part of Ruby that
configuration files use: `ENV['X']`, string literals, `nil`, `use_nil`, `use_default`, `||`,
`==`/`!=`, `cond ? a : b`, `.to_s`, `.empty?`, `.strip`. Anything else is an error that names the
file and line, so a check never passes on code it could not read.

Routing follows lib/fluent/match.rb (glob patterns: `*`, `**`, `{a,b}`, space-separated
alternatives) and the event router: filters in order, then the first matching <match>.

`configure` follows the order in which Fluentd sets a configuration up (lib/fluent/root_agent.rb
RootAgent#configure, the same in 1.16 and 1.19): every <label> but @ERROR is registered, then the
plugins inside those labels are configured, then @ERROR is registered and its plugins configured,
then the plugins at the root, then the sources. A plugin that names a label (`@label`, resolved
by the event emitter helper at configure time) fails with `ArgumentError: <name> label not
found` when that label is not registered yet: a relabel to @ERROR from inside another label is
the case that stops Fluentd from starting.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Fluentd's lexical classes (basic_parser.rb), with Ruby's \z spelled \Z.
SPACING = re.compile(r"(?:[ \t\r\n]|\Z|#.*?(?:\Z|[\r\n]))+")
ZERO_OR_MORE_SPACING = re.compile(r"(?:[ \t\r\n]|#.*?(?:\Z|[\r\n]))*")
SPACING_WITHOUT_COMMENT = re.compile(r"(?:[ \t\r\n])+")
LINE_END = re.compile(r"(?:[ \t]*(?:#.*)?(?:\Z|[\r\n]))+")
ELEMENT_NAME = re.compile(r"[a-zA-Z0-9_]+")
RESERVED_PARAMS = ("@type", "@id", "@label", "@log_level")
ELEM_SYMBOLS = ("match", "source", "filter", "system")


class FluentConfigError(Exception):
    """A configuration Fluentd would refuse; the message starts with file:line."""


class _Default:
    """The value of `use_default`: the parameter takes the plugin's default."""

    def __repr__(self) -> str:
        return "use_default"


USE_DEFAULT = _Default()


@dataclass
class Param:
    """One `key value` line: the evaluated value (None for use_nil) and where it was written."""

    name: str
    value: str | _Default | None
    raw: str
    file: str
    line: int


@dataclass
class Element:
    """A directive (or the file's root): its argument, parameters and nested directives."""

    name: str
    arg: str
    file: str
    line: int
    params: dict[str, Param] = field(default_factory=dict)
    elements: list[Element] = field(default_factory=list)

    def get(self, key: str, default: str | None = None) -> str | None:
        p = self.params.get(key)
        if p is None or p.value is USE_DEFAULT:
            return default
        return p.value  # type: ignore[return-value]

    def sections(self, name: str) -> list[Element]:
        return [e for e in self.elements if e.name == name]

    def section(self, name: str) -> Element | None:
        found = self.sections(name)
        return found[0] if found else None

    @property
    def type(self) -> str | None:
        return self.get("@type")

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def walk(self) -> Iterator[Element]:
        yield self
        for e in self.elements:
            yield from e.walk()


# --------------------------------------------------------------------------------------------
# Embedded Ruby
# --------------------------------------------------------------------------------------------

_RUBY_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")
  | (?P<op>\|\||&&|==|!=|\[|\]|\?|:|\.|\(|\))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*[?!]?)
)""", re.VERBOSE)


class _Ruby:
    """Evaluates the subset of Ruby that Fluentd configuration files use (see module doc)."""

    def __init__(self, code: str, env: Mapping[str, str], where: str) -> None:
        self.where = where
        self.code = code
        self.env = env
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        code = code.rstrip()
        while pos < len(code):
            m = _RUBY_TOKEN.match(code, pos)
            if not m or m.end() == pos:
                raise self.error(f"cannot read Ruby at {code[pos:]!r}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def error(self, msg: str) -> FluentConfigError:
        return FluentConfigError(f"{self.where}: embedded Ruby #{{{self.code}}}: {msg}")

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise self.error("unexpected end of code")
        tok = self.tokens[self.i]
        if expected is not None and tok[1] != expected:
            raise self.error(f"expected {expected!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def evaluate(self) -> object:
        value = self.ternary()
        if self.i != len(self.tokens):
            raise self.error(f"unexpected {self.peek()!r}")
        return value

    @staticmethod
    def truthy(v: object) -> bool:
        return v is not None and v is not False

    def ternary(self) -> object:
        cond = self.or_()
        if self.peek() == "?":
            self.take("?")
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return a if self.truthy(cond) else b
        return cond

    def or_(self) -> object:
        v = self.cmp()
        while self.peek() == "||":
            self.take()
            rhs = self.cmp()
            v = v if self.truthy(v) else rhs
        return v

    def cmp(self) -> object:
        v = self.postfix()
        if self.peek() in ("==", "!="):
            op = self.take()[1]
            rhs = self.postfix()
            return (v == rhs) if op == "==" else (v != rhs)
        return v

    def postfix(self) -> object:
        v = self.primary()
        while self.peek() == ".":
            self.take(".")
            _, method = self.take()
            if method == "to_s":
                v = "" if v is None else str(v)
            elif method == "empty?":
                if not isinstance(v, str):
                    raise self.error(f"empty? on {v!r} (NoMethodError in Ruby)")
                v = v == ""
            elif method == "strip":
                if not isinstance(v, str):
                    raise self.error(f"strip on {v!r} (NoMethodError in Ruby)")
                v = v.strip()
            else:
                raise self.error(f"method {method!r} is not in the supported subset")
        return v

    def primary(self) -> object:
        kind, text = self.take()
        if kind == "str":
            body = text[1:-1]
            if text[0] == '"' and "#{" in body:
                raise self.error("nested interpolation is not in the supported subset")
            return re.sub(r"\\(.)", r"\1", body)
        if text == "(":
            v = self.ternary()
            self.take(")")
            return v
        if text == "ENV":
            self.take("[")
            k, name = self.take()
            if k != "str":
                raise self.error("ENV[...] needs a string literal")
            self.take("]")
            return self.env.get(name[1:-1])
        if text == "nil":
            return None
        if text == "use_nil":
            return None
        if text == "use_default":
            return USE_DEFAULT
        if text in ("true", "false"):
            return text == "true"
        raise self.error(f"{text!r} is not in the supported subset")


def ruby_env_names(text: str) -> set[str]:
    """Every ENV['NAME'] that embedded code in `text` reads."""
    return set(re.findall(r"ENV\[\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\]", text))


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, path: Path, env: Mapping[str, str]) -> None:
        self.s = text
        self.pos = 0
        self.path = path
        self.env = env

    # scanning primitives (StringScanner's skip/scan)
    def skip(self, pattern: re.Pattern[str]) -> str | None:
        m = pattern.match(self.s, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group(0)

    def skip_str(self, literal: str) -> bool:
        if self.s.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def eof(self) -> bool:
        return self.pos >= len(self.s)

    def line(self, pos: int | None = None) -> int:
        return self.s.count("\n", 0, self.pos if pos is None else pos) + 1

    def error(self, msg: str, pos: int | None = None) -> FluentConfigError:
        return FluentConfigError(f"{self.path}:{self.line(pos)}: {msg}")

    # structure
    def parse_element(self, root: bool, elem_name: str | None, elem: Element) -> None:
        while True:
            self.skip(SPACING)
            if self.eof():
                if root:
                    return
                raise self.error(f"expected end tag '</{elem_name}>' (opened at line {elem.line}) "
                                 f"but got end of file")
            start = self.pos
            if self.skip_str("</"):
                name = self.skip(ELEMENT_NAME)
                self.skip(SPACING)
                if not self.skip_str(">"):
                    raise self.error("expected character in tag name")
                if self.skip(LINE_END) is None:
                    raise self.error("expected end of line after end tag")
                if name != elem_name:
                    raise self.error(f"unmatched end tag </{name}> (open: <{elem_name}>)", start)
                return
            if self.skip_str("<"):
                name = self.skip(ELEMENT_NAME)
                if name is None:
                    raise self.error("expected a directive name after '<'")
                self.skip(SPACING)
                arg = self.scan_string(re.compile(ZERO_OR_MORE_SPACING.pattern + r">"))
                self.skip(SPACING)
                if not self.skip_str(">"):
                    raise self.error("expected '>'")
                if self.skip(LINE_END) is None:
                    raise self.error("expected end of line after tag")
                child = Element(name, "" if arg is None else str(arg), str(self.path), self.line(start))
                self.parse_element(False, name, child)
                elem.elements.append(child)
                continue
            key = self.scan_string(SPACING)
            if not isinstance(key, str) or key == "":
                raise self.error("expected a parameter name")
            gap = self.skip(SPACING_WITHOUT_COMMENT)
            if (gap is not None and "\n" in gap) or self.eof():
                elem.params[key] = Param(key, "", "", str(self.path), self.line(start))
                continue
            if key == "@include":
                self.parse_include(elem)
                continue
            if key.startswith("@") and key not in RESERVED_PARAMS and (root or elem_name in ELEM_SYMBOLS):
                raise self.error(f"'@' is the system reserved prefix, not allowed here: {key}", start)
            vstart = self.pos
            value = self.parse_literal()
            raw = self.s[vstart:self.pos].strip()
            if self.skip(LINE_END) is None:
                raise self.error("expected end of line")
            if key in elem.params and elem.params[key].file == str(self.path):
                raise self.error(f"parameter {key!r} is set twice in <{elem.name}> "
                                 f"(first at line {elem.params[key].line})", start)
            elem.params[key] = Param(key, value, raw, str(self.path), self.line(start))

    def parse_include(self, elem: Element) -> None:
        start = self.pos
        target = self.scan_string(LINE_END)
        self.skip(LINE_END)
        if not isinstance(target, str) or not target:
            raise self.error("@include needs a path", start)
        pattern = target if target.startswith("/") else str(self.path.parent / target)
        matches = sorted(glob.glob(pattern))
        if not matches:
            # Fluentd includes nothing for a glob that matches nothing: a silent no-op that would
            # hide a typo, so this reader refuses it.
            raise self.error(f"@include {target!r} matches no file", start)
        for m in matches:
            _Parser(Path(m).read_text(encoding="utf-8"), Path(m), self.env).parse_element(True, None, elem)

    # values
    def parse_literal(self) -> str | _Default | None:
        self.skip(re.compile(r"[ \t]*"))
        if self.s.startswith("[", self.pos) or self.s.startswith("{", self.pos):
            return self.scan_json()
        return self.scan_string(LINE_END)

    def scan_string(self, boundary: re.Pattern[str]) -> str | _Default | None:
        if self.skip_str('"'):
            return self.scan_double_quoted()
        if self.skip_str("'"):
            return self.scan_single_quoted()
        return self.scan_nonquoted(boundary)

    def scan_nonquoted(self, boundary: re.Pattern[str]) -> str | None:
        out = []
        while not self.eof():
            c = self.s[self.pos]
            if c == "#":
                out.append(c)
                self.pos += 1
            elif boundary.match(self.s, self.pos) and boundary.match(self.s, self.pos).end() > self.pos:
                break
            elif c in "\r\n":
                break
            else:
                out.append(c)
                self.pos += 1
        return "".join(out) if out else None

    def scan_single_quoted(self) -> str:
        out = []
        while True:
            if self.eof():
                raise self.error("unexpected end of file in a single quoted string")
            if self.skip_str("'"):
                return "".join(out)
            if self.skip_str("\\'"):
                out.append("'")
            elif self.skip_str("\\\\"):
                out.append("\\")
            else:
                out.append(self.s[self.pos])
                self.pos += 1

    _ESCAPES = {'"': '"', "'": "'", "r": "\r", "n": "\n", "t": "\t", "f": "\f", "b": "\b"}

    def scan_double_quoted(self) -> str | _Default | None:
        parts: list[object] = []
        start = self.pos
        while True:
            if self.eof():
                raise self.error("unexpected end of file in a double quoted string", start)
            if self.skip_str('"'):
                if any(p is None for p in parts):
                    return None
                if any(p is USE_DEFAULT for p in parts):
                    return USE_DEFAULT
                return "".join("" if p is None else (str(p).lower() if isinstance(p, bool) else str(p))
                               for p in parts)
            c = self.s[self.pos]
            if c == "\\" and self.pos + 1 < len(self.s):
                e = self.s[self.pos + 1]
                if e in self._ESCAPES:
                    parts.append(self._ESCAPES[e])
                elif e.isalnum():
                    raise self.error(f"unexpected back-slash escape character '{e}'")
                else:
                    parts.append(e)
                self.pos += 2
            elif self.skip_str("#{"):
                code_start = self.pos
                code = self.scan_embedded_code()
                parts.append(_Ruby(code, self.env, f"{self.path}:{self.line(code_start)}").evaluate())
            else:
                parts.append(c)
                self.pos += 1

    def scan_embedded_code(self) -> str:
        depth, i, s = 0, self.pos, self.s
        while i < len(s):
            c = s[i]
            if c in "'\"":
                j = i + 1
                while j < len(s) and s[j] != c:
                    j += 2 if s[j] == "\\" else 1
                i = j + 1
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                if depth == 0:
                    code = s[self.pos:i]
                    self.pos = i + 1
                    return code
                depth -= 1
            elif c == "\n":
                break
            i += 1
        raise self.error("expected end of embedded code")

    def scan_json(self) -> str:
        start = self.pos
        end = self.s.find("\n", self.pos)
        while True:
            chunk = self.s[start:len(self.s) if end < 0 else end]
            text = re.sub(r"(?m)[ \t]+#.*$", "", chunk)
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                if end < 0:
                    raise self.error("got incomplete JSON configuration", start) from None
                end = self.s.find("\n", end + 1)
                continue
            self.pos = start + len(chunk)
            return json.dumps(value)


def parse(path: str | Path, env: Mapping[str, str] | None = None) -> Element:
    """Read a Fluentd configuration file (and what it includes) as Fluentd would with `env`."""
    path = Path(path)
    root = Element("ROOT", "", str(path), 1)
    _Parser(path.read_text(encoding="utf-8"), path, env or {}).parse_element(True, None, root)
    return root


def parse_text(text: str, env: Mapping[str, str] | None = None, name: str = "<text>") -> Element:
    """Read configuration text (includes resolve against the current directory)."""
    root = Element("ROOT", "", name, 1)
    _Parser(text, Path(name), env or {}).parse_element(True, None, root)
    return root


# --------------------------------------------------------------------------------------------
# Tag routing
# --------------------------------------------------------------------------------------------


def _glob_regex(pat: str) -> str:
    """One glob of a match pattern as a regex, as lib/fluent/match.rb GlobMatchPattern builds it."""
    stack: list[list[str]] = []
    regex = [""]
    escape = dot = False
    i = 0
    while i < len(pat):
        c = pat[i]
        if escape:
            regex[-1] += re.escape(c)
            escape = False
            i += 1
            continue
        if pat[i:i + 2] == "**":
            i += 2
            if dot:
                regex[-1] += r"(?![^\.])"
                dot = False
            if pat[i:i + 1] == ".":
                regex[-1] += r"(?:.*\.|\A)"
                i += 1
            else:
                regex[-1] += ".*"
            continue
        if dot:
            regex[-1] += r"\."
            dot = False
        if c == "\\":
            escape = True
        elif c == ".":
            dot = True
        elif c == "*":
            regex[-1] += r"[^\.]*"
        elif c == "{":
            stack.append([])
            regex.append("")
        elif c == "}" and stack:
            stack[-1].append(regex.pop())
            regex[-1] += "(?:" + "|".join(stack.pop()) + ")"
        elif c == "," and stack:
            stack[-1].append(regex.pop())
            regex.append("")
        elif re.match(r"[a-zA-Z0-9_]", c):
            regex[-1] += c
        else:
            regex[-1] += re.escape(c)
        i += 1
    while stack:
        stack[-1].append(regex.pop())
        regex[-1] += "(?:" + "|".join(stack.pop()) + ")"
    return regex[-1]


def tag_matches(pattern: str, tag: str) -> bool:
    """Whether a <match>/<filter> pattern (space-separated alternatives) matches `tag`."""
    return any(re.fullmatch(_glob_regex(p), tag) for p in pattern.split())


@dataclass
class Route:
    """Where a tagged record ends: the output directive, the filters it passed, the labels crossed."""

    output: Element | None
    filters: list[Element]
    labels: list[str]


def labels(root: Element) -> dict[str, Element]:
    return {e.arg: e for e in root.sections("label")}


def route(root: Element, tag: str, label: str | None = None) -> Route:
    """Follow `tag` from `label` (None: the root) through filters, relabels, to its output."""
    filters: list[Element] = []
    crossed: list[str] = []
    by_name = labels(root)
    scope = root if label is None else by_name[label]
    for _ in range(16):
        crossed.append(label or "ROOT")
        target = None
        for e in scope.elements:
            if e.name == "filter" and tag_matches(e.arg, tag):
                filters.append(e)
            elif e.name == "match" and tag_matches(e.arg, tag):
                target = e
                break
        if target is None:
            return Route(None, filters, crossed)
        if target.type == "relabel":
            label = target.get("@label")
            if label not in by_name:
                raise FluentConfigError(f"{target.where}: relabel to undefined label {label}")
            scope = by_name[label]
            continue
        return Route(target, filters, crossed)
    raise FluentConfigError(f"relabel loop for tag {tag}")


# --------------------------------------------------------------------------------------------
# Start-up order (RootAgent#configure)
# --------------------------------------------------------------------------------------------

ERROR_LABEL = "@ERROR"


def configure(root: Element) -> list[str]:
    """Set the configuration up in Fluentd's order; the labels in the order they were registered.

    Raises FluentConfigError with what Fluentd raises (ConfigError or ArgumentError) and where.
    """
    registered: list[str] = []
    error_label: Element | None = None
    pending: list[Element] = []
    for e in root.sections("label"):
        if not e.arg:
            raise FluentConfigError(f"{e.where}: ConfigError: Missing symbol argument on <label> directive")
        if e.arg == "@ROOT":
            raise FluentConfigError(f"{e.where}: ConfigError: @ROOT for <label> is not permitted, reserved "
                                    f"for getting root router")
        if e.arg == ERROR_LABEL:
            error_label = e          # a second <label @ERROR> replaces the first, as in Fluentd
            continue
        if e.arg in registered:
            raise FluentConfigError(f"{e.where}: ConfigError: Section <label {e.arg}> appears twice")
        registered.append(e.arg)
        pending.append(e)
    for e in pending:
        _configure_plugins(e, registered)
    if error_label is not None:
        registered.append(ERROR_LABEL)
        _configure_plugins(error_label, registered)
    _configure_plugins(root, registered)
    for src in root.sections("source"):
        _resolve_label(src, registered)
    return registered


def _configure_plugins(scope: Element, registered: list[str]) -> None:
    for e in scope.elements:
        if e.name in ("match", "filter"):
            _resolve_label(e, registered)


def _resolve_label(e: Element, registered: list[str]) -> None:
    label = e.get("@label")
    if label is not None and label not in registered:
        where = e.params["@label"]
        raise FluentConfigError(
            f"{where.file}:{where.line}: <{e.name} {e.arg}> @label {label}: ArgumentError: {label} label not "
            f"found (labels set up so far: {', '.join(registered) or 'none'}; Fluentd sets up @ERROR after "
            f"every other label and the plugins in them)")
