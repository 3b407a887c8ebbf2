"""`behaviorlens ingest | datasets | sample | forget`: the data commands of the CLI (no torch is imported for them).

``sample --train`` also starts the demo model's training in a detached process
(:mod:`core.runs.background`), which runs the hidden command ``train-background --run ID``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.errors import BehaviorLensError, DataError, UnmappedFieldError, UnusableFileError
from core.ingest.mapping import parse_pairs
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.ingest.sample import SAMPLE_DATASET, ensure_sample_dataset
from core.runs.background import (
    DEMO_CONFIG_ENV,
    DEMO_EPOCHS,
    FOLLOWER,
    WORKER_COMMAND,
    demo_settings,
    ensure_training,
    train_recorded,
)
from core.runs.forget import ForgetReport, forget_user
from core.runs.records import RUNNING
from core.store import audit
from core.store.versions import dataset_versions
from core.store.workspace import Workspace

COMMANDS = ("ingest", "datasets", "sample", "forget", "audit", WORKER_COMMAND)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the data subcommands on the top-level subparsers."""
    _ingest_parser(sub, common)
    sub.add_parser("datasets", parents=[common], help="list the datasets in the workspace")
    sample = sub.add_parser("sample", parents=[common], help="ingest the bundled sample dataset")
    sample.add_argument("--force", action="store_true", help="re-ingest even if it is there")
    sample.add_argument(
        "--train",
        action="store_true",
        help="then train the demo model on it in a background process, unless a run of it is done or running "
        f"(settings: ${DEMO_CONFIG_ENV}, a JSON file as `train --config` takes; default: the default "
        f"model, {DEMO_EPOCHS} epochs)",
    )
    forget = sub.add_parser(
        "forget",
        parents=[common],
        help="delete one user's events and everything derived from them that names them; mark the runs trained on them",
    )
    forget.add_argument("--user", required=True, metavar="ID", help="the original user ID or its pseudonym")
    forget.add_argument("--dataset", metavar="D", help="only this dataset (default: every dataset)")
    trail = sub.add_parser("audit", parents=[common], help="who ingested, trained, exported, forgot what, and when")
    trail.add_argument("--limit", type=int, default=50, metavar="N", help="the newest N entries (default 50)")
    worker = sub.add_parser(WORKER_COMMAND, parents=[common])  # no help: internal, hidden from --help
    worker.add_argument("--run", required=True)


def _ingest_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ingest", parents=[common], help="read, validate and store an event log")
    p.add_argument("events", help="event log: CSV/TSV, Parquet or JSON lines, optionally .gz")
    p.add_argument("--items", metavar="FILE", help="item catalogue whose text columns become item text")
    p.add_argument("--items-id", metavar="COLUMN", help="the item ID column of the items file")
    p.add_argument(
        "--items-text-columns",
        metavar="a,b,c",
        help="the items file's columns joined into the item text, in this order (default: every text column)",
    )
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
    p.add_argument(
        "--append-to",
        metavar="DATASET",
        help="add the file's events to a stored dataset (rows it already holds are counted, not added again); "
        "runs trained before keep their own rows",
    )
    p.add_argument("--keep-ids", action="store_true", help="store raw user IDs (default: keyed pseudonyms)")
    p.add_argument(
        "--item-text-columns",
        metavar="a,b,c",
        default="auto",
        help="the events file's columns that describe items (brand, category, price, ...), read into the item "
        "text; auto (default): those with one value per item; none: no item text from the events file",
    )


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
        append_to=args.append_to,
        item_text_columns=_item_text_columns(args.item_text_columns),
        items_text_columns=[c.strip() for c in args.items_text_columns.split(",") if c.strip()]
        if args.items_text_columns
        else None,
    )


def _item_text_columns(value: str) -> list[str] | str:
    """``--item-text-columns``: auto, none, or comma-separated column names."""
    if value.strip().lower() in ("auto", "none"):
        return value.strip().lower()
    columns = [c.strip() for c in value.split(",") if c.strip()]
    if not columns:
        raise DataError(f"--item-text-columns {value!r}: expected auto, none or column names such as brand,price")
    return columns


def unmapped_message(exc: UnmappedFieldError) -> str:
    """A missing ID column, in the CLI's words: the flag that maps one."""
    hint = " The file seems to have no header: name its columns with --columns." if not exc.header else ""
    return f"{exc}: map one with --map {exc.field}=COLUMN.{hint}"


def _print_ingest(report: dict[str, Any]) -> None:
    print(
        f"dataset {report['dataset']!r}: {report['rows_accepted']:,} of {report['rows_read']:,} rows "
        f"accepted, {report['rows_rejected']:,} rejected ({report['id_mode']} user IDs)"
    )
    for reason, n in report["rejected_by_reason"].items():
        print(f"  rejected {n:,} x {reason}")
    appended = report.get("appended")
    if appended:
        print(
            f"  appended {appended['events_added']:,} events and {appended['items_added']:,} new items: the dataset "
            f"now holds {appended['events_after']:,} events, {appended['users_after']:,} users, "
            f"{appended['items_after']:,} items"
            + (f" (version {report['version']})" if appended["events_added"] else "")
        )
    print(f"  users {report['users']:,}, items {report['items']:,}, duplicates {report['duplicates']:,}")
    print("  behaviors: " + ", ".join(f"{b} {n:,}" for b, n in report["behaviors"].items()))
    described = report.get("item_text") or {}
    if described.get("columns"):
        columns, n = ", ".join(described["columns"]), described["items"]
        print(f"  item text from {columns} for {n:,} items: {described['template']}")
        conflicts = {c: n for c, n in described["conflicts"].items() if n}
        if conflicts:
            print(
                "  items whose rows disagree (the latest value kept): "
                + ", ".join(f"{c} {n:,}" for c, n in conflicts.items())
            )
    for warning in report["warnings"]:
        print(f"  warning: {warning}")


