"""The quality gate on arrival: validate new raw loads, quarantine bad rows, pass or stop.

``check_raw`` is what the ``warehouse_build`` DAG runs before dbt:

1. Read phase (read-only connection): for each source, the dlt loads not yet in
   ``quarantine.checked_loads``; each raw table's rows of those loads become a pandas frame
   (:mod:`orchestration.quality.raw`) validated by a GX suite built from the rules
   (:mod:`orchestration.quality.suites`, :mod:`orchestration.quality.rules`).
2. Child rows of quarantined parents are quarantined too (rule ``parent_quarantined``), so
   staging never keeps line items of an order it excluded. A bad child does not quarantine
   its parent: the order stays, without that line.
3. Verdict per table: it fails when a table-level expectation fails, or when the share of
   its rows that broke a row-level rule exceeds ``tolerance`` (and at least
   ``MIN_BAD_ROWS`` rows, so one bad store out of ten does not stop the business).
4. Write phase (one short read-write transaction): quarantine rows replace those of the same
   loads (idempotent), loads of passed sources are marked checked. Then the JSON summary is
   written under ``cfg.quality_dir``, and :class:`QualityGateFailed` is raised with a
   readable summary if any table failed. Quarantined rows are written either way; the loads
   of a failed source stay unchecked, so the next run validates them again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from orchestration import settings as settings_module
from orchestration.quality import quarantine
from orchestration.quality.raw import (
    RawTable,
    completed_loads,
    list_tables,
    read_frame,
    schema_exists,
)
from orchestration.quality.rules import SourceRules, TableRules, source_rules
from orchestration.quality.suites import TableFailure, TableOutcome, Validator, quiet_gx
from orchestration.warehouse import writes_warehouse

log = logging.getLogger(__name__)

DEFAULT_SOURCES = ("shop", "pos", "social")
DEFAULT_TOLERANCE = 0.05  # share of a table's new rows that may be quarantined
MIN_BAD_ROWS = 5  # fewer bad rows than this (or than the table has) never fails on share
EXAMPLES = 3  # example values per rule in the summary


class QualityGateFailed(RuntimeError):
    """The raw data failed the gate; ``str(error)`` is the readable summary, ``.summary`` all."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class TableReport:
    """The verdict on one raw table's new rows."""

    name: str
    rows: int = 0
    bad_rows: int = 0
    children_quarantined: int = 0
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    table_failures: list[TableFailure] = field(default_factory=list)
    passed: bool = True

    @property
    def bad_share(self) -> float:
        return self.bad_rows / self.rows if self.rows else 0.0

    def as_dict(self) -> dict[str, Any]:
        broken = []
        direct = self.failures[self.failures["rule"] != "parent_quarantined"]
        for (rule, column), rows in direct.groupby(["rule", "column"], sort=False, dropna=False):
            examples = [
                f"{'(no id)' if pd.isna(record) else record}: {value}"
                for record, value in zip(rows["record_id"], rows["value"], strict=True)
            ][:EXAMPLES]
            broken.append(
                {
                    "rule": rule,
                    "column": None if pd.isna(column) else column,
                    "rows": int(rows["dlt_id"].nunique()),
                    "examples": examples,
                }
            )
        broken.sort(key=lambda item: -int(item["rows"]))
        return {
            "passed": self.passed,
            "rows": self.rows,
            "bad_rows": self.bad_rows,
            "bad_share": round(self.bad_share, 4),
            "children_quarantined": self.children_quarantined,
            "broken_rules": broken,
            "table_failures": [failure.as_dict() for failure in self.table_failures],
        }


@dataclass
class SourceReport:
    source: str
    schema: str
    new_loads: list[str] = field(default_factory=list)
    first_load: bool = False
    tables: dict[str, TableReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # source-level: schema missing...
    rows_per_load: dict[str, int] = field(default_factory=dict)
    bad_per_load: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "validate": 0.0})

    @property
    def passed(self) -> bool:
        return not self.problems and all(table.passed for table in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "schema": self.schema,
            "new_loads": self.new_loads,
            "first_load": self.first_load,
            "problems": self.problems,
            "tables": {name: table.as_dict() for name, table in sorted(self.tables.items())},
        }


