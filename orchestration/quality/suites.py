"""Great Expectations suites built from the rules, run on pandas frames of raw rows.

``great_expectations`` takes ~10 s to import, so it is imported inside functions, once per
gate run, and one ephemeral context validates every table. Each expectation carries its
rule in ``meta`` (``rule``, ``column``, ``level``); results are read back into
:class:`TableOutcome`: row failures (``_dlt_id`` + rule + value, from GX's
``unexpected_index_list``) and table failures (a table-level expectation that failed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from orchestration.quality.raw import NUMBER_SUFFIX, RawTable, is_text_column
from orchestration.quality.rules import TableRules

# ISO 8601 date-time with seconds and an offset (RFC 3339; Graph's ``+0000`` included).
ISO_TIMESTAMP = (
    r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[T ](?:[01]\d|2[0-3]):[0-5]\d"
    r":(?:[0-5]\d|60)(?:\.\d+)?(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)$"
)
NUMBER = r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$"
ROW_FAILURE_COLUMNS = ["dlt_id", "rule", "column", "value"]
_GX_LOGGERS = ("great_expectations", "great_expectations.core", "great_expectations.data_context")


@dataclass
class TableFailure:
    """A table-level expectation that failed (or an expectation GX could not evaluate)."""

    rule: str
    expectation: str
    column: str | None
    observed: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "expectation": self.expectation,
            "column": self.column,
            "observed": self.observed,
        }


@dataclass
class TableOutcome:
    """What validation found in one table's new rows."""

    rows: int
    row_failures: pd.DataFrame  # ROW_FAILURE_COLUMNS, one row per (row, rule, column)
    table_failures: list[TableFailure] = field(default_factory=list)
    expectations: int = 0


def _meta(rule: str, column: str | None, level: str) -> dict[str, Any]:
    return {"rule": rule, "column": column, "level": level}


def build_expectations(
    table: RawTable, rules: TableRules, frame_columns: set[str], first_load: bool
) -> list[Any]:
    """The expectations of one table, given the columns its frame actually has."""
    import great_expectations as gx

    expect = gx.expectations
    found: list[Any] = []
    if first_load:
        found.append(
            expect.ExpectTableRowCountToBeBetween(
                min_value=1, meta=_meta("empty_first_load", None, "table")
            )
        )
    for column in rules.required:
        found.append(
            expect.ExpectColumnToExist(column=column, meta=_meta("missing_column", column, "table"))
        )

    def present(column: str) -> bool:
        return column in frame_columns

    for column in rules.key:
        if present(column) and not column.startswith("_dlt_"):
            found.append(
                expect.ExpectColumnValuesToNotBeNull(
                    column=column, meta=_meta("missing_key", column, "row")
                )
            )
    key = [column for column in rules.key if present(column)]
    if key and len(key) == len(rules.key):
        found.append(
            expect.ExpectCompoundColumnsToBeUnique(
                column_list=["_dlt_load_id", *key],
                ignore_row_if="any_value_is_missing",
                meta=_meta("duplicate_key", ",".join(key), "row"),
            )
        )
    for column in rules.not_null:
        if present(column):
            found.append(
                expect.ExpectColumnValuesToNotBeNull(
                    column=column, meta=_meta("missing_value", column, "row")
                )
            )
    for column in rules.timestamps:
        if present(column):
            found.append(
                expect.ExpectColumnValuesToMatchRegex(
                    column=column,
                    regex=ISO_TIMESTAMP,
                    meta=_meta("invalid_timestamp", column, "row"),
                )
            )
    bounded: list[tuple[str, str, tuple[float, float]]] = [
        *(("out_of_range", column, bounds) for column, bounds in rules.ranges.items()),
        *(("invalid_coordinate", column, (-90.0, 90.0)) for column in rules.latitudes),
        *(("invalid_coordinate", column, (-180.0, 180.0)) for column in rules.longitudes),
    ]
    for rule, column, (low, high) in bounded:
        if not present(column):
            continue
        if is_text_column(table, column):
            found.append(
                expect.ExpectColumnValuesToMatchRegex(
                    column=column, regex=NUMBER, meta=_meta("invalid_number", column, "row")
                )
            )
        found.append(
            expect.ExpectColumnValuesToBeBetween(
                column=column + NUMBER_SUFFIX,
                min_value=low,
                max_value=high,
                meta=_meta(rule, column, "row"),
            )
        )
    for column, values in rules.enums.items():
        if present(column):
            found.append(
                expect.ExpectColumnValuesToBeInSet(
                    column=column,
                    value_set=sorted(values),
                    meta=_meta("unknown_enum", column, "row"),
                )
            )
    return found


