"""The raw quality gate on small raw tables loaded by dlt (one GX import for the module)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest
import rawdata
from rawdata import BAD_TIME

from orchestration import settings
from orchestration.quality import QualityGateFailed, check_raw
from orchestration.quality.gate import pass_message
from orchestration.settings import Settings


def make_cfg(home: Path) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(settings.load(), omni_home=home)


def quarantined(cfg: Settings) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute(
            "select table_name, record_id, rule, details, record::varchar, load_id "
            "from quarantine.raw_rows order by all"
        ).fetchall()


def checked(cfg: Settings) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute(
            "select source, load_id, rows_checked from quarantine.checked_loads order by all"
        ).fetchall()


def damaged_world(home: Path) -> dict[str, str]:
    """Good records plus one bad record per rule in every source; the load id per source."""
    shop = rawdata.good_shop()
    shop["customers"] += [
        rawdata.shop_customer(901, default_address={"latitude": 999, "longitude": -3.7}),
        rawdata.shop_customer(902, email_marketing_consent={"state": "lost_in_space"}),
        rawdata.shop_customer(903, created_at=BAD_TIME),
        rawdata.shop_customer(None),
        rawdata.shop_customer(905),
        rawdata.shop_customer(905),
        rawdata.shop_customer(906, default_address={"latitude": 40.0, "longitude": 200.0}),
    ]
    shop["orders"] += [
        rawdata.shop_order(911, total_price="-24.95"),
        rawdata.shop_order(912, total_price="abc"),
        rawdata.shop_order(913, financial_status="lost_in_space"),
        rawdata.shop_order(914, quantity=-2),
        rawdata.shop_order(915, updated_at=None),
    ]
    pos = rawdata.good_pos()
    pos["locations"].append(rawdata.pos_location("L0009", latitude=999))
    pos["orders"] += [
        rawdata.pos_order("P901", state="LOST_IN_SPACE"),
        rawdata.pos_order("P902", quantity="-2"),
        rawdata.pos_order("P903", total_money={"amount": -1230, "currency": "EUR"}),
    ]
    pos["inventory_counts"] += [rawdata.pos_count(None), rawdata.pos_count("V8", quantity="-5")]
    pos["customers"].append({"id": "C9", "created_at": BAD_TIME, "updated_at": rawdata.GOOD_TIME})
    social = rawdata.good_social()
    social["comments"] += [
        rawdata.social_comment("S901", sentiment="angry"),
        rawdata.social_comment("S902", sentiment_score=1.5),
        rawdata.social_comment("S903", created_time=BAD_TIME),
        rawdata.social_comment(None),
    ]
    return {
        "shop": rawdata.load(home, "shop", shop),
        "pos": rawdata.load(home, "pos", pos),
        "social": rawdata.load(home, "social", social),
    }


EXPECTED = Counter(
    {
        ("customers", "901", "invalid_coordinate"): 1,
        ("customers", "902", "unknown_enum"): 1,
        ("customers", "903", "invalid_timestamp"): 1,
        ("customers", None, "missing_key"): 1,
        ("customers", "905", "duplicate_key"): 2,
        ("customers", "906", "invalid_coordinate"): 1,
        ("orders", "911", "out_of_range"): 1,
        ("orders__line_items", "9111", "parent_quarantined"): 1,
        ("orders", "912", "invalid_number"): 1,
        ("orders__line_items", "9121", "parent_quarantined"): 1,
        ("orders", "913", "unknown_enum"): 1,
        ("orders__line_items", "9131", "parent_quarantined"): 1,
        ("orders__line_items", "9141", "out_of_range"): 1,  # a bad child keeps its parent
        ("orders", "915", "missing_value"): 1,
        ("orders__line_items", "9151", "parent_quarantined"): 1,
        ("locations", "L0009", "invalid_coordinate"): 1,
        ("locations__business_hours__periods", None, "parent_quarantined"): 1,
        ("orders", "P901", "unknown_enum"): 1,
        ("orders__line_items", "P901-1", "parent_quarantined"): 1,
        ("orders__line_items", "P902-1", "out_of_range"): 1,
        ("orders", "P903", "out_of_range"): 1,
        ("orders__line_items", "P903-1", "parent_quarantined"): 1,
        ("inventory_counts", "|L0001|IN_STOCK", "missing_key"): 1,
        ("inventory_counts", "V8|L0001|IN_STOCK", "out_of_range"): 1,
        ("customers", "C9", "invalid_timestamp"): 1,
        ("comments", "S901", "unknown_enum"): 1,
        ("comments", "S902", "out_of_range"): 1,
        ("comments", "S903", "invalid_timestamp"): 1,
        ("comments", None, "missing_key"): 1,
    }
)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    """One world with a bad record per rule, checked once with a tolerance that lets it pass."""
    cfg = make_cfg(tmp_path_factory.mktemp("damaged") / "omni")
    damaged_world(cfg.omni_home)
    return cfg, check_raw(cfg, tolerance=1.0)


def test_each_rule_catches_its_bad_row_and_only_it(
    damaged: tuple[Settings, dict[str, Any]],
) -> None:
    cfg, summary = damaged
    found = Counter((table, record, rule) for table, record, rule, *_ in quarantined(cfg))
    assert found == EXPECTED
    assert summary["passed"] and summary["quarantined_rows"] == sum(EXPECTED.values())


def test_quarantine_rows_carry_details_record_and_load(
    damaged: tuple[Settings, dict[str, Any]],
) -> None:
    cfg, _ = damaged
    rows = {(table, record, rule): rest for table, record, rule, *rest in quarantined(cfg)}
    details, record, load_id = rows[("orders", "913", "unknown_enum")]
    assert details == "financial_status=lost_in_space"
    assert json.loads(record)["id"] == 913 and json.loads(record)["_dlt_id"]
    line_details, _, line_load = rows[("orders__line_items", "9131", "parent_quarantined")]
    assert line_details.startswith("_dlt_parent_id=orders:") and line_load == load_id
    assert rows[("customers", "903", "invalid_timestamp")][0] == f"created_at={BAD_TIME}"


def test_summary_counts_bad_rows_per_table_and_is_written(
    damaged: tuple[Settings, dict[str, Any]],
) -> None:
    cfg, summary = damaged
    orders = summary["sources"]["shop"]["tables"]["orders"]
    assert orders["rows"] == 25 and orders["bad_rows"] == 4
    rules = {item["rule"]: item for item in orders["broken_rules"]}
    assert rules["unknown_enum"]["examples"] == ["913: lost_in_space"]
    line_items = summary["sources"]["shop"]["tables"]["orders__line_items"]
    assert line_items["bad_rows"] == 1 and line_items["children_quarantined"] == 4
    written = json.loads((cfg.quality_dir / "raw-latest.json").read_text())
    assert written["sources"]["pos"]["tables"]["orders"]["bad_rows"] == 2
    assert Path(summary["summary_path"]).exists()


def test_rerun_validates_only_new_loads(damaged: tuple[Settings, dict[str, Any]]) -> None:
    cfg, _ = damaged
    before = quarantined(cfg)
    assert {source for source, *_ in checked(cfg)} == {"shop", "pos", "social"}

    again = check_raw(cfg, tolerance=1.0)
    assert again["rows_checked"] == 0 and again["quarantined_rows"] == 0
    assert quarantined(cfg) == before

    new_load = rawdata.load(
        cfg.omni_home, "social", {"comments": [rawdata.social_comment("S950", sentiment="meh")]}
    )
    third = check_raw(cfg, sources=("social",), tolerance=1.0)
    assert third["rows_checked"] == 1 and third["quarantined_rows"] == 1
    after = quarantined(cfg)
    assert len(after) == len(before) + 1
    assert [row[5] for row in after if row[1] == "S950"] == [new_load]


def test_gate_fails_over_tolerance_with_readable_summary(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "omni")
    shop = rawdata.good_shop(orders=10)
    shop["orders"] += [
        rawdata.shop_order(900 + i, financial_status="lost_in_space") for i in range(6)
    ]
    rawdata.load(cfg.omni_home, "shop", shop)

    with pytest.raises(QualityGateFailed) as failed:
        check_raw(cfg, sources=("shop",))
    message = str(failed.value)
    assert "raw_shop.orders: 6 of 16 new rows (37.5%)" in message
    assert "unknown_enum on financial_status: 6 rows, e.g. 900: lost_in_space" in message
    assert failed.value.summary["passed"] is False
    first = quarantined(cfg)
    assert len(first) == 12  # 6 orders and their 6 line items
    assert checked(cfg) == []  # a failed source stays unchecked

    with pytest.raises(QualityGateFailed):
        check_raw(cfg, sources=("shop",))
    assert [row[:4] for row in quarantined(cfg)] == [row[:4] for row in first]

    passed = check_raw(cfg, sources=("shop",), tolerance=0.5)
    assert passed["passed"] and len(quarantined(cfg)) == 12 and len(checked(cfg)) == 1


def test_few_bad_rows_under_tolerance_pass(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "omni")
    shop = rawdata.good_shop(orders=40)
    shop["orders"].append(rawdata.shop_order(999, financial_status="lost_in_space"))
    rawdata.load(cfg.omni_home, "shop", shop)
    summary = check_raw(cfg, sources=("shop",))
    assert summary["passed"]
    assert summary["sources"]["shop"]["tables"]["orders"]["bad_rows"] == 1
    lines = pass_message(summary).splitlines()
    assert lines[0].endswith("2 rows quarantined in quarantine.raw_rows")
    assert (
        "- raw_shop.orders: 1 of 41 rows (2.4%) broke rules (unknown_enum on financial_status: 1)"
        in lines
    )
    assert "- raw_shop.orders__line_items: 1 with a quarantined parent" in lines


def test_table_level_failures(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "omni")
    shop = rawdata.good_shop()
    del shop["products"]
    for order in shop["orders"]:
        del order["total_price"]
    rawdata.load(cfg.omni_home, "shop", shop)

    with pytest.raises(QualityGateFailed) as failed:
        check_raw(cfg, sources=("shop", "social"))
    message = str(failed.value)
    assert "table raw_shop.products does not exist" in message
    assert "raw_shop.orders: missing_column column total_price" in message
    assert "schema raw_social does not exist" in message
    assert quarantined(cfg) == []  # the quarantine table exists, even empty


def test_typed_timestamps_and_variant_columns(tmp_path: Path) -> None:
    """With dlt's timestamp detection on, a bad value lands in ``created_at__v_text``."""
    cfg = make_cfg(tmp_path / "omni")
    shop = rawdata.good_shop()
    shop["customers"].append(rawdata.shop_customer(903, created_at=BAD_TIME))
    rawdata.load(cfg.omni_home, "shop", shop, detect_timestamps=True)
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        columns = dict(
            con.execute(
                "select column_name, column_type from (describe raw_shop.customers)"
            ).fetchall()
        )
    assert columns["created_at"].startswith("TIMESTAMP") and "created_at__v_text" in columns

    check_raw(cfg, sources=("shop",))
    assert [row[:4] for row in quarantined(cfg)] == [
        ("customers", "903", "invalid_timestamp", f"created_at={BAD_TIME}")
    ]
