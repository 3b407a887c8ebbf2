"""The ingest accounting: counts per reason, examples, duplicates, warnings.

The report never holds a raw user ID when the ingest pseudonymizes: example
rows show the stored pseudonym (or the missing value itself), and malformed
records show their line number and error only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from core import schema as S
from core.ingest.advice import Hint, Notice, Part, notices_of
from core.ingest.duplicates import exact_duplicates
from core.ingest.options import IngestOptions
from core.ingest.reader import count
from core.ingest.source_info import Malformed, SourceInfo
from core.ingest.validation import CHECKED, Rules, duplicate_key

EXAMPLES_PER_REASON = 5
TEXT_PREVIEW = 200
EARLY_YEAR = 1990


@dataclass
class IngestReport:
    """What happened to every row of one ingest. ``to_dict`` is the ``--json`` output, with ``notices``: the
    ``warnings`` (CLI wording) as parts, for front ends that word the options their own way (core.ingest.advice)."""

    dataset: str
    sources: list[str]
    format: str
    compression: str | None
    encoding: str
    delimiter: str | None
    header: bool
    columns: list[str]
    mapping: dict[str, str]
    id_mode: str  # "pseudonymized" or "raw"
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    rejected_by_reason: dict[str, int]
    examples: dict[str, list[dict[str, Any]]]
    duplicates: int
    duplicate_examples: list[dict[str, Any]]
    users: int
    items: int
    behaviors: dict[str, int]
    custom_behaviors: list[str]
    time_range: list[str] | None
    items_file: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)
    replaced: bool = False
    elapsed_s: float = 0.0
    version: int | None = None  # the dataset version this ingest made (1, 2, ...: core.store.versions)
    item_text: dict[str, Any] | None = None  # the events file's columns read into the item text (core.ingest.item_text)
    appended: dict[str, Any] | None = (
        None  # an append's outcome: events and items added, counts after (core.ingest.append)
    )

    @property
    def pseudonymized(self) -> bool:
        return self.id_mode == "pseudonymized"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pseudonymized"] = self.pseudonymized
        out["notices"] = notices_of(self.warnings)
        return out

    def dataset_row(self) -> list[Any]:
        """Values for the workspace ``datasets`` row (after ``name`` and ``created_at``)."""
        return [
            self.dataset,
            json.dumps(self.sources),
            json.dumps(self.mapping),
            self.pseudonymized,
            self.rows_accepted,
            self.users,
            self.items,
            json.dumps(self.to_dict(), default=str),
        ]


@dataclass
class IngestJob:
    """What one ingest read and decided, for its report."""

    name: str  # the dataset
    info: SourceInfo
    rules: Rules  # its mapping is the report's
    codes: dict[str, str]  # behavior codes
    opts: IngestOptions
    malformed: list[Malformed] = field(default_factory=list)
    catalogue: tuple[Any, dict[str, Any]] | None = None  # (items frame, the items file's own report)
    source_names: list[str] | None = None  # the names to report instead of the file's


def build_report(
    con: duckdb.DuckDBPyConnection, job: IngestJob, counts: tuple[int, int], show_user: Callable[[Any], Any]
) -> IngestReport:
    """Count, sample and warn over the ``checked`` view and the ``__items`` table.

    ``counts``: (users, items) stored; ``show_user`` turns a raw user ID into what examples may show
    (its pseudonym).
    """
    name, info, rules, codes, opts = job.name, job.info, job.rules, job.codes, job.opts
    malformed, catalogue, source_names = job.malformed, job.catalogue, job.source_names
    mapping, (n_users, n_items) = rules.mapping, counts
    tally = _tally(con)
    reasons = dict(tally.reasons)
    for m in malformed:  # malformed_row, line_too_long, nul_bytes: records the reader could not use
        reasons[m.reason] = reasons.get(m.reason, 0) + 1
    rejected = int(sum(reasons.values()))
    dupes, dupe_examples = exact_duplicates(con, duplicate_key(rules), show_user, EXAMPLES_PER_REASON)
    sources = list(source_names) if source_names else [info.path.name]
    if catalogue is not None:
        sources.append(catalogue[1]["file"])
    report = IngestReport(
        dataset=name,
        sources=sources,
        format=info.format,
        compression=info.compression,
        encoding=info.encoding,
        delimiter=info.delimiter,
        header=info.header,
        columns=list(info.columns),
        mapping=dict(mapping),
        id_mode="raw" if opts.keep_ids else "pseudonymized",
        rows_read=tally.accepted + rejected,
        rows_accepted=tally.accepted,
        rows_rejected=rejected,
        rejected_by_reason={k: int(v) for k, v in sorted(reasons.items())},
        examples=_examples(tally, malformed, opts.keep_ids, show_user),
        duplicates=dupes,
        duplicate_examples=dupe_examples,
        users=n_users,
        items=n_items,
        behaviors=tally.behaviors,
        custom_behaviors=sorted(b for b in tally.behaviors if b not in S.CANONICAL_BEHAVIORS),
        time_range=tally.time_range,
        items_file=None if catalogue is None else catalogue[1],
    )
    report.warnings = list(info.warnings) + _warnings(con, report, rules, codes, opts, tally)
    return report


@dataclass
class _Tally:
    """Counts and rejected-row examples from one pass over ``checked``."""

    accepted: int
    reasons: dict[str, int]
    behaviors: dict[str, int]
    time_range: list[str] | None
    early: int
    earliest: Any
    examples: dict[str, list[dict[str, Any]]]


_EXAMPLE = (
    "{'row': row, 'u': u, 'i': i, 'ts': coalesce(ts_raw, CAST(ts AS VARCHAR)), 'b': b_raw, "
    f"'v': coalesce(v_raw, CAST(v AS VARCHAR)), 't': left(t, {TEXT_PREVIEW})}}"
)


def _tally(con: duckdb.DuckDBPyConnection) -> _Tally:
    rows = con.execute(
        f"SELECT reason, b, count(*), min(ts), max(ts), "
        f"count(*) FILTER (WHERE ts < TIMESTAMP '{EARLY_YEAR}-01-01') FROM {CHECKED} GROUP BY ALL"
    ).fetchall()
    ok = [r for r in rows if r[0] is None]
    reasons: dict[str, int] = {}
    for reason, _b, n, *_ in rows:
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + int(n)
    examples = (
        dict(
            con.execute(
                f"SELECT reason, arg_min({_EXAMPLE}, row, {EXAMPLES_PER_REASON}) FROM {CHECKED} "
                "WHERE reason IS NOT NULL GROUP BY reason"
            ).fetchall()
        )
        if reasons
        else {}
    )
    lo = min((r[3] for r in ok), default=None)
    hi = max((r[4] for r in ok), default=None)
    return _Tally(
        accepted=sum(int(r[2]) for r in ok),
        reasons=reasons,
        behaviors={str(r[1]): int(r[2]) for r in sorted(ok, key=lambda r: (-r[2], str(r[1])))},
        time_range=None if lo is None or hi is None else [lo.isoformat() + "Z", hi.isoformat() + "Z"],
        early=sum(int(r[5]) for r in ok),
        earliest=lo,
        examples={k: sorted(v, key=lambda e: e["row"])[:EXAMPLES_PER_REASON] for k, v in sorted(examples.items())},
    )


def _examples(
    tally: _Tally, malformed: list[Malformed], keep_ids: bool, show_user: Callable[[Any], Any]
) -> dict[str, list[dict[str, Any]]]:
    out = {
        reason: [
            {
                "row": e["row"],
                S.USER_ID: show_user(e["u"]),
                S.ITEM_ID: e["i"],
                S.TIMESTAMP: e["ts"],
                S.BEHAVIOR: e["b"],
                S.VALUE: e["v"],
                S.TEXT: e["t"],
            }
            for e in found
        ]
        for reason, found in tally.examples.items()
    }
    for m in malformed:
        shown = out.setdefault(m.reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append({"line": m.line, "error": m.error, **({"raw": m.raw} if keep_ids else {})})
    return out


def _warnings(
    con: duckdb.DuckDBPyConnection,
    report: IngestReport,
    rules: Rules,
    codes: dict[str, str],
    opts: IngestOptions,
    tally: _Tally,
) -> list[str]:
    out: list[str] = []
    if S.BEHAVIOR not in rules.mapping:
        pick = (Hint("mapping", field=S.BEHAVIOR), " or choose another with ", Hint("default_behavior"))
        out.append(
            Notice(f"no behavior column: every row was counted as {rules.default_behavior!r}; map one with ", *pick)
        )
    if S.TIMESTAMP not in rules.mapping:
        out.append("no timestamp column: event order was taken from the file order (one second per row)")
    if report.custom_behaviors:
        numeric = [b for b in report.custom_behaviors if b.lstrip("-").isdigit()]
        if numeric and not codes:
            codes_hint = Hint("behavior_codes", value="0=click,1=cart,...")
            out.append(Notice(f"behavior labels look like numeric codes {numeric[:8]}: map them with ", codes_hint))
        shown = ", ".join(f"{b!r} ({report.behaviors[b]} rows)" for b in report.custom_behaviors[:10])
        out.append(f"kept {len(report.custom_behaviors)} custom behavior(s) outside the canonical set: {shown}")
    if tally.early and S.TIMESTAMP in rules.mapping:
        fix: tuple[Part, ...] = (
            ("check that ", Hint("time_format", value=repr(rules.time_format), given=True), " includes the year (%Y)")
            if rules.time_format
            else ("if they are not epoch seconds, ", Hint("time_format", act=True), " (e.g. %m%d or %d/%m/%Y %H:%M)")
        )
        out.append(
            Notice(f"{tally.early} timestamp(s) fall before {EARLY_YEAR} (earliest read as {tally.earliest}): ", *fix)
        )
    if report.duplicates:
        found = f"{report.duplicates} exact duplicate row(s) found and "
        kept = ("kept; ", Hint("drop_duplicates", act=True), " to drop them")
        out.append(found + "dropped (reason 'duplicate')" if opts.drop_duplicates else Notice(found, *kept))
    if report.rows_read and report.rows_rejected > report.rows_read / 2:
        out.append("more than half of the rows were rejected: check the column mapping and formats")
    if report.items_file is not None:
        missing = count(con, "SELECT count(*) FROM __items WHERE item_text = ''")
        if missing:
            out.append(f"{missing} item(s) seen in events have no text in the items file; their text is empty")
    return out
