"""A model of the Elasticsearch ingest processors Falconet's pipelines use, written from their
reference documentation (elastic.co/guide/en/elasticsearch/reference/8.x/<name>-processor.html).

It is not Elasticsearch: it runs the pipelines here, where no cluster can, so the pipeline pairs in
elasticsearch/_dev/test/pipeline/ can be checked against the generated pipeline and against
sensor.ecs.to_ecs. The authority is `_simulate` on a real cluster (the `cluster` test). A processor,
option or `if` form the model does not know makes it raise, so it never silently agrees.

Modelled: append, convert (type string), date (formats ISO8601, default output format), dot_expander,
foreach, gsub, join, lowercase, pipeline, remove, rename, set, split, trim; pipeline-level on_failure;
`{{{...}}}` templates; and the Painless condition forms the pipelines use (`&&`, `!`, `==`, `!=`,
`instanceof List|String|Map`, `.contains()`, `.startsWith()`, list literals, null-safe `?.`).
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

INGEST_TIMESTAMP = "2024-05-13T13:30:00.000000000Z"
_MISSING = object()


class IngestError(Exception):
    """A processor failed (Elasticsearch would run on_failure, or reject the document)."""

    def __init__(self, message: str, processor: str = "", tag: str = "", pipeline: str = "") -> None:
        super().__init__(message)
        self.message, self.processor, self.tag, self.pipeline = message, processor, tag, pipeline


# -- field access (IngestDocument: dotted paths through nested maps) ------------------------------

def _get(doc: dict[str, Any], ingest: dict[str, Any], path: str) -> Any:
    node: Any = ingest if path.startswith("_ingest.") else doc
    parts = path.split(".")[1:] if path.startswith("_ingest.") else path.split(".")
    for p in parts:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and p.isdigit() and int(p) < len(node):
            node = node[int(p)]
        else:
            return _MISSING
    return node


def _set(doc: dict[str, Any], ingest: dict[str, Any], path: str, value: Any) -> None:
    if path.startswith("_ingest."):
        ingest[path.split(".", 1)[1]] = value
        return
    *parents, leaf = path.split(".")
    node = doc
    for p in parents:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise IngestError(f"cannot set [{leaf}] with parent object of type [{type(nxt).__name__}] "
                              f"as part of path [{path}]")
        node = nxt
    node[leaf] = value


def _remove(doc: dict[str, Any], path: str) -> bool:
    *parents, leaf = path.split(".")
    node: Any = doc
    for p in parents:
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    if isinstance(node, dict) and leaf in node:
        del node[leaf]
        return True
    return False


def _render(template: Any, doc: dict[str, Any], ingest: dict[str, Any]) -> Any:
    if not isinstance(template, str) or "{{" not in template:
        return template

    def sub(m: re.Match[str]) -> str:
        v = _get(doc, ingest, m.group(1).strip())
        return "" if v is _MISSING or v is None else str(v)
    return re.sub(r"\{\{\{?([^{}]+?)\}?\}\}", sub, template)


# -- Painless conditions, the forms the pipelines use ------------------------------------------------

_TOKEN = re.compile(r"\s*(&&|\|\||==|!=|!|\[|\]|\(|\)|,|'(?:[^'\\]|\\.)*'|instanceof|null|true|false|"
                    r"[A-Za-z_][A-Za-z0-9_]*(?:\??\.[A-Za-z_][A-Za-z0-9_]*)*)")


class _Cond:
    def __init__(self, text: str, doc: dict[str, Any]) -> None:
        self.tokens = self._lex(text)
        self.i = 0
        self.doc = doc
        self.text = text
        self.skipping = False       # parsing the right side of a false `&&`: read, do not evaluate

    def _lex(self, text: str) -> list[str]:
        out, pos = [], 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise NotImplementedError(f"condition form not modelled: {text!r} at {pos}")
            out.append(m.group(1))
            pos = m.end()
        return out

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise NotImplementedError(f"condition form not modelled: {self.text!r}")
        self.i += 1
        return tok

    def run(self) -> bool:
        v = self.conj()
        if self.peek() is not None:
            raise NotImplementedError(f"condition form not modelled: {self.text!r}")
        return bool(v)

    def conj(self) -> Any:
        v = self.unary()
        while self.peek() == "&&":
            self.take()
            if not v:                       # && short-circuits: the right side is not evaluated
                self.skipping = True
                self.unary()
                self.skipping = False
                continue
            v = self.unary()
        return v

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not self.unary()
        return self.compare()

    def compare(self) -> Any:
        left = self.primary()
        tok = self.peek()
        if tok in ("==", "!="):
            self.take()
            right = self.primary()
            return (left == right) if tok == "==" else (left != right)
        if tok == "instanceof":
            self.take()
            kind = self.take()
            return isinstance(left, {"List": list, "String": str, "Map": dict}[kind])
        return left

    def primary(self) -> Any:
        tok = self.take()
        if tok == "[":
            items = []
            while self.peek() != "]":
                items.append(self.primary())
                if self.peek() == ",":
                    self.take()
            self.take("]")
            return self._methods(items)
        if tok.startswith("'"):
            return tok[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        if tok in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[tok]
        if tok.startswith("ctx."):
            parts = re.split(r"\??\.", tok)
            method = None
            if parts[-1] in ("contains", "startsWith"):
                method = parts.pop()
            value = _get(self.doc, {}, ".".join(parts[1:]))
            value = None if value is _MISSING else value
            if method:
                self.take("(")
                arg = self.primary()
                self.take(")")
                if self.skipping:
                    return False
                if value is None:
                    raise IngestError(f"null pointer in condition {self.text!r}")
                return arg in value if method == "contains" else value.startswith(arg)
            return value
        raise NotImplementedError(f"condition form not modelled: {self.text!r} ({tok})")

    def _methods(self, value: Any) -> Any:
        return value


def condition(text: str, doc: dict[str, Any]) -> bool:
    # `[..].contains(x)`: the lexer reads `.contains` as part of no name; rewrite to a method call form.
    m = re.fullmatch(r"\s*(!?)\s*(\[[^\]]*\])\.contains\((.+)\)\s*", text)
    if m:
        items = _Cond(m.group(2), doc)
        lst = items.primary()
        arg = _Cond(m.group(3), doc)
        val = arg.conj()
        hit = val in lst
        return (not hit) if m.group(1) else hit
    return _Cond(text, doc).run()


# -- processors ------------------------------------------------------------------------------------

_KNOWN_OPTIONS = {
    "set": {"field", "value", "copy_from", "override", "ignore_empty_value"},
    "rename": {"field", "target_field", "ignore_missing"},
    "date": {"field", "target_field", "formats"},
    "gsub": {"field", "target_field", "pattern", "replacement", "ignore_missing"},
    "lowercase": {"field", "target_field", "ignore_missing"},
    "append": {"field", "value", "allow_duplicates"},
    "join": {"field", "separator", "target_field"},
    "trim": {"field", "ignore_missing"},
    "split": {"field", "separator", "target_field"},
    "foreach": {"field", "processor", "ignore_missing"},
    "dot_expander": {"field", "path"},
    "remove": {"field", "ignore_missing"},
    "convert": {"field", "type", "ignore_missing"},
    "pipeline": {"name"},
}
_COMMON = {"if", "tag", "description", "ignore_failure", "on_failure"}


class Simulator:
    """Runs named pipelines over documents, as `_simulate` would."""

    def __init__(self, pipelines: dict[str, dict[str, Any]]) -> None:
        self.pipelines = pipelines

    def run(self, name: str, source: dict[str, Any], index: str = "logs-falconet.alerts-default") -> dict[str, Any]:
        doc = copy.deepcopy(source)
        ingest = {"timestamp": INGEST_TIMESTAMP}
        self._run_pipeline(name, doc, ingest)
        return doc

    def _run_pipeline(self, name: str, doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        body = self.pipelines.get(name)
        if body is None:
            raise IngestError(f"Pipeline processor configured for non-existent pipeline [{name}]")
        try:
            for proc in body["processors"]:
                self._processor(proc, doc, ingest, name)
        except IngestError as e:
            if not body.get("on_failure"):
                raise
            meta = {"on_failure_message": e.message, "on_failure_processor_type": e.processor,
                    "on_failure_processor_tag": e.tag, "on_failure_pipeline": e.pipeline or name}
            ingest.update(meta)
            for proc in body["on_failure"]:
                self._processor(proc, doc, ingest, name)
            for k in meta:
                ingest.pop(k, None)

    def _processor(self, proc: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any], pipeline: str) -> None:
        (kind, opts), = proc.items()
        unknown = set(opts) - _KNOWN_OPTIONS.get(kind, set()) - _COMMON
        if kind not in _KNOWN_OPTIONS or unknown:
            raise NotImplementedError(f"{kind} {sorted(unknown)} is not modelled")
        if "if" in opts and not condition(opts["if"], doc):
            return
        try:
            getattr(self, f"_{kind}")(opts, doc, ingest)
        except IngestError as e:
            if opts.get("ignore_failure"):
                return
            if not e.processor:
                e.processor, e.tag, e.pipeline = kind, opts.get("tag", ""), pipeline
            raise

    def _value(self, opts: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any], key: str) -> Any:
        v = _get(doc, ingest, opts[key])
        if v is _MISSING:
            if opts.get("ignore_missing"):
                return _MISSING
            raise IngestError(f"field [{opts[key].split('.')[-1]}] not present as part of path [{opts[key]}]")
        return v

    def _set(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        current = _get(doc, ingest, o["field"])
        if not o.get("override", True) and current is not _MISSING and current is not None:
            return
        if "copy_from" in o:
            v = _get(doc, ingest, o["copy_from"])
            if v is _MISSING and not o.get("ignore_empty_value"):
                raise IngestError(f"field [{o['copy_from']}] not present")
            v = None if v is _MISSING else copy.deepcopy(v)
        else:
            v = _render(copy.deepcopy(o["value"]), doc, ingest)
        if o.get("ignore_empty_value") and (v is None or v == ""):
            return
        _set(doc, ingest, o["field"], v)

    def _rename(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        v = self._value(o, doc, ingest, "field")
        if v is _MISSING:
            return
        if _get(doc, ingest, o["target_field"]) is not _MISSING:
            raise IngestError(f"field [{o['target_field']}] already exists")
        _remove(doc, o["field"])
        _set(doc, ingest, o["target_field"], v)

    def _date(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        v = self._value(o, doc, ingest, "field")
        assert o["formats"] == ["ISO8601"], "only ISO8601 is modelled"
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})",
                         str(v))
        if not m:
            raise IngestError(f"unable to parse date [{v}]")
        frac = (m.group(3) or "0").ljust(9, "0")
        tz = m.group(4) if m.group(4) != "Z" else "+00:00"
        when = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{tz}").astimezone(UTC)
        # Default output_format yyyy-MM-dd'T'HH:mm:ss.SSSXXX: milliseconds, Z for UTC.
        _set(doc, ingest, o.get("target_field", "@timestamp"),
             when.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac[:3]}Z")

    def _gsub(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        v = self._value(o, doc, ingest, "field")
        if v is _MISSING:
            return
        if not isinstance(v, str):
            raise IngestError(f"field [{o['field']}] of type [{type(v).__name__}] cannot be cast to [String]")
        _set(doc, ingest, o.get("target_field", o["field"]), re.sub(o["pattern"], o["replacement"], v))

    def _lowercase(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        v = self._value(o, doc, ingest, "field")
        if v is not _MISSING:
            _set(doc, ingest, o.get("target_field", o["field"]), str(v).lower())

    def _append(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        values = o["value"] if isinstance(o["value"], list) else [o["value"]]
        values = [_render(v, doc, ingest) for v in values]
        current = _get(doc, ingest, o["field"])
        lst = [] if current is _MISSING else (current if isinstance(current, list) else [current])
        for v in values:
            if o.get("allow_duplicates", True) or v not in lst:
                lst.append(v)
        _set(doc, ingest, o["field"], lst)

    def _join(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        v = self._value(o, doc, ingest, "field")
        if not isinstance(v, list):
            raise IngestError(f"field [{o['field']}] of type [{type(v).__name__}] cannot be cast to [List]")
        _set(doc, ingest, o.get("target_field", o["field"]), o["separator"].join(str(x) for x in v))

    def _trim(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        v = self._value(o, doc, ingest, "field")
        if v is not _MISSING:
            _set(doc, ingest, o["field"], v.strip(" \t\n\r\x0b\x0c"))

    def _split(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        v = self._value(o, doc, ingest, "field")
        parts = re.split(o["separator"], v)
        while parts and parts[-1] == "":       # Java's String.split drops trailing empty strings
            parts.pop()
        _set(doc, ingest, o.get("target_field", o["field"]), parts)

    def _foreach(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        v = self._value(o, doc, ingest, "field")
        if v is _MISSING:
            return
        out = []
        for item in v:
            ingest["_value"] = item
            self._processor(o["processor"], doc, ingest, "")
            out.append(ingest.pop("_value"))
        _set(doc, ingest, o["field"], out)

    def _dot_expander(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        holder = _get(doc, ingest, o["path"]) if "path" in o else doc
        if not isinstance(holder, dict):
            raise IngestError(f"field [{o['path']}] of type [{type(holder).__name__}] cannot be cast to [Map]")
        field = o["field"]
        if field not in holder:
            return
        full = f"{o['path']}.{field}" if "path" in o else field
        value = holder.pop(field)
        if _get(doc, ingest, full) is not _MISSING:
            current = _get(doc, ingest, full)
            _set(doc, ingest, full, [*(current if isinstance(current, list) else [current]), value])
            return
        parts = full.split(".")
        for i in range(1, len(parts)):
            partial = _get(doc, ingest, ".".join(parts[:i]))
            if partial is _MISSING:
                break
            if not isinstance(partial, dict):
                raise IngestError(f"cannot expand [{full}], because [{'.'.join(parts[:i])}] is not an object "
                                  "field, but a value field")
        _set(doc, ingest, full, value)

    def _remove(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        for f in o["field"] if isinstance(o["field"], list) else [o["field"]]:
            if not _remove(doc, f) and not o.get("ignore_missing"):
                raise IngestError(f"field [{f}] not present")

    def _convert(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        assert o["type"] == "string", "only type string is modelled"
        v = self._value(o, doc, ingest, "field")
        if v is _MISSING:
            return

        def one(x: Any) -> str:
            return ("true" if x else "false") if isinstance(x, bool) else str(x)
        _set(doc, ingest, o.get("target_field", o["field"]), [one(x) for x in v] if isinstance(v, list) else one(v))

    def _pipeline(self, o: dict[str, Any], doc: dict[str, Any], ingest: dict[str, Any]) -> None:
        self._run_pipeline(o["name"], doc, ingest)
