"""Entry point of the `cpv` command: global options and the one error boundary.

:func:`main` runs the click group inside a single ``try``. A :class:`~cpv.errors.CPVError`
becomes ``cpv: error: <message>`` and ``  hint: <hint>`` on stderr (or one JSON error document
on stdout with ``--json``) and the exit code of :func:`cpv.cli.errors.exit_code_for`; a usage
error exits 2; Ctrl-C exits 130. ``--debug`` (or ``CPV_DEBUG=1``) also prints the traceback.
Any other exception is a bug in cpv and propagates with its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import click

from cpv._version import __version__
from cpv.cli.commands import COMMANDS, State, common, epilog
from cpv.cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, exit_code_for
from cpv.cli.session import session
from cpv.errors import CPVError

_TRUE = ("1", "true", "yes", "on")


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=epilog([
        ("cpv init", "make this folder a workspace (local store, no cloud account needed)"),
        ('cpv push -m "first" --metric loss=0.31 --tag', "upload model/ and data/, tag v0.1"),
        ("cpv versions", "list versions with their metrics"),
        ("cpv checkout v0.1", "go back to v0.1"),
        ("git clone URL ws && cd ws && cpv pull v0.1", "the same version on another machine"),
    ], codes=(0, 1, 2, 3, 4, 10, 11, 12, 130)),
)
@click.option("-C", "directory", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="Run as if cpv was started in DIR (like git -C).")
@click.option("--debug", is_flag=True, help="Show the traceback of errors (or CPV_DEBUG=1).")
@click.version_option(__version__, "-V", "--version", prog_name="cpv")
@common
@click.pass_context
def cli(ctx: click.Context, directory: str | None, debug: bool) -> None:
    """cpv: version model checkpoints and data sets.

    Git holds the history (small manifests, tags v0.1 ... v0.10, metrics);
    a store (S3 or a local folder) holds the bytes in content-addressed chunks,
    so a new version uploads only what changed.

    Global options go before the command; --json, -q and -v also work after it.
    """
    state = ctx.ensure_object(State)
    state.debug = state.debug or debug
    state.apply()
    if directory is not None:
        os.chdir(Path(directory))


for _command in COMMANDS:
    cli.add_command(_command)
cli.add_command(session)


def _guess_flags(args: Sequence[str]) -> State:
    """Flags needed before click has parsed anything (an error may come first)."""
    state = State()
    state.json_mode = "--json" in args
    state.debug = "--debug" in args or os.environ.get("CPV_DEBUG", "").lower() in _TRUE
    state.quiet = "-q" in args or "--quiet" in args
    state.out.json_mode = state.json_mode
    state.out.quiet = state.quiet
    return state


def run(args: Sequence[str]) -> int:
    """Run `cpv` with ``args`` and return its exit code (the error boundary)."""
    state = _guess_flags(args)
    logger = logging.getLogger("cpv")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        return _run(args, state)
    finally:
        # Leave logging as found: run() may be called in-process (tests, embedding).
        logger.handlers[:], logger.level, logger.propagate = saved


def _run(args: Sequence[str], state: State) -> int:
    try:
        code = cli.main(args=list(args), prog_name="cpv", standalone_mode=False, obj=state)
    except CPVError as exc:
        code = exit_code_for(exc)
        if state.debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        state.out.error(kind=type(exc).__name__, message=exc.message, hint=exc.hint,
                        exit_code=code, result=state.result)
        return code
    except click.exceptions.Abort as exc:
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        code = EXIT_INTERRUPTED if interrupted else EXIT_ERROR
        state.out.error(kind="Interrupted" if interrupted else "Aborted",
                        message="interrupted" if interrupted else "aborted",
                        hint="", exit_code=code)
        return code
    except click.ClickException as exc:
        code = exc.exit_code if exc.exit_code else EXIT_USAGE
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "cpv"
        state.out.error(kind=type(exc).__name__, message=exc.format_message(),
                        hint=f"see '{command} --help'", exit_code=code)
        return code
    except KeyboardInterrupt:
        state.out.error(kind="Interrupted", message="interrupted", hint="",
                        exit_code=EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    return int(code or 0)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``cpv = cpv.cli.main:main``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # `cpv versions | head`: the reader left; stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_ERROR
    if code == EXIT_INTERRUPTED:
        # Ctrl-C: the engine has cleaned up (temp files gone, uploads aborted, nothing
        # published); a normal interpreter shutdown of botocore's objects can take seconds
        # more, and the user is waiting.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
