"""kopsy's console script run in this process, for the wrappers that measure it
(``bench/_profiled.py``, ``bench/_breakdown.py``)."""

from __future__ import annotations


def run_console_script(args: list[str]) -> int:
    """``kopsy ARGS`` as the console script runs it (its GC thresholds included); its exit code.
    Called with ``args``, ``main`` raises ``SystemExit`` instead of ending the process, so the
    caller can write its figures first."""
    from kopsy.cli import main as cli_main

    cli_main._tune_gc()
    try:
        cli_main.main(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0
