"""The one rule for text a client sends: no control characters.

Applied to every JSON string (``InputSchema``), every path and query parameter and the
headers the API reads. PostgreSQL cannot store NUL at all, a terminal or a log viewer
interprets the others, and lone surrogates cannot be encoded: each is a 400 naming the
field, never a 500 from deep in a driver. Tab, line feed and carriage return stay
allowed, since commands and descriptions span lines.
"""

from __future__ import annotations

import re

_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# Names (metric names, tags' keys) are single-line: no control character at all.
_FORBIDDEN_IN_NAMES = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

MESSAGE = "must not contain control characters"


def find_control_character(value: str, *, name: bool = False) -> str | None:
    """The first forbidden character of ``value`` as ``U+XXXX``, or None."""
    found = (_FORBIDDEN_IN_NAMES if name else _FORBIDDEN).search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def check_text(value: str, *, name: bool = False) -> str:
    """``value`` unchanged, or ValueError saying which character is forbidden."""
    bad = find_control_character(value, name=name)
    if bad is not None:
        raise ValueError(f"{MESSAGE} (found {bad})")
    return value
