"""The measurement models on a small simulated world, recomputed independently in Python.

simulator -> sandbox services -> dlt ingest -> published campaigns -> ``dbt build`` of the
warehouse; then a real dispatch ledger (SQLite in a private ``OMNI_HOME``) records one
campaign's decisions at a past moment (every other customer with an order held out, the rest
emailed; some emails dead-lettered), ``load_dispatch`` copies it into the warehouse and the
dispatch + measurement models are built with their data tests. The assignments, the
conversions in the attribution window and the overall lift row are then recomputed here from
``marts.fct_orders`` and compared. The arithmetic on hand-computed fixtures is in the dbt unit
tests (``dbt_project/models/measurement/_measurement__unit_tests.yml``), which run in the same
build. Also: the campaign setting ``measurement.attribution_window_days``.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pydantic import ValidationError

from orchestration import settings
from orchestration.campaigns.config import Campaign
from orchestration.campaigns.loader import load_campaign
from orchestration.campaigns.publish import campaign_row

CUSTOMERS = 300
DAYS = 60
SEED = 31
END_DATE = date(2026, 11, 1)
CAMPAIGN = "win_back_recovery"  # shipped, published, no attribution window set: 14 days
WINDOW_DAYS = 14
ASSIGNED_AT = datetime(2026, 10, 10, 10, 0)
MEASUREMENT = (
    "--select",
    "stg_config__campaigns",
    "stg_pos__cashback_redemptions",
    "stg_shop__order_discount_codes",
    "path:models/dispatch",
    "path:models/measurement",
)
SHIPPED = settings.REPO_ROOT / "campaigns"
PROJECT_DIR = settings.REPO_ROOT / "dbt_project"
# The warehouse layers from raw data (as tests/dbt/test_dbt_build.py builds them).
LAYERS = (
    "--select",
    "path:models/staging",
    "path:models/intermediate",
    "path:models/marts",
    "--indirect-selection",
    "cautious",
)


def run_dbt(home: Path, target_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The venv's dbt on the project with a private OMNI_HOME, target and log folder."""
    dbt = Path(sys.executable).with_name("dbt")
    env = {**os.environ, "OMNI_HOME": str(home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    project = ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    paths = ["--target-path", str(target_dir), "--log-path", str(target_dir / "logs")]
    command = [str(dbt), *args, *project, *paths]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@dataclass(frozen=True)
class Measured:
    """The warehouse after the measurement build, and what the ledger was told."""

    warehouse: Path
    treated_at: dict[str, datetime]  # customer -> scheduled_send_at of the sent email
    held_out_at: dict[str, datetime]  # customer -> would_contact_at
    dead: set[str]  # customers whose only email was dead-lettered


def _record_ledger(cfg: settings.Settings, customers: list[str]) -> Measured:
    """Record the decisions in the real ledger at ASSIGNED_AT and load it into the warehouse."""
    from orchestration.dispatch.ledger import Ledger
    from orchestration.dispatch.warehouse_load import load_dispatch

    treated_at: dict[str, datetime] = {}
    held_out_at: dict[str, datetime] = {}
    dead: set[str] = set()
    with Ledger.from_settings(cfg) as ledger:
        treated_rows: list[dict[str, Any]] = []
        holdout_rows: list[dict[str, Any]] = []
        for index, customer_id in enumerate(customers):
            row: dict[str, Any] = {
                "campaign_id": CAMPAIGN,
                "customer_id": customer_id,
                "trigger_key": f"wb:{customer_id}",
                "channel": "email",
                "scheduled_send_at": ASSIGNED_AT + timedelta(minutes=index),
            }
            (holdout_rows if index % 2 == 0 else treated_rows).append(row)
        ledger.record_intents(treated_rows, now=ASSIGNED_AT - timedelta(hours=1))
        ledger.record_holdouts(holdout_rows, now=ASSIGNED_AT - timedelta(hours=1))
        for row in holdout_rows:
            held_out_at[row["customer_id"]] = row["scheduled_send_at"]
        scheduled = {row["customer_id"]: row["scheduled_send_at"] for row in treated_rows}
        claimed = ledger.claim("email", len(treated_rows), now=ASSIGNED_AT + timedelta(days=1))
        for position, contact in enumerate(claimed):
            moment = ASSIGNED_AT + timedelta(hours=2, minutes=position)
            if position % 5 == 0:
                ledger.dead_letter(contact.contact_id, "rejected", now=moment)
                dead.add(contact.customer_id)
            else:
                ledger.mark_sent(contact.contact_id, f"msg-{position}", now=moment)
                # measured from the scheduled send, like a holdout (not from the send itself)
                treated_at[contact.customer_id] = scheduled[contact.customer_id]
    load_dispatch(cfg)
    return Measured(cfg.warehouse_path, treated_at, held_out_at, dead)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Measured]:
    from orchestration.campaigns.publish import publish_campaign_files
    from orchestration.sandbox import services, world
    from orchestration.sources import ingest

    root = tmp_path_factory.mktemp("measurement")
    home = root / "omni"
    target_dir = root / "target"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(home))
        patch.setenv("OMNI_LEDGER_URL", f"sqlite:///{root / 'ledger.sqlite'}")
        cfg = settings.load()
        world.generate(cfg.world_dir, CUSTOMERS, DAYS, SEED, end_date=END_DATE)
        with services.running(cfg.world_dir) as urls:
            for source in ("shop", "pos", "social"):
                ingest(source, base_url=urls[source], cfg=cfg)
        publish_campaign_files(cfg)
        result = run_dbt(home, target_dir, "build", *LAYERS)
        assert result.returncode == 0, result.stdout[-6000:]
        with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
            customers = [
                str(customer_id)
                for (customer_id,) in con.execute(
                    "select distinct customer_id from marts.fct_orders "
                    "where customer_id is not null and ordered_at < ? order by 1",
                    [ASSIGNED_AT],
                ).fetchall()
            ]
        assert len(customers) >= 100
        state = _record_ledger(cfg, customers)
    result = run_dbt(home, target_dir, "build", *MEASUREMENT)
    assert result.returncode == 0, result.stdout[-6000:]
    assert re.search(r"\b[1-9]\d* unit tests?\b", result.stdout), "the unit tests ran"
    yield state


