"""The ingest accounting: counts per reason, examples, duplicates, warnings.

The report never holds a raw user ID when the ingest pseudonymizes: example
rows show the stored pseudonym (or the missing value itself), and malformed
records show their line number and error only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from core import schema as S
from core.source import Malformed, SourceInfo
from core.validation import Rules

EXAMPLES_PER_REASON = 5
TEXT_PREVIEW = 200
EARLY_YEAR = 1990


@dataclass
class IngestReport:
    """What happened to every row of one ingest. ``to_dict`` is the ``--json`` output."""

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

    @property
    def pseudonymized(self) -> bool:
        return self.id_mode == "pseudonymized"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pseudonymized"] = self.pseudonymized
        return out

    def dataset_row(self) -> list[Any]:
        """Values for the workspace ``datasets`` row (after ``name`` and ``created_at``)."""
        return [
            self.dataset, json.dumps(self.sources), json.dumps(self.mapping), self.pseudonymized,
            self.rows_accepted, self.users, self.items, json.dumps(self.to_dict(), default=str),
        ]


def build_report(con: duckdb.DuckDBPyConnection, name: str, info: SourceInfo, mapping: dict[str, str],
                 rules: Rules, malformed: list[Malformed], codes: dict[str, str], opts: Any,
                 catalogue: tuple[Any, dict[str, Any]] | None, source_names: list[str] | None) -> IngestReport:
    """Count, sample and warn over the ``parsed`` and ``__users`` tables."""
    reasons = dict(con.execute(
        "SELECT reason, count(*) FROM parsed WHERE reason IS NOT NULL GROUP BY reason ORDER BY reason"
    ).fetchall())
    if malformed:
        reasons[S.R_MALFORMED] = len(malformed)
    accepted = con.execute("SELECT count(*) FROM parsed WHERE reason IS NULL").fetchone()[0]
    rejected = int(sum(reasons.values()))
    behaviors = dict(con.execute(
        "SELECT b, count(*) FROM parsed WHERE reason IS NULL GROUP BY b ORDER BY count(*) DESC, b"
    ).fetchall())
    dupes, dupe_examples = _duplicates(con, opts.keep_ids)
    stats = con.execute(
        "SELECT count(DISTINCT i), min(ts), max(ts) FROM parsed WHERE reason IS NULL"
    ).fetchone()
    sources = list(source_names) if source_names else [info.path.name]
    if catalogue is not None:
        sources.append(catalogue[1]["file"])
    report = IngestReport(
        dataset=name, sources=sources, format=info.format, compression=info.compression,
        encoding=info.encoding, delimiter=info.delimiter, header=info.header, columns=list(info.columns),
        mapping=dict(mapping), id_mode="raw" if opts.keep_ids else "pseudonymized",
        rows_read=int(accepted) + rejected, rows_accepted=int(accepted), rows_rejected=rejected,
        rejected_by_reason={k: int(v) for k, v in sorted(reasons.items())},
        examples=_examples(con, malformed, opts.keep_ids), duplicates=dupes,
        duplicate_examples=dupe_examples,
        users=int(con.execute("SELECT count(*) FROM __users").fetchone()[0]),
        items=int(stats[0]),
        behaviors={str(k): int(v) for k, v in behaviors.items()},
        custom_behaviors=sorted(str(b) for b in behaviors if b not in S.CANONICAL_BEHAVIORS),
        time_range=None if stats[1] is None else [stats[1].isoformat() + "Z", stats[2].isoformat() + "Z"],
        items_file=None if catalogue is None else catalogue[1],
    )
    report.warnings = list(info.warnings) + _warnings(con, report, rules, codes, opts)
    return report


def _user_cell(keep_ids: bool) -> str:
    if keep_ids:
        return "p.u"
    return "CASE WHEN us.uid IS NOT NULL THEN us.uid WHEN p.u IS NULL THEN NULL ELSE '<hidden>' END"


def _examples(con: duckdb.DuckDBPyConnection, malformed: list[Malformed], keep_ids: bool) -> dict[str, list[dict[str, Any]]]:
    rows = con.execute(
        f"SELECT reason, row, {_user_cell(keep_ids)}, p.i, p.ts_raw, p.b_raw, p.v_raw, "
        f"left(p.t, {TEXT_PREVIEW}) FROM (SELECT *, row_number() OVER (PARTITION BY reason ORDER BY row) AS k "
        f"FROM parsed WHERE reason IS NOT NULL) p LEFT JOIN __users us ON p.u = us.raw "
        f"WHERE k <= {EXAMPLES_PER_REASON} ORDER BY reason, row"
    ).fetchall() if _has_users(con) else []
    out: dict[str, list[dict[str, Any]]] = {}
    keys = ("row", S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.BEHAVIOR, S.VALUE, S.TEXT)
    for reason, *values in rows:
        out.setdefault(reason, []).append(dict(zip(keys, values)))
    if malformed:
        out[S.R_MALFORMED] = [
            {"line": m.line, "error": m.error, **({"raw": m.raw} if keep_ids else {})}
            for m in malformed[:EXAMPLES_PER_REASON]
        ]
    return out


def _has_users(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '__users'").fetchone()[0])


def _duplicates(con: duckdb.DuckDBPyConnection, keep_ids: bool) -> tuple[int, list[dict[str, Any]]]:
    """Exact duplicate rows among those accepted (or dropped as duplicates)."""
    con.execute(
        "CREATE TEMP TABLE __dupes AS SELECT u, i, ts, b, v, t, count(*) AS n, min(row) AS first_row "
        f"FROM parsed WHERE reason IS NULL OR reason = '{S.R_DUPLICATE}' "
        "GROUP BY u, i, ts, b, v, t HAVING count(*) > 1"
    )
    total = con.execute("SELECT coalesce(sum(n - 1), 0) FROM __dupes").fetchone()[0]
    user = "p.u" if keep_ids else "us.uid"
    rows = con.execute(
        f"SELECT p.first_row, p.n, {user}, p.i, p.ts, p.b, p.v FROM __dupes p "
        "LEFT JOIN __users us ON p.u = us.raw ORDER BY p.n DESC, p.first_row LIMIT 5"
    ).fetchall() if _has_users(con) else []
    con.execute("DROP TABLE __dupes")
    keys = ("first_row", "copies", S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.BEHAVIOR, S.VALUE)
    return int(total), [dict(zip(keys, (str(v) if k == S.TIMESTAMP else v for k, v in zip(keys, r)))) for r in rows]


def _warnings(con: duckdb.DuckDBPyConnection, report: IngestReport, rules: Rules,
              codes: dict[str, str], opts: Any) -> list[str]:
    out: list[str] = []
    if S.BEHAVIOR not in rules.mapping:
        out.append(
            f"no behavior column: every row was counted as {rules.default_behavior!r}; "
            "map one with --map behavior=COLUMN or choose another with --default-behavior"
        )
    if S.TIMESTAMP not in rules.mapping:
        out.append("no timestamp column: event order was taken from the file order (one second per row)")
    if report.custom_behaviors:
        numeric = [b for b in report.custom_behaviors if b.lstrip("-").isdigit()]
        if numeric and not codes:
            out.append(
                f"behavior labels look like numeric codes {numeric[:8]}: map them with "
                "--behavior-codes 0=click,1=cart,..."
            )
        shown = ", ".join(f"{b!r} ({report.behaviors[b]} rows)" for b in report.custom_behaviors[:10])
        out.append(f"kept {len(report.custom_behaviors)} custom behavior(s) outside the canonical set: {shown}")
    early = con.execute(
        f"SELECT count(*), any_value(ts_raw), any_value(ts) FROM parsed WHERE reason IS NULL "
        f"AND ts < TIMESTAMP '{EARLY_YEAR}-01-01'"
    ).fetchone()
    if early[0] and S.TIMESTAMP in rules.mapping:
        out.append(
            f"{early[0]} timestamp(s) fall before {EARLY_YEAR} (e.g. {early[1]!r} read as {early[2]}): "
            "if they are not epoch seconds, pass --time-format (e.g. %m%d or %d/%m/%Y %H:%M)"
        )
    if report.duplicates:
        kept = "dropped (reason 'duplicate')" if opts.drop_duplicates else "kept; pass --drop-duplicates to drop them"
        out.append(f"{report.duplicates} exact duplicate row(s) found and {kept}")
    if report.rows_read and report.rows_rejected > report.rows_read / 2:
        out.append("more than half of the rows were rejected: check the column mapping and formats")
    if report.items_file is not None:
        missing = con.execute("SELECT count(*) FROM __items WHERE item_text = ''").fetchone()[0]
        if missing:
            out.append(f"{missing} item(s) seen in events have no text in the items file; their text is empty")
    return out