def _record_ids(frame: pd.DataFrame, rules: TableRules) -> pd.Series:
    """The record's own key as text (``id``; ``a|b`` for compound keys), null when absent."""
    key = [column for column in rules.key if not column.startswith("_dlt_") and column in frame]
    if not key:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if len(key) == 1:
        values = frame[key[0]].astype(object)
        return values.where(values.notna(), None)
    return frame[key].fillna("").astype(str).agg("|".join, axis=1).astype(object)


def _details(failures: pd.DataFrame) -> pd.Series:
    column = failures["column"].fillna("")
    return column.str.cat(failures["value"].astype(str), sep="=")


def _validate_table(
    con: duckdb.DuckDBPyConnection,
    validator: Validator,
    report: SourceReport,
    table: RawTable,
    rules: TableRules,
    required: bool,
    tolerance: float,
) -> TableReport:
    started = time.monotonic()
    frame = read_frame(con, table, rules, report.new_loads)
    report.timings["read"] += time.monotonic() - started
    result = TableReport(name=table.name, rows=len(frame))
    if frame.empty and not (required and report.first_load):
        result.failures = _empty_failures()
        return result
    started = time.monotonic()
    outcome: TableOutcome = validator.validate(table, rules, frame, report.first_load and required)
    report.timings["validate"] += time.monotonic() - started
    result.table_failures = outcome.table_failures
    index = pd.DataFrame(
        {
            "dlt_id": frame["_dlt_id"].astype(str),
            "load_id": frame["_dlt_load_id"].astype(str),
            "record_id": _record_ids(frame, rules),
        }
    )
    direct = outcome.row_failures.merge(index, on="dlt_id", how="left")
    result.bad_rows = int(direct["dlt_id"].nunique())
    inherited = _children_of_quarantined(report, table, frame, index)
    result.children_quarantined = int(inherited["dlt_id"].nunique())
    result.failures = pd.concat([direct, inherited], ignore_index=True)
    for load_id, rows in index.groupby("load_id")["dlt_id"]:
        report.rows_per_load[str(load_id)] = report.rows_per_load.get(str(load_id), 0) + len(rows)
    bad = result.failures.drop_duplicates("dlt_id")
    for load_id, count in bad.groupby("load_id").size().items():
        report.bad_per_load[str(load_id)] = report.bad_per_load.get(str(load_id), 0) + int(count)
    over_share = result.bad_share > tolerance and result.bad_rows >= min(MIN_BAD_ROWS, result.rows)
    result.passed = not result.table_failures and not over_share
    return result


def _empty_failures() -> pd.DataFrame:
    return pd.DataFrame(columns=["dlt_id", "rule", "column", "value", "load_id", "record_id"])


def _children_of_quarantined(
    report: SourceReport, table: RawTable, frame: pd.DataFrame, index: pd.DataFrame
) -> pd.DataFrame:
    """Rows of a child table whose parent row is quarantined (rule ``parent_quarantined``)."""
    if not table.is_child:
        return _empty_failures()
    parent = report.tables.get(table.lineage[0])
    if parent is None or parent.failures.empty:
        return _empty_failures()
    orphans = frame["_dlt_parent_id"].isin(set(parent.failures["dlt_id"]))
    if not orphans.any():
        return _empty_failures()
    return pd.DataFrame(
        {
            "dlt_id": index.loc[orphans, "dlt_id"],
            "rule": "parent_quarantined",
            "column": "_dlt_parent_id",
            "value": f"{parent.name}:" + frame.loc[orphans, "_dlt_parent_id"].astype(str),
            "load_id": index.loc[orphans, "load_id"],
            "record_id": index.loc[orphans, "record_id"],
        }
    )


