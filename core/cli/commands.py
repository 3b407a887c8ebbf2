"""`behaviorlens` command line: the top-level parser, dispatch to the command groups, exit codes.

Exit codes: 0 success, 2 unusable input or bad option (one clear message on
stderr, never a traceback), 1 a lookup that found nothing, 3 an internal error
(one line; ``BEHAVIORLENS_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from core.cli import data as cli_data
from core.cli import explain as cli_explain
from core.cli import fusion as cli_fusion
from core.cli import influence as cli_influence
from core.cli import runs as cli_runs
from core.cli import synth as cli_synth
from core.errors import BehaviorLensError, NotFoundError
from core.store.workspace import Workspace

DEBUG_ENV = "BEHAVIORLENS_DEBUG"
INTERNAL_ERROR = 3


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="workspace folder (default: $BEHAVIORLENS_WORKSPACE or ./workspace)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object instead of text"
    )
    top = argparse.ArgumentParser(
        prog="behaviorlens", parents=[common], description="Understand how user behavior drives recommendations."
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_data.add_parsers(sub, common)
    cli_runs.add_parsers(sub, common)
    cli_explain.add_parsers(sub, common)
    cli_influence.add_parsers(sub, common)
    cli_fusion.add_parsers(sub, common)
    cli_synth.add_parsers(sub, common)
    return top


def _run(args: argparse.Namespace) -> int:
    if args.command in cli_synth.COMMANDS:  # needs no workspace: dispatched before one is opened
        return cli_synth.run(args, getattr(args, "json", False))
    ws = Workspace(getattr(args, "workspace", None))
    as_json = getattr(args, "json", False)
    if args.command in cli_runs.COMMANDS:
        return cli_runs.run(args, ws, as_json)
    if args.command in cli_explain.COMMANDS:
        return cli_explain.run(args, ws, as_json)
    if args.command in cli_influence.COMMANDS:
        return cli_influence.run(args, ws, as_json)
    if args.command in cli_fusion.COMMANDS:
        return cli_fusion.run(args, ws, as_json)
    return cli_data.run(args, ws, as_json)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``behaviorlens`` console script."""
    if argv is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a worker of --nproc-per-node: its arguments
        from core.runs.background import WORKER_ENV

        if os.environ.get(WORKER_ENV):
            argv = [str(a) for a in json.loads(os.environ[WORKER_ENV])]
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a multi-process launch hands its workers
    try:
        return _run(args)
    except NotFoundError as exc:
        return _fail(str(exc), 1)
    except BehaviorLensError as exc:
        return _fail(str(exc), 2)
    except OSError as exc:  # unreadable file, full disk, permission denied
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}: check the path and its permissions", 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # a bug: one line, never a traceback, unless debugging
        if os.environ.get(DEBUG_ENV):
            raise
        return _fail(
            f"internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"rerun with {DEBUG_ENV}=1 for details and report it",
            INTERNAL_ERROR,
        )


def _fail(message: str, code: int) -> int:
    print(f"behaviorlens: {message}", file=sys.stderr)
    return code