def run(args: argparse.Namespace, ws: Workspace, as_json: bool) -> int:
    """Dispatch one data subcommand."""
    if args.command == "ingest":
        try:
            report = ingest(ws, args.events, args.items, _options(args)).to_dict()
        except UnmappedFieldError as exc:
            raise UnusableFileError(unmapped_message(exc)) from exc
        print(json.dumps(report, default=str)) if as_json else _print_ingest(report)
    elif args.command == "datasets":
        frame = ws.list_datasets()
        frame.insert(1, "version", frame["name"].map(dataset_versions(ws)).astype("Int64"))  # what runs record
        if as_json:
            print(frame.to_json(orient="records", date_format="iso"))
        else:
            print(frame.to_string(index=False) if len(frame) else "no datasets")
    elif args.command == "sample":
        ingested = ensure_sample_dataset(ws, force=args.force)
        report = ingested.to_dict() if ingested else {"dataset": SAMPLE_DATASET, "existing": True}
        if not as_json:
            print(f"dataset {SAMPLE_DATASET!r} is in {ws.root}")
        if args.train:
            report["train"] = _train_sample(ws, as_json)
        if as_json:
            print(json.dumps(report, default=str))
    elif args.command == "forget":
        forgotten = forget_user(ws, args.user, args.dataset)
        print(json.dumps(forgotten.as_dict())) if as_json else _print_forget(forgotten, args.dataset)
    elif args.command == "audit":
        if args.limit < 1:
            raise DataError(f"--limit {args.limit}: expected a positive number of entries")
        frame = audit.entries(ws, args.limit)
        if as_json:
            print(json.dumps(audit.as_records(frame)))
        else:
            print(frame.to_string(index=False) if len(frame) else "the audit log is empty")
    elif args.command == WORKER_COMMAND:
        _train_background(ws, args.run)
    return 0


def _print_forget(out: ForgetReport, dataset: str | None) -> None:
    where = f"dataset {dataset!r}" if dataset else "any dataset"
    if not out.events:
        print(f"nothing to remove: the user has no events in {where} (forgotten already, or never there)")
        return
    for name, n in out.events.items():
        print(f"removed {n:,} event(s) of the user from dataset {name!r} (a new version of it)")
    print(f"  ingest-report examples naming the user removed: {out.report_examples:,}")
    print(f"  cached embeddings of the user's event texts removed: {out.embeddings:,}")
    print(f"  fusion caches removed: {len(out.fusion_caches):,}" + _listed(out.fusion_caches))
    print(f"  runs marked 'trained on data since deleted': {len(out.runs_marked):,}" + _listed(out.runs_marked))
    if out.runs_marked:
        print("  their weights learned from the user's events: retrain them (`behaviorlens train DATASET`)")
    print("  the workspace database was rewritten, so no deleted row stays in its file")


def _listed(ids: list[str]) -> str:
    return f" ({', '.join(ids)})" if ids else ""


def _train_sample(ws: Workspace, as_json: bool) -> dict[str, Any]:
    """`sample --train`: the demo run started in the background, or the run that made it unnecessary."""
    launch = ensure_training(ws, SAMPLE_DATASET, demo_settings())
    if not as_json and launch.started:
        print(
            f"run {launch.run_id}: training in the background (log: {launch.log}); "
            "the dashboard's pages fill in by themselves when it is done"
        )
    elif not as_json:
        state = "is training already" if launch.status == RUNNING else f"is trained ({launch.status})"
        print(f"run {launch.run_id} of dataset {SAMPLE_DATASET!r} {state}: nothing started")
    return {"run": launch.run_id, "started": launch.started, "status": launch.status, "log": launch.log}


def _train_background(ws: Workspace, run_id: str) -> None:
    """The worker process of a run (the Train page, `sample --train`): train the recorded run; its outcome on
    stdout (the run's train.log)."""
    snap = train_recorded(ws, run_id)
    if snap["error"] is not None:
        raise BehaviorLensError(f"training run {run_id} failed: {snap['error']}")
    if snap["crash"] is not None:
        raise RuntimeError(f"training run {run_id} stopped on an unexpected error ({snap['crash']})")
    if snap["status"] == FOLLOWER:
        print(f"run {run_id}: rank {snap['rank']} trained its share with rank 0, which records the run")
        return
    print(f"run {run_id}: {snap['status']} after {len(snap['history'])} epoch(s), {snap['elapsed']:.0f} s")