def _check_source(
    con: duckdb.DuckDBPyConnection,
    validator_factory: _LazyValidator,
    rules: SourceRules,
    tolerance: float,
) -> SourceReport:
    report = SourceReport(source=rules.source, schema=rules.schema)
    if not schema_exists(con, rules.schema):
        report.problems.append(f"schema {rules.schema} does not exist: source never loaded")
        return report
    done = quarantine.checked_loads(con, rules.source)
    report.first_load = not done
    report.new_loads = [load for load in completed_loads(con, rules.schema) if load not in done]
    tables = list_tables(con, rules.schema)
    for name in rules.required_tables:
        if name not in tables:
            report.problems.append(f"table {rules.schema}.{name} does not exist (table_missing)")
    if not report.new_loads:
        return report
    for table in sorted(tables.values(), key=lambda item: (item.depth, item.name)):
        report.tables[table.name] = _validate_table(
            con,
            validator_factory.get(),
            report,
            table,
            rules.table(table.name),
            table.name in rules.required_tables,
            tolerance,
        )
    return report


class _LazyValidator:
    """Creates the GX context on first use: a run with no new loads never imports GX."""

    def __init__(self) -> None:
        self._validator: Validator | None = None
        self.startup_seconds = 0.0

    def get(self) -> Validator:
        if self._validator is None:
            started = time.monotonic()
            self._validator = Validator()
            self.startup_seconds = time.monotonic() - started
        return self._validator


def _quarantine_frame(reports: list[SourceReport]) -> pd.DataFrame:
    parts = []
    for report in reports:
        for table in report.tables.values():
            if table.failures.empty:
                continue
            rows = table.failures.copy()
            rows["source"] = report.source
            rows["table_name"] = table.name
            rows["details"] = _details(rows)
            parts.append(rows[quarantine.RAW_ROWS_COLUMNS])
    if not parts:
        return pd.DataFrame(columns=quarantine.RAW_ROWS_COLUMNS)
    return pd.concat(parts, ignore_index=True).drop_duplicates(
        ["table_name", "dlt_id", "rule", "details"]
    )


def _validated_frame(reports: list[SourceReport]) -> pd.DataFrame:
    rows = [
        (report.source, table, load_id)
        for report in reports
        for table in report.tables
        for load_id in report.new_loads
    ]
    return pd.DataFrame(rows, columns=quarantine.VALIDATED_COLUMNS)


def _checked_frame(reports: list[SourceReport]) -> pd.DataFrame:
    rows = [
        (
            report.source,
            load_id,
            report.rows_per_load.get(load_id, 0),
            report.bad_per_load.get(load_id, 0),
        )
        for report in reports
        if report.passed
        for load_id in report.new_loads
    ]
    return pd.DataFrame(rows, columns=quarantine.CHECKED_COLUMNS)


def failure_message(summary: dict[str, Any]) -> str:
    """The readable summary of a failed gate (what the Airflow task log shows)."""
    tolerance = summary["tolerance"]
    lines = [
        f"Raw data quality gate FAILED (tolerance: {tolerance:.1%} bad rows per table; "
        f"{summary['quarantined_rows']:,} rows quarantined in quarantine.raw_rows)"
    ]
    for source, report in summary["sources"].items():
        for problem in report["problems"]:
            lines.append(f"- {source}: {problem}")
        for name, table in report["tables"].items():
            if table["passed"]:
                continue
            qualified = f"{report['schema']}.{name}"
            for failure in table["table_failures"]:
                column = f" column {failure['column']}" if failure["column"] else ""
                lines.append(
                    f"- {qualified}: {failure['rule']}{column} "
                    f"({failure['expectation']}, observed: {failure['observed']})"
                )
            if table["bad_share"] > tolerance:
                lines.append(
                    f"- {qualified}: {table['bad_rows']:,} of {table['rows']:,} new rows "
                    f"({table['bad_share']:.1%}) broke row-level rules:"
                )
                for broken in table["broken_rules"]:
                    lines.append(
                        f"    {broken['rule']} on {broken['column']}: {broken['rows']:,} rows, "
                        f"e.g. {'; '.join(broken['examples'])}"
                    )
    lines.append(
        "The loads of a failed source stay unchecked: the next run validates them again "
        "(bad rows stay in quarantine.raw_rows either way)."
    )
    lines.append(f"Full summary: {summary['summary_path']}")
    return "\n".join(lines)


