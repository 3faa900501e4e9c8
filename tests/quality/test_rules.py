"""Pure pieces of the gate: the text patterns, table lineage, the rules themselves."""

from __future__ import annotations

import re

import pytest

from orchestration.quality.raw import RawTable, _lineage, frame_sql
from orchestration.quality.rules import TableRules, source_rules
from orchestration.quality.suites import ISO_TIMESTAMP, NUMBER


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-01T10:00:00+00:00",
        "2026-11-01T10:00:00+0000",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:00:00.123456+01:00",
        "2026-11-01 10:00:00+00",
    ],
)
def test_iso_timestamps_accepted(text: str) -> None:
    assert re.search(ISO_TIMESTAMP, text)


@pytest.mark.parametrize(
    "text",
    ["31/02/2026 25:00", "2026-11-01", "2026-11-01T10:00:00", "2026-13-01T10:00:00Z", ""],
)
def test_non_iso_timestamps_rejected(text: str) -> None:
    assert not re.search(ISO_TIMESTAMP, text)


@pytest.mark.parametrize("text", ["12.30", "-12.30", "0", "1e3", "5"])
def test_numbers_accepted(text: str) -> None:
    assert re.search(NUMBER, text)


@pytest.mark.parametrize("text", ["abc", "12,30", "", "1.2.3"])
def test_non_numbers_rejected(text: str) -> None:
    assert not re.search(NUMBER, text)


def test_lineage_skips_flattened_objects() -> None:
    tables = {"locations", "locations__business_hours__periods", "orders", "orders__refunds"}
    tables |= {"orders__refunds__refund_line_items"}
    assert _lineage("locations__business_hours__periods", tables) == ("locations",)
    assert _lineage("orders__refunds__refund_line_items", tables) == ("orders__refunds", "orders")
    assert _lineage("orders", tables) == ()


def test_child_frames_take_the_load_id_of_their_root_row() -> None:
    table = RawTable(
        schema="raw_shop",
        name="orders__refunds__refund_line_items",
        columns={"quantity": "BIGINT", "_dlt_parent_id": "VARCHAR", "_dlt_id": "VARCHAR"},
        lineage=("orders__refunds", "orders"),
    )
    sql = frame_sql(table, TableRules(table=table.name, ranges={"quantity": (0, 1)}), ["1.5"])
    assert "p1._dlt_load_id as _dlt_load_id" in sql
    assert 'join "raw_shop"."orders" p1 on p0._dlt_parent_id = p1._dlt_id' in sql
    assert "where p1._dlt_load_id in ('1.5')" in sql


@pytest.mark.parametrize("source", ["shop", "pos", "social"])
def test_rules_name_each_table_once_and_require_known_tables(source: str) -> None:
    rules = source_rules(source)
    names = [table.table for table in rules.tables]
    assert len(names) == len(set(names))
    assert set(rules.required_tables) <= set(names)
    for table in rules.tables:
        assert set(table.key) <= table.columns()
        for low, high in table.ranges.values():
            assert low < high


def test_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown source"):
        source_rules("fax")