def query(measured: Measured, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(measured.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def _expected_conversions(measured: Measured) -> dict[tuple[str, str], str]:
    """(customer, order) -> group, for orders in (assigned_at, assigned_at + 14 days]."""
    orders = query(
        measured,
        "select customer_id, order_id, ordered_at from marts.fct_orders "
        "where customer_id is not null",
    )
    arms = [(measured.treated_at, "treatment"), (measured.held_out_at, "holdout")]
    expected: dict[tuple[str, str], str] = {}
    for customer_id, order_id, ordered_at in orders:
        for starts, group in arms:
            start = starts.get(customer_id)
            if start is not None and start < ordered_at <= start + timedelta(days=WINDOW_DAYS):
                expected[(customer_id, order_id)] = group
    return expected


def test_assignments_are_the_ledger_decisions(measured: Measured) -> None:
    rows = query(
        measured,
        "select customer_id, assignment_group, assigned_at, attribution_window_days "
        "from measurement.measurement_assignments where campaign_id = 'win_back_recovery'",
    )
    got = {customer: (group, at) for customer, group, at, _ in rows}
    expected = {c: ("treatment", at) for c, at in measured.treated_at.items()}
    expected |= {c: ("holdout", at) for c, at in measured.held_out_at.items()}
    assert got == expected
    assert not measured.dead & set(got), "a dead-lettered email is not a treatment"
    assert {window for *_, window in rows} == {WINDOW_DAYS}


def test_conversions_are_the_orders_in_the_window(measured: Measured) -> None:
    rows = query(
        measured,
        "select customer_id, order_id, assignment_group from measurement.measurement_conversions",
    )
    got = {(customer, order): group for customer, order, group in rows}
    expected = _expected_conversions(measured)
    assert got == expected
    assert {"treatment", "holdout"} <= set(expected.values()), "the world should convert both arms"


def test_overall_lift_matches_an_independent_computation(measured: Measured) -> None:
    converted = {customer for customer, _ in _expected_conversions(measured)}
    n_t, n_h = len(measured.treated_at), len(measured.held_out_at)
    c_t = len(converted & set(measured.treated_at))
    c_h = len(converted & set(measured.held_out_at))
    p_t, p_h = c_t / n_t, c_h / n_h
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_h * (1 - p_h) / n_h)
    (row,) = query(
        measured,
        "select n_treatment, n_holdout, conversions_treatment, conversions_holdout, lift_conv, "
        "ci_low, ci_high, is_small_sample, is_significant, message_cost_eur "
        "from measurement.measurement_campaign_lift "
        "where campaign_id = 'win_back_recovery' and dimension = 'overall'",
    )
    print(f"treated {c_t}/{n_t}, holdout {c_h}/{n_h}, interval [{row[5]}, {row[6]}]")
    assert row[:4] == (n_t, n_h, c_t, c_h)
    assert row[4] == pytest.approx(p_t - p_h, abs=1e-6)
    assert row[5] == pytest.approx(p_t - p_h - 1.959964 * se, abs=1e-5)
    assert row[6] == pytest.approx(p_t - p_h + 1.959964 * se, abs=1e-5)
    assert row[7] == (n_t < 30 or n_h < 30)
    assert row[8] == (not row[7] and (row[5] > 0 or row[6] < 0))
    assert row[9] == pytest.approx(round(0.001 * n_t, 2))  # var cost_per_email_eur


def test_omnichannel_outputs_have_every_row(measured: Measured) -> None:
    kpis = dict(query(measured, "select kpi, value from measurement.measurement_omnichannel_kpis"))
    assert len(kpis) == 9
    assert 0 <= kpis["abandoned_cart_store_completion_share"] <= 1
    assert kpis["spend_per_customer_single_channel"] > 0
    (cells,) = query(measured, "select count(*) from measurement.measurement_maturity_scores")
    assert cells == (20,)
    mismatches = query(
        measured,
        "select count(*) from measurement.measurement_price_consistency "
        "where abs(price_b_eur - price_a_eur) < 0.01",
    )
    assert mismatches == [(0,)]


# --- the campaign setting ----------------------------------------------------------------------


def _shipped(**measurement: Any) -> Campaign:
    campaign = load_campaign(SHIPPED / f"{CAMPAIGN}.yml")
    data = campaign.model_dump(mode="json")
    if measurement:
        data["measurement"] = measurement
    return Campaign.model_validate(data, context={"templates_dir": SHIPPED / "templates"})


def test_attribution_window_defaults_to_14_days_and_is_published() -> None:
    campaign = _shipped()
    assert campaign.measurement.attribution_window_days == 14
    row = campaign_row(_shipped(attribution_window_days=30), datetime(2026, 11, 1))
    assert row["attribution_window_days"] == 30


@pytest.mark.parametrize("days", [0, 91, "two weeks"])
def test_attribution_window_outside_1_to_90_days_is_an_error(days: object) -> None:
    with pytest.raises(ValidationError) as error:
        _shipped(attribution_window_days=days)
    assert error.value.errors()[0]["loc"] == ("measurement", "attribution_window_days")