def pass_message(summary: dict[str, Any]) -> str:
    """The readable summary of a passed gate: what was checked, what went to quarantine."""
    lines = [
        f"Raw data quality gate passed: {summary['rows_checked']:,} new rows checked, "
        f"{summary['quarantined_rows']:,} rows quarantined in quarantine.raw_rows"
    ]
    for report in summary["sources"].values():
        for name, table in report["tables"].items():
            parts = []
            if table["bad_rows"]:
                rules = ", ".join(
                    f"{broken['rule']} on {broken['column']}: {broken['rows']:,}"
                    for broken in table["broken_rules"]
                )
                parts.append(
                    f"{table['bad_rows']:,} of {table['rows']:,} rows ({table['bad_share']:.1%}) "
                    f"broke rules ({rules})"
                )
            if table["children_quarantined"]:
                parts.append(f"{table['children_quarantined']:,} with a quarantined parent")
            if parts:
                lines.append(f"- {report['schema']}.{name}: {'; '.join(parts)}")
    lines.append(f"Full summary: {summary['summary_path']}")
    return "\n".join(lines)


def _write_summary(quality_dir: Path, summary: dict[str, Any]) -> Path:
    quality_dir.mkdir(parents=True, exist_ok=True)
    stamp = summary["checked_at"].replace(":", "").replace("-", "").split(".")[0]
    path = quality_dir / f"raw-{stamp}.json"
    summary["summary_path"] = str(path)
    text = json.dumps(summary, indent=2, default=str)
    path.write_text(text)
    (quality_dir / "raw-latest.json").write_text(text)
    return path


@writes_warehouse("the quality gate")
def check_raw(
    cfg: settings_module.Settings | None = None,
    sources: Sequence[str] = DEFAULT_SOURCES,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Validate the raw loads not checked yet; quarantine bad rows; return the summary.

    Raises :class:`QualityGateFailed` (message: a readable summary) when a table-level
    expectation fails or a table's share of bad rows exceeds ``tolerance`` (default
    ``DEFAULT_TOLERANCE``). Reads the warehouse read-only; writes it through one short
    read-write transaction (the caller holds the ``warehouse`` pool).
    """
    cfg = cfg or settings_module.load()
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    started = time.monotonic()
    checked_at = datetime.now(UTC)
    all_rules = [source_rules(source) for source in sources]
    warehouse = cfg.warehouse_path
    reports: list[SourceReport] = []
    validator = _LazyValidator()
    with quiet_gx():
        if warehouse.exists():
            con = duckdb.connect(str(warehouse), read_only=True)
            try:
                con.execute("set TimeZone = 'UTC'")
                for rules in all_rules:
                    reports.append(_check_source(con, validator, rules, tolerance))
            finally:
                con.close()
        else:
            for rules in all_rules:
                report = SourceReport(source=rules.source, schema=rules.schema)
                report.problems.append(f"warehouse {warehouse} does not exist: nothing loaded")
                reports.append(report)
    validated_seconds = time.monotonic() - started
    write_started = time.monotonic()
    inserted = quarantine.write(
        warehouse,
        _validated_frame(reports),
        _quarantine_frame(reports),
        _checked_frame(reports),
        {rules.source: rules.schema for rules in all_rules},
    )
    summary: dict[str, Any] = {
        "passed": all(report.passed for report in reports),
        "checked_at": checked_at.isoformat(),
        "tolerance": tolerance,
        "min_bad_rows": MIN_BAD_ROWS,
        "quarantined_rows": inserted,
        "rows_checked": sum(sum(report.rows_per_load.values()) for report in reports),
        "sources": {report.source: report.as_dict() for report in reports},
        "seconds_by_step": {
            "gx_startup": round(validator.startup_seconds, 2),
            "read": round(sum(report.timings["read"] for report in reports), 2),
            "validate": round(sum(report.timings["validate"] for report in reports), 2),
            "check_total": round(validated_seconds, 2),
            "write": round(time.monotonic() - write_started, 2),
        },
        "seconds": round(time.monotonic() - started, 2),
    }
    _write_summary(cfg.quality_dir, summary)
    if not summary["passed"]:
        raise QualityGateFailed(failure_message(summary), summary)
    log.info("%s", pass_message(summary))
    return summary
