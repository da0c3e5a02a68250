"""The ``kopsy`` entry point.

Commands are loaded lazily from ``COMMANDS`` so that ``kopsy --help`` never imports boto3 or
paramiko. This module is where a ``KopsyError`` becomes ``Error: <message>`` on one line and an
exit code; with ``--debug`` (or ``KOPSY_DEBUG=1``) the traceback is shown too.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
from typing import Any, NoReturn

import click

from kopsy import __version__
from kopsy.errors import ExitCode, KopsyError

# verb -> (module, one-line help). Each module defines a click command or group named ``command``.
COMMANDS: dict[str, tuple[str, str]] = {
    "create": ("kopsy.cli.create", "Create a cluster spec (and its PKI) in the state store."),
    "get": ("kopsy.cli.get", "List clusters, instance groups, secrets and instances."),
    "edit": ("kopsy.cli.edit", "Edit a cluster or instance group in $EDITOR."),
    "replace": ("kopsy.cli.replace", "Replace cluster and instance-group specs from a file."),
    "update": ("kopsy.cli.update", "Plan (and with --yes apply) the cloud resources of a cluster."),
    "delete": ("kopsy.cli.delete", "Delete a cluster (its cloud resources and state), or an instance group."),
    "validate": ("kopsy.cli.validate", "Check over SSH that every node is up and Ready."),
    "upgrade": ("kopsy.cli.upgrade", "Move a cluster's spec to a newer Kubernetes version (one minor at a time)."),
    "rolling-update": ("kopsy.cli.rolling", "Replace instances whose launch template changed (drain, surge, validate)."),
    "backup": ("kopsy.cli.backup", "Snapshot a cluster's etcd into the state store now."),
    "restore": ("kopsy.cli.restore", "Restore a cluster's etcd from a snapshot in the state store."),
    "export": ("kopsy.cli.export", "Export an admin kubeconfig for a cluster."),
    "sandbox": ("kopsy.cli.sandbox", "Run a local AWS emulation and node stand-ins (no AWS account needed)."),
    "toolbox": ("kopsy.cli.toolbox", "Tools for bug reports and operators: dump, operator-policy."),
    "version": ("kopsy.cli.version", "Print kopsy's version and the Kubernetes versions it supports."),
    "completion": ("kopsy.cli.completion", "Print a shell completion script (bash, zsh, fish)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _) in COMMANDS.items() if importlib.util.find_spec(module) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        try:
            module = importlib.import_module(entry[0])
        except ModuleNotFoundError as exc:
            if exc.name == entry[0]:
                return None
            raise
        return module.command  # type: ignore[no-any-return]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table, so listing commands imports none of them.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="kopsy", message="kopsy %(version)s")
@click.option("--state", "state", metavar="URL", envvar="KOPSY_STATE_STORE", show_envvar=True,
              help="State store: s3://bucket[/prefix] or file:///path.")
@click.option("--name", "cluster_name", metavar="NAME", envvar="KOPSY_CLUSTER_NAME", show_envvar=True,
              help="Cluster name, when not given as an argument.")
@click.option("--debug", is_flag=True, envvar="KOPSY_DEBUG", help="Show tracebacks and AWS call logs.")
@click.pass_context
def cli(ctx: click.Context, state: str | None, cluster_name: str | None, debug: bool) -> None:
    """kopsy turns a short command into a Kubernetes cluster on AWS.

    \b
    Typical use:
      kopsy create cluster demo.example.com --zones us-east-1a --state s3://my-state
      kopsy update cluster demo.example.com --yes
      kopsy validate cluster --wait 10m
      kopsy delete cluster demo.example.com --yes
    """
    from kopsy.cli.context import Options

    ctx.obj = Options(state=state, cluster_name=cluster_name, debug=debug)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("KOPSY_DEBUG", "").lower() in ("1", "true", "yes")


GLOBAL_VALUE_FLAGS = ("--state", "--name")
GLOBAL_BOOL_FLAGS = ("--debug",)


def hoist_global_flags(args: list[str]) -> list[str]:
    """kops accepts --state/--name anywhere (`kopsy get clusters --state s3://x`): move them in
    front of the subcommand, where click expects them. Nothing after a bare ``--`` is touched."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        flag = arg.split("=", 1)[0]
        if flag in GLOBAL_VALUE_FLAGS and "=" in arg:
            front.append(arg)
        elif arg in GLOBAL_VALUE_FLAGS and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        elif arg in GLOBAL_BOOL_FLAGS:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main(argv: list[str] | None = None) -> None:
    """The console script. Run as one (no ``argv``), it ends with ``os._exit``: tearing down an
    interpreter holding boto3 and its clients costs ~0.13 s, and every file and lock is already
    closed by then. Called with ``argv`` (tests, embedding), it raises ``SystemExit`` as usual."""
    if argv is None:
        _tune_gc()
    try:
        _main(argv)
    except SystemExit as exc:
        if argv is not None:
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            click.echo(str(exc.code), err=True)
        _exit_now(code)


