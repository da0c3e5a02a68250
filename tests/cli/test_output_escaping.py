"""Values read from the store are printed so that a newline or control character cannot forge
an output line (issue 19): tables, Error/Warning lines and the lock holder."""

from __future__ import annotations

from kopsy.cli.main import _safe
from kopsy.cli.output import table
from kopsy.errors import LockHeld
from kopsy.text import printable

FORGED = "mallory\nError: all good\r\x1b[2J\u2028x"


def test_a_table_cell_cannot_forge_a_line() -> None:
    out = table(["NAME", "ZONES"], [[FORGED, "us-east-1a"]])
    assert len(out.splitlines()) == 2 and "\x1b" not in out and "\r" not in out
    assert "mallory\\nError: all good" in out


def test_an_error_line_stays_one_line() -> None:
    shown = _safe(f"cluster x is broken: {FORGED}")
    assert len(shown.splitlines()) == 1 and "\x1b" not in shown


def test_the_lock_holder_is_printed_escaped_and_cut() -> None:
    message = LockHeld("demo", {"holder": FORGED * 20, "host": "h\x00", "operation": "op\n", "acquired": "t", "expires": "t"}).message
    assert len(message.splitlines()) == 1 and "\x00" not in message
    assert "mallory\\nError: all good" in message and len(message) < 600


def test_printable_escapes_and_cuts() -> None:
    assert printable("a\nb\\c") == "a\\nb\\\\c"
    assert printable("x" * 300, 10) == "x" * 10 + "..."
