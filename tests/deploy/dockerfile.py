"""A reader of Dockerfiles and .dockerignore files, enough to check what an image build uses.

Instructions are split as the Dockerfile reference describes: `#` comment lines, `\\` line
continuations, the first word is the instruction (case-insensitive), JSON (exec) or shell form
arguments. .dockerignore patterns follow Go's filepath.Match plus `**`, with `!` exceptions;
the last matching pattern wins.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Instruction:
    """One instruction: its keyword (upper case), its argument text, and the line it starts on."""

    keyword: str
    text: str
    line: int

    @property
    def args(self) -> list[str]:
        """Exec-form JSON arguments, or the shell-form text split like a shell would."""
        stripped = self.text.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                value = None
            if isinstance(value, list):
                return [str(v) for v in value]
        return shlex.split(stripped)

    def flags(self) -> dict[str, str]:
        """`--name=value` options before the arguments (COPY --chown=..., FROM --platform=...)."""
        return {m.group(1): m.group(2) for m in re.finditer(r"--([a-z-]+)=(\S+)", self.text)}

    def positional(self) -> list[str]:
        return [a for a in self.args if not a.startswith("--")]


def parse(path: str | Path) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined."""
    out: list[Instruction] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        start = i + 1
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text = line
        while text.rstrip().endswith("\\") and i < len(lines):
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                continue
            text = text.rstrip()[:-1] + " " + nxt
        keyword, _, rest = text.strip().partition(" ")
        out.append(Instruction(keyword.upper(), rest.strip(), start))
    return out


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """`ARG NAME=default` values (an ARG without a default is left out)."""
    out = {}
    for i in instructions:
        if i.keyword == "ARG" and "=" in i.text:
            name, _, value = i.text.strip().partition("=")
            out[name] = value.strip().strip('"')
    return out


def expand(text: str, args: dict[str, str]) -> str:
    """`$NAME` and `${NAME}` replaced as the builder replaces build arguments."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def ignore_patterns(path: str | Path) -> list[str]:
    """The patterns of a .dockerignore (comments and blank lines dropped, leading / removed)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        body = line[1:] if neg else line
        body = body.lstrip("/").rstrip("/")
        out.append(("!" if neg else "") + body)
    return out


def _match(pattern: str, rel: str) -> bool:
    if "**" in pattern:
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        return re.fullmatch(regex, rel) is not None
    return fnmatch.fnmatchcase(rel, pattern) and rel.count("/") == pattern.count("/")


def is_ignored(rel: str, patterns: list[str]) -> bool:
    """Whether `rel` (a path in the build context, / separated) is left out of the context.

    A path is also left out when one of its parent directories is.
    """
    parts = rel.strip("/").split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        body = pat[1:] if neg else pat
        if any(_match(body, c) for c in candidates):
            ignored = not neg
    return ignored