@contextmanager
def quiet_gx() -> Iterator[None]:
    """Silence GX's info logging for the duration (the Airflow task log stays readable)."""
    saved = {name: logging.getLogger(name).level for name in _GX_LOGGERS}
    for name in _GX_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _silence_gx_loggers() -> None:
    """GX sets some of its module loggers to INFO at import (``Created temporary directory``);
    lift every ``great_expectations.*`` logger to WARNING once GX is imported."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)


class Validator:
    """One ephemeral GX context with a pandas datasource; validates one frame per table."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        _silence_gx_loggers()
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.datasource = self.context.data_sources.add_pandas("raw")

    def validate(
        self, table: RawTable, rules: TableRules, frame: pd.DataFrame, first_load: bool
    ) -> TableOutcome:
        expectations = build_expectations(table, rules, set(frame.columns), first_load)
        outcome = TableOutcome(
            rows=len(frame),
            row_failures=pd.DataFrame(columns=ROW_FAILURE_COLUMNS),
            expectations=len(expectations),
        )
        if not expectations:
            return outcome
        suite = self._gx.ExpectationSuite(name=f"raw.{table.qualified}")
        for expectation in expectations:
            suite.add_expectation(expectation)
        asset = self.datasource.add_dataframe_asset(name=table.qualified)
        batch = asset.add_batch_definition_whole_dataframe("new_loads").get_batch(
            batch_parameters={"dataframe": frame}
        )
        result = batch.validate(
            suite,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": ["_dlt_id"],
                "return_unexpected_index_query": False,
            },
        )
        failures: list[pd.DataFrame] = []
        for item in result.results:
            config = item.expectation_config
            meta = (config.meta if config else None) or {}
            rule, column, level = meta.get("rule"), meta.get("column"), meta.get("level")
            kind = config.type if config else "unknown"
            if item.exception_info.get("raised_exception"):
                message = str(item.exception_info.get("exception_message", "error"))
                outcome.table_failures.append(
                    TableFailure("expectation_error", kind, column, message[:300])
                )
                continue
            if item.success:
                continue
            if level == "table":
                observed = item.result.get("observed_value", "column absent")
                outcome.table_failures.append(TableFailure(str(rule), kind, column, str(observed)))
                continue
            failures.append(_row_failures(item.result, str(rule), column))
        if failures:
            outcome.row_failures = pd.concat(failures, ignore_index=True)
        return outcome


def _row_failures(result: dict[str, Any], rule: str, column: str | None) -> pd.DataFrame:
    """GX's ``unexpected_index_list`` as rows of ``ROW_FAILURE_COLUMNS``."""
    unexpected = pd.DataFrame(result.get("unexpected_index_list") or [])
    if unexpected.empty:
        return pd.DataFrame(columns=ROW_FAILURE_COLUMNS)
    value_columns = [name for name in unexpected.columns if name != "_dlt_id"]
    if rule == "duplicate_key":
        value_columns = [name for name in value_columns if name != "_dlt_load_id"]
        values = unexpected[value_columns].astype(str).agg("|".join, axis=1)
    elif value_columns:
        values = unexpected[value_columns[0]].map(_show)
    else:
        values = pd.Series([""] * len(unexpected))
    return pd.DataFrame(
        {
            "dlt_id": unexpected["_dlt_id"].astype(str),
            "rule": rule,
            "column": column,
            "value": values.astype(str),
        }
    )


def _show(value: Any) -> str:
    """A value as it reads in a message: null for missing, the text otherwise."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
