"""program: alerts fed to a shell command on its standard input, one line each.

keep_alive: true starts the program once and writes every alert to it, a line at a time (a program
that exits is started again and the alert it missed is written to the new one). keep_alive: false
starts the program for each alert, writes the alert, closes its input and waits for it (up to
`timeout`; a program still running then is killed). The program inherits the sensor's stdout and
stderr, as with Falco's program_output.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
from typing import TYPE_CHECKING

from sensor.credentials import child_environment
from sensor.errors import ConfigError, UnavailableError
from sensor.outputs.channel import DeliveryError, Encoder
from sensor.outputs.settings import ProgramSettings

if TYPE_CHECKING:
    from sensor.outputs.build import BuildContext

log = logging.getLogger("falconet.outputs")



class ProgramTransport:
    """Runs `program` with /bin/sh, once (keep_alive) or per record."""

    name = "program"

    def __init__(self, program: str, keep_alive: bool, timeout: float = 30.0) -> None:
        self.program = program
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.starts = 0
        self.failures = 0          # per-alert programs that exited non-zero or were killed
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        """True while the long-lived program (keep_alive) runs."""
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        try:
            # Without the sensor's secrets (FLUENT_SHARED_KEY, FALCONET_PASSWORD, ...): the program
            # is given alerts, not the keys to the other channels.
            return subprocess.Popen(["/bin/sh", "-c", self.program], stdin=subprocess.PIPE,
                                    restore_signals=True, start_new_session=True, env=child_environment())
        except OSError as e:
            raise DeliveryError(f"cannot start program {self.program!r}: {e.strerror}") from e

    def send(self, records: list[bytes]) -> int:
        if self.keep_alive:
            return self._send_long_lived(records)
        for i, r in enumerate(records):
            try:
                self._run_once(r)
            except DeliveryError as e:
                raise DeliveryError(str(e), delivered=i) from e
        return 0

    def _send_long_lived(self, records: list[bytes]) -> int:
        for i, r in enumerate(records):
            proc = self._proc
            if proc is None or proc.poll() is not None:
                if proc is not None:
                    log.warning("output program: %r exited with %s; starting it again", self.program,
                                proc.returncode)
                proc = self._proc = self._spawn()
            try:
                proc.stdin.write(r)          # type: ignore[union-attr]
                proc.stdin.flush()           # type: ignore[union-attr]
            except (BrokenPipeError, OSError, ValueError) as e:
                self._reap()
                raise DeliveryError(f"program {self.program!r} stopped reading: {e}", delivered=i) from e
        return 0

    def _run_once(self, record: bytes) -> None:
        proc = self._spawn()
        try:
            proc.communicate(record, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            proc.wait()
            self.failures += 1
            log.error("output program: %r still ran after %gs and was killed", self.program, self.timeout)
            return
        except BrokenPipeError as e:
            proc.wait()
            raise DeliveryError(f"program {self.program!r} exited before reading the alert") from e
        if proc.returncode:
            # It received the alert; running it again could act twice (post twice to a chat).
            self.failures += 1
            log.error("output program: %r exited with %d", self.program, proc.returncode)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)    # the shell and what it started
        except OSError:
            proc.kill()

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()               # type: ignore[union-attr]
        except OSError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            proc.wait()

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        self._reap()


def transport(settings: ProgramSettings, ctx: BuildContext) -> tuple[ProgramTransport, Encoder]:
    check(settings)
    return (ProgramTransport(settings.program, settings.keep_alive, settings.timeout),
            ctx.renderer.line_encoder(settings.format))


# What /bin/sh runs itself: POSIX special and regular built-ins (and common ones) need no file.
_BUILTINS = frozenset({
    ".", ":", "break", "continue", "eval", "exec", "exit", "export", "readonly", "return", "set", "shift",
    "times", "trap", "unset", "alias", "bg", "cd", "command", "false", "fc", "fg", "getopts", "hash",
    "jobs", "kill", "newgrp", "pwd", "read", "true", "type", "ulimit", "umask", "unalias", "wait", "echo",
    "printf", "test", "[",
})
_BEFORE_COMMAND = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}"})
_END_OF_COMPOUND = frozenset({"fi", "done", "esac"})
_NOT_A_COMMAND_NEXT = frozenset({"for", "case", "select"})     # a name or word follows, not a command
_SEPARATORS = frozenset({"|", "||", "&&", ";", "&", "(", ")", ";;", "|&"})


def commands_of(program: str) -> list[str]:
    """The command word of every simple command in a shell line (`jq ... | curl ...` -> jq, curl);
    ValueError when the line does not parse (an unclosed quote)."""
    lexer = shlex.shlex(program, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    expecting = True                       # the next word is a command word
    for token in lexer:
        if token in _SEPARATORS:
            expecting = True
        elif not expecting:
            continue
        elif token in _BEFORE_COMMAND or ("=" in token and not token.startswith("=")):
            continue                       # `while cmd`, `VAR=value cmd`
        elif token in _NOT_A_COMMAND_NEXT or token in _END_OF_COMPOUND:
            expecting = False
        else:
            words.append(token)
            expecting = False
    return words


def check(settings: ProgramSettings) -> None:
    """Every command the program line names can be run: a path to an executable, a name on PATH,
    or a shell built-in."""
    program = settings.program
    where = f"'program_output.program' ({settings.origins('program_output.program')})"
    try:
        words = commands_of(program)
    except ValueError as e:
        raise ConfigError(f"program_output: {where} is not a valid shell command line: {e}") from None
    for word in words:
        if word in _BUILTINS or "$" in word or "`" in word or word.startswith((">", "<")):
            continue
        found = os.access(word, os.X_OK) and os.path.isfile(word) if "/" in word else shutil.which(word)
        if not found:
            raise UnavailableError(f"program_output: {where} runs {word}, which "
                                   + ("is not an executable file" if "/" in word else "is not on PATH"),
                                   hint="install it, or fix program_output.program")
