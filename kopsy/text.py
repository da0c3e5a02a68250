"""Showing untrusted text (store values, key names, file content) on one line.

A value read from the state store or a file is printed through ``printable``: a newline or
other control character in it becomes a visible escape, so a lock holder named
``"mallory\\nError: all good"`` cannot forge a second output line.
"""

from __future__ import annotations

import unicodedata

MAX_SHOWN = 200


def printable(value: object, limit: int = MAX_SHOWN) -> str:
    """``value`` as text with control, format and line-separator characters escaped
    (``\\n``, ``\\x1b``, ``\\u2028``), cut to ``limit`` characters."""
    text = str(value)
    out: list[str] = []
    for ch in text[: limit + 1]:
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") and ch != " ":
            out.append(ch.encode("unicode_escape").decode("ascii") if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    shown = "".join(out)
    return shown if len(text) <= limit else shown[: limit] + "..."
