"""JSON that came from outside: one hardened decoder for every input the sensor does not write
itself (audit webhook bodies, audit log lines, recordings given to `replay`).

Python's own `json.loads` lets three kinds of hostile text through as exceptions a user should
never see: nesting deep enough to exhaust the interpreter's stack (RecursionError), integers of
more digits than `int()` converts (ValueError from the int-string limit), and NaN/Infinity, which
are not JSON at all. `loads` refuses each of them, as it refuses malformed text, with a
`DecodeError` (a ValueError) whose message is one sentence.
"""

from __future__ import annotations

import json
from typing import Any

MAX_INT_DIGITS = 4300       # what int() converts by default (sys.get_int_max_str_digits)


class DecodeError(ValueError):
    """Text that is not acceptable JSON; the message says why and where."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise DecodeError(f"an integer of {len(text.lstrip('-'))} digits (more than {MAX_INT_DIGITS})")
    return int(text)


def _no_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not a JSON value")


DECODER = json.JSONDecoder(parse_int=_parse_int, parse_constant=_no_constant)
"""The decoder `loads` uses, for callers that walk a document piece by piece (`raw_decode`)."""


def loads(text: str | bytes) -> Any:
    """One JSON document; DecodeError (never another exception) when it is not valid JSON."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return DECODER.decode(text)
    except UnicodeDecodeError as e:
        raise DecodeError(f"not valid JSON: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DecodeError(f"not valid JSON: {e}") from None
    except RecursionError:
        raise DecodeError("not valid JSON here: nested too deeply") from None
    except DecodeError as e:
        raise DecodeError(f"not valid JSON here: {e}") from None
