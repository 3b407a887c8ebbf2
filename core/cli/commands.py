"""`behaviorlens` command line: the only module that reads argv.

Exit codes: 0 success, 2 unusable input or bad option (one clear message on
stderr, never a traceback), 1 a lookup that found nothing, 3 an internal error
(one line; ``BEHAVIORLENS_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from core.cli import explain as cli_explain
from core.cli import influence as cli_influence
from core.cli import runs as cli_runs
from core.cli import synth as cli_synth
from core.errors import BehaviorLensError, DataError, NotFoundError
from core.ingest.mapping import parse_pairs
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.ingest.sample import SAMPLE_DATASET, ensure_sample_dataset
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
    _ingest_parser(sub, common)
    sub.add_parser("datasets", parents=[common], help="list the datasets in the workspace")
    sample = sub.add_parser("sample", parents=[common], help="ingest the bundled sample dataset")
    sample.add_argument("--force", action="store_true", help="re-ingest even if it is there")
    cli_runs.add_parsers(sub, common)
    cli_explain.add_parsers(sub, common)
    cli_influence.add_parsers(sub, common)
    cli_synth.add_parsers(sub, common)
    return top


def _ingest_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ingest", parents=[common], help="read, validate and store an event log")
    p.add_argument("events", help="event log: CSV/TSV, Parquet or JSON lines, optionally .gz")
    p.add_argument("--items", metavar="FILE", help="item catalogue whose text columns become item text")
    p.add_argument("--items-id", metavar="COLUMN", help="the item ID column of the items file")
    p.add_argument("--columns", metavar="a,b,c", help="names for the columns of a headerless file")
    p.add_argument(
        "--map",
        metavar="FIELD=COLUMN",
        action="append",
        default=[],
        help="map a field (user_id, item_id, timestamp, behavior, value, text) to a column; "
        "FIELD= unmaps it (repeatable)",
    )
    p.add_argument("--behavior-codes", metavar="0=click,1=cart,...", help="numeric behavior codes")
    p.add_argument("--default-behavior", metavar="B", help="behavior of every row when no behavior column")
    p.add_argument("--rating-range", metavar="LO,HI", default="0,5", help="valid rating values (default 0,5)")
    p.add_argument("--time-format", metavar="FMT", help="strptime format for timestamps, e.g. %%d/%%m/%%Y")
    p.add_argument("--drop-duplicates", action="store_true", help="reject exact duplicate rows")
    p.add_argument("--name", help="dataset name (default: the file name)")
    p.add_argument("--keep-ids", action="store_true", help="store raw user IDs (default: keyed pseudonyms)")


def _options(args: argparse.Namespace) -> IngestOptions:
    mapping: dict[str, str | None] = {}
    for item in args.map:
        fld, sep, col = item.partition("=")
        if not sep:
            raise DataError(f"--map {item!r}: expected FIELD=COLUMN, e.g. --map user_id=visitorid")
        mapping[fld.strip()] = col.strip() or None
    lo_hi = [x.strip() for x in args.rating_range.split(",")]
    try:
        rating_range = (float(lo_hi[0]), float(lo_hi[1]))
    except (ValueError, IndexError) as exc:
        raise DataError(f"--rating-range {args.rating_range!r}: expected LO,HI such as 1,5") from exc
    return IngestOptions(
        name=args.name,
        columns=[c.strip() for c in args.columns.split(",")] if args.columns else None,
        mapping=mapping,
        behavior_codes=parse_pairs(args.behavior_codes, "--behavior-codes") if args.behavior_codes else None,
        keep_ids=args.keep_ids,
        default_behavior=args.default_behavior,
        rating_range=rating_range,
        time_format=args.time_format,
        drop_duplicates=args.drop_duplicates,
        items_id_column=args.items_id,
    )


def _print_ingest(report: dict[str, Any]) -> None:
    print(
        f"dataset {report['dataset']!r}: {report['rows_accepted']:,} of {report['rows_read']:,} rows "
        f"accepted, {report['rows_rejected']:,} rejected ({report['id_mode']} user IDs)"
    )
    for reason, n in report["rejected_by_reason"].items():
        print(f"  rejected {n:,} x {reason}")
    print(f"  users {report['users']:,}, items {report['items']:,}, duplicates {report['duplicates']:,}")
    print("  behaviors: " + ", ".join(f"{b} {n:,}" for b, n in report["behaviors"].items()))
    for warning in report["warnings"]:
        print(f"  warning: {warning}")


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
    if args.command == "ingest":
        report = ingest(ws, args.events, args.items, _options(args)).to_dict()
        print(json.dumps(report, default=str)) if as_json else _print_ingest(report)
    elif args.command == "datasets":
        frame = ws.list_datasets()
        if as_json:
            print(frame.to_json(orient="records", date_format="iso"))
        else:
            print(frame.to_string(index=False) if len(frame) else "no datasets")
    elif args.command == "sample":
        ingested = ensure_sample_dataset(ws, force=args.force)
        if as_json:
            print(json.dumps(ingested.to_dict() if ingested else {"dataset": SAMPLE_DATASET, "existing": True}))
        else:
            print(f"dataset {SAMPLE_DATASET!r} is in {ws.root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``behaviorlens`` console script."""
    args = _parser().parse_args(argv)
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