# The cyclic GC's generation-0 threshold (CPython's default is 700 allocations): a collection
# starts once that many more container objects were made than freed. A run builds ~100,000 that
# live to its end (botocore's service models, parsed answers) and frees almost none of them in
# cycles, so every collection is wasted work, and each costs in proportion to what it scans: at
# 700, ~270 passes took ~0.15 s of a no-op update's ~0.8 s of CPU; at 10,000, 9 passes still took
# ~48 ms (ha no-op, docs/performance.md). At 100,000 an update, a no-op or a delete of the
# benchmark's shapes ends before the first pass. The collector stays on, so the long commands
# (validate --wait, rolling-update) stay bounded in memory: cyclic garbage waits for at most
# ~100,000 allocations (a few MB) before it is collected (tests/cli/test_gc_policy.py).
GC_THRESHOLDS = (100_000, 50, 50)


def _tune_gc() -> None:
    import gc

    gc.set_threshold(*GC_THRESHOLDS)


def _exit_now(code: int) -> None:
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (kopsy ... | head): nothing left to say
            pass
    os._exit(code)


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP, raised in the main thread: like Ctrl-C, it unwinds through
    every ``finally`` (running API calls finish, no new work starts, the cluster lock is
    released) and the command exits with 128 + the signal number (130, 143, 129)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _install_signal_handlers() -> dict[int, Any]:
    """Raise ``Interrupted`` at the first signal; later ones are noted, not acted on, so that a
    second Ctrl-C cannot cut the clean-up (releasing the lock) short. SIGKILL still ends it."""
    received: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if received:
            try:
                os.write(2, b"kopsy: still stopping (releasing the lock); send SIGKILL to stop at once\n")
            except OSError:
                pass
            return
        received.append(signum)
        raise Interrupted(signum)

    previous: dict[int, Any] = {}
    try:
        for sig in HANDLED_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (kopsy embedded): leave signals alone
        pass
    return previous


def _interrupted(exc: BaseException) -> NoReturn:
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    name = signal.Signals(signum).name
    click.echo("Interrupted." if signum == signal.SIGINT else f"Interrupted ({name}).", err=True)
    sys.exit(128 + int(signum))


def _main(argv: list[str] | None = None) -> None:
    previous = _install_signal_handlers()
    try:
        _run(argv)
    finally:
        for sig, handler in previous.items():
            try:
                signal.signal(sig, handler)
            except (ValueError, TypeError):
                pass


def _run(argv: list[str] | None = None) -> None:
    args = hoist_global_flags(list(sys.argv[1:] if argv is None else argv))
    debug = _debug_requested(args)
    try:
        cli.main(args=args, prog_name="kopsy", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # One line, like every other error: what is wrong, and where the help is.
        where = exc.ctx.command_path if exc.ctx is not None else "kopsy"
        click.echo(f"Error: {_one_line(exc.format_message())} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        # click turns KeyboardInterrupt (and so a signal) into Abort; EOF at a prompt is a real abort.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):
            _interrupted(cause)
        click.echo("Aborted.", err=True)
        sys.exit(ExitCode.FAILURE)
    except KopsyError as exc:
        if debug:
            _print_traceback()
        click.echo(f"Error: {_safe(exc.message)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except Exception as exc:  # a bug or an untranslated SDK error: still one line unless --debug
        if debug:
            _print_traceback()
        from kopsy.cli.sdkerrors import explain

        known = explain(exc)
        if known is not None:
            click.echo(f"Error: {_safe(known.message)}", err=True)
            sys.exit(known.exit_code)
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {_one_line(exc)} (re-run with --debug for details)", err=True
        )
        sys.exit(ExitCode.FAILURE)
    sys.exit(ExitCode.OK)


def _print_traceback() -> None:
    import traceback  # only with --debug: importing it costs every run ~5 ms

    traceback.print_exc()


def _safe(message: str) -> str:
    """One line, whatever store values or file names the message carries: control characters
    (a newline in a lock holder's name) are shown escaped, so no second line can be forged."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in message)


def _one_line(exc: Any) -> str:
    return " ".join(str(exc).split())[:300]


command = cli
