"""Helpers the measurement tests share: dbt on a private home, and a fixture measurement schema.

``run_dbt`` runs the venv's dbt with a private ``OMNI_HOME``, target and log folder (the
checkout's ``dbt_project/target`` is never touched). ``write_measurement_fixture`` creates the
tables the report reads, with the columns of the contract (docs/measurement contract and
``dbt_project/models/measurement``), filled with hand-made rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration import settings

PROJECT_DIR = settings.REPO_ROOT / "dbt_project"


def run_dbt(home: Path, target_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dbt = Path(sys.executable).with_name("dbt")
    env = {**os.environ, "OMNI_HOME": str(home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    command = [
        str(dbt),
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
        "--target-path",
        str(target_dir),
        "--log-path",
        str(target_dir / "logs"),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@dataclass(frozen=True)
class LiftRow:
    """One overall row of measurement_campaign_lift (breakdowns are derived from it)."""

    campaign_id: str
    n_treatment: int
    n_holdout: int
    conversions_treatment: int
    conversions_holdout: int
    margin_t: float  # gross margin per treated customer
    margin_h: float
    cost_eur: float
    is_small_sample: bool = False


LIFT_COLUMNS = (
    "campaign_id varchar, dimension varchar, dimension_value varchar, n_treatment bigint, "
    "n_holdout bigint, conversions_treatment bigint, conversions_holdout bigint, "
    "conv_rate_t double, conv_rate_h double, lift_conv double, ci_low double, ci_high double, "
    "relative_lift_conv double, relative_ci_low double, relative_ci_high double, "
    "rev_per_customer_t double, rev_per_customer_h double, incremental_revenue double, "
    "incremental_gross_margin double, cost_eur double, roi double, is_small_sample boolean, "
    "is_significant boolean"
)


def lift_values(row: LiftRow, dimension: str = "overall", value: str = "all") -> tuple[Any, ...]:
    """A lift row computed by hand: normal-approximation interval of the difference."""
    rate_t = row.conversions_treatment / row.n_treatment
    rate_h = row.conversions_holdout / row.n_holdout
    lift = rate_t - rate_h
    se = (rate_t * (1 - rate_t) / row.n_treatment + rate_h * (1 - rate_h) / row.n_holdout) ** 0.5
    low, high = lift - 1.96 * se, lift + 1.96 * se
    margin = (row.margin_t - row.margin_h) * row.n_treatment
    roi = (margin - row.cost_eur) / row.cost_eur if row.cost_eur else None
    significant = not row.is_small_sample and (low > 0 or high < 0)
    relative = rate_t / rate_h - 1 if rate_h else None
    return (
        row.campaign_id,
        dimension,
        value,
        row.n_treatment,
        row.n_holdout,
        row.conversions_treatment,
        row.conversions_holdout,
        rate_t,
        rate_h,
        lift,
        low,
        high,
        relative,
        None if relative is None else low / rate_h,
        None if relative is None else high / rate_h,
        row.margin_t * 2.5,
        row.margin_h * 2.5,
        margin * 2.5,
        margin,
        row.cost_eur,
        roi,
        row.is_small_sample,
        significant,
    )


def write_measurement_fixture(
    warehouse: Path,
    lift: Sequence[LiftRow],
    *,
    stages: dict[str, int] | None = None,
    transitions: Sequence[tuple[str, str]] = (),
    kpis: Sequence[tuple[str, str, float | None, float, float]] = (),
    prices: Sequence[tuple[int, str, str, str | None, float, float]] = (),
    maturity: Sequence[tuple[str, str, float | None, int, int]] = (),
) -> None:
    """Create marts.dim_customers and the measurement schema in ``warehouse`` (a new file).

    ``transitions`` are (stage at assignment, stage now) pairs, one customer each; every lift
    row gets a `channel` breakdown (`email`) and a `segment` breakdown (`champions`).
    """
    import duckdb

    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists marts")
        con.execute("create schema if not exists measurement")
        con.execute(
            "create table marts.dim_customers (customer_id varchar, lifecycle_stage varchar, "
            "as_of_date date)"
        )
        customers = []
        for stage, count in (stages or {}).items():
            customers += [(f"{stage}-{index}", stage) for index in range(count)]
        customers += [(f"moved-{index}", now) for index, (_, now) in enumerate(transitions)]
        if customers:
            con.executemany(
                "insert into marts.dim_customers values (?, ?, date '2026-11-01')", customers
            )
        con.execute(
            "create table measurement.measurement_assignments (campaign_id varchar, "
            "customer_id varchar, trigger_key varchar, assignment_group varchar, "
            "lifecycle_stage varchar, segment varchar)"
        )
        if transitions:
            con.executemany(
                "insert into measurement.measurement_assignments values "
                "('c', ?, 'k', 'treatment', ?, 'loyal')",
                [(f"moved-{index}", before) for index, (before, _) in enumerate(transitions)],
            )
        con.execute(f"create table measurement.measurement_campaign_lift ({LIFT_COLUMNS})")
        placeholders = ", ".join("?" for _ in range(23))
        for row in lift:
            for dimension, value in (
                ("overall", "all"),
                ("channel", "email"),
                ("segment", "champions"),
            ):
                con.execute(
                    f"insert into measurement.measurement_campaign_lift values ({placeholders})",
                    list(lift_values(row, dimension, value)),
                )
        con.execute(
            "create table measurement.measurement_omnichannel_kpis (kpi varchar, unit varchar, "
            "value double, numerator double, denominator double)"
        )
        if kpis:
            con.executemany(
                "insert into measurement.measurement_omnichannel_kpis values (?, ?, ?, ?, ?)", kpis
            )
        con.execute(
            "create table measurement.measurement_price_consistency (price_mismatch_id varchar, "
            "product_id bigint, sku varchar, title varchar, category varchar, channel_a varchar, "
            "channel_b varchar, marketplace varchar, compared_record_id varchar, "
            "price_a_eur double, price_b_eur double, difference_eur double, "
            "difference_pct double)"
        )
        if prices:
            con.executemany(
                "insert into measurement.measurement_price_consistency values "
                "(md5(cast(? as varchar) || ?), ?, 'SKU', 'A product', 'shoes', ?, ?, ?, 'r1', "
                "?, ?, round(? - ?, 2), round(100 * (? - ?) / ?, 2))",
                [
                    (pid, b, pid, a, b, market, pa, pb, pb, pa, pb, pa, pa)
                    for pid, a, b, market, pa, pb in prices
                ],
            )
        con.execute(
            "create table measurement.measurement_maturity_scores (journey_type varchar, "
            "dimension varchar, score double, numerator bigint, denominator bigint, "
            "proxy varchar)"
        )
        if maturity:
            con.executemany(
                "insert into measurement.measurement_maturity_scores values "
                "(?, ?, ?, ?, ?, 'a documented proxy')",
                maturity,
            )


@dataclass
class Element:
    """An element of a parsed report: tag, attributes and the chart it sits in (if any)."""

    tag: str
    attrs: dict[str, str]
    chart: str | None


def parse_report(html: str) -> list[Element]:
    """Every element of ``html``, each with the ``data-chart`` of its enclosing chart SVG."""
    from html.parser import HTMLParser

    elements: list[Element] = []
    stack: list[str | None] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = {name: value or "" for name, value in attrs}
            chart = stack[-1] if stack else None
            if tag == "svg" and "chart" in values.get("class", "").split():
                chart = values.get("data-chart")
            elements.append(Element(tag, values, chart))
            if tag not in ("meta", "br", "img", "input", "link"):
                stack.append(chart)

        def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = {name: value or "" for name, value in attrs}
            elements.append(Element(tag, values, stack[-1] if stack else None))

        def handle_endtag(self, tag: str) -> None:
            if tag not in ("meta", "br", "img", "input", "link") and stack:
                stack.pop()

    Collector().feed(html)
    return elements


def marks(elements: list[Element], chart: str) -> list[Element]:
    """The data marks (``class="mark ..."``) of one chart."""
    return [
        element
        for element in elements
        if element.chart == chart and "mark" in element.attrs.get("class", "").split()
    ]


# --- the report fixture used by test_report and test_report_browser ------------------------

CAMPAIGNS = [
    # 10 % vs 5 % over 2,000 / 500: clearly significant.
    LiftRow("abandoned_cart_nearby_store", 2000, 500, 200, 25, 4.0, 1.5, 300.0),
    # 6 % vs 5 % over 400 / 100: the interval covers zero.
    LiftRow("win_back_recovery", 400, 100, 24, 5, 1.2, 1.0, 50.0),
    # 20 treated, 5 held out: small sample whatever the numbers say.
    LiftRow("second_purchase_nudge", 20, 5, 10, 0, 9.0, 0.0, 2.0, is_small_sample=True),
]
STAGES = {"acquisition": 7, "experimentation": 5, "loyalty": 9, "retention": 3, "recovery": 4}
TRANSITIONS = [
    ("experimentation", "loyalty"),
    ("experimentation", "loyalty"),
    ("retention", "recovery"),
    ("loyalty", "loyalty"),
]
PRICES = [  # product_id, channel_a, channel_b, marketplace, price_a_eur, price_b_eur
    (101, "web", "store", None, 19.99, 21.99),
    (102, "web", "marketplace", "amazon", 5.00, 4.50),
]
MATURITY = [  # journey_type, dimension, score, numerator, denominator
    ("abandoned_cart", "availability", 80.0, 8, 10),
    ("abandoned_cart", "persistence", 100.0, 10, 10),
    ("abandoned_cart", "traceability", 60.0, 6, 10),
    ("abandoned_cart", "history", 40.0, 4, 10),
    ("campaign_contact", "availability", None, 0, 0),  # no instance yet
    ("campaign_contact", "persistence", None, 0, 0),
    ("campaign_contact", "traceability", None, 0, 0),
    ("campaign_contact", "history", None, 0, 0),
]
KPIS = [  # kpi, unit, value, numerator, denominator
    ("spend_per_customer_single_channel", "eur", 80.0, 8000.0, 100.0),
    ("spend_per_customer_multi_channel", "eur", 104.0, 5200.0, 50.0),
    ("multi_channel_spend_uplift", "ratio", 0.3, 104.0, 80.0),
    ("abandoned_cart_store_completion_share", "share", 0.12, 12.0, 100.0),
    ("abandoned_cart_store_completion_median_hours", "hours", 26.5, None, 12.0),
    ("contact_cross_channel_continuation_share", "share", None, 0.0, 0.0),
]


def full_fixture(cfg: settings.Settings) -> None:
    """The report fixture with every table filled."""
    write_measurement_fixture(
        cfg.warehouse_path,
        CAMPAIGNS,
        stages=STAGES,
        transitions=TRANSITIONS,
        kpis=KPIS,
        prices=PRICES,
        maturity=MATURITY,
    )
