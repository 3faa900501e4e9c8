"""The measurement report: one self-contained HTML file (inline CSS, inline SVG, no script).

``omni report`` and the ``measurement`` DAG write it to ``OMNI_HOME/reports/report-<date>.html``
and copy it to ``latest.html``. It reads the warehouse read-only:

- ``measurement_campaign_lift``: lift per campaign with its 95 % interval (forest plot) and the
  numbers behind it; ROI per campaign, by channel and by segment (bars);
- ``dim_customers`` (stage counts) and ``measurement_assignments`` (stage at assignment -> stage
  now): the lifecycle flow; with ``predictions.customer_predictions``, the predictive model's
  p_alive, expected purchases and value per lifecycle stage;
- ``measurement_omnichannel_kpis``, ``measurement_price_consistency`` (every mismatch listed),
  ``measurement_maturity_scores``;
- the simulator's true effects (``world/effects.json``, sandbox only) for the closing note.

A table that does not exist yet, or is empty, leaves its section saying so; the report never
fails for lack of data. Small or non-significant results are labelled as such, never as wins.
The report's numbers come from SQL; this module only aggregates ROI over campaigns (sums of
margin and cost) and presents.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestration.measurement import charts, tables
from orchestration.settings import Settings

STAGES = ("acquisition", "experimentation", "loyalty", "retention", "recovery")
MAX_TABLE_ROWS = 500


class ReportError(RuntimeError):
    """The report cannot be written (no warehouse, unwritable path)."""


@dataclass
class Section:
    """One part of the report: a heading, charts (HTML), tables and notes."""

    key: str
    title: str
    intro: str = ""
    charts: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    empty: str = ""  # shown instead of charts and tables when there is nothing to show
    notes: list[str] = field(default_factory=list)


@dataclass
class Table:
    """A table for the template: header names and already formatted cells."""

    name: str
    header: list[str]
    rows: list[list[str]]
    total_rows: int = 0
    row_classes: list[str] = field(default_factory=list)


# --- values -------------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _first(row: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` present in ``row`` (columns of models still settling)."""
    for name in names:
        if name in row:
            return row[name]
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "t", "1", "yes")
    return bool(value)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float | Decimal):
        return f"{float(value):,.4f}".rstrip("0").rstrip(".")
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _pp(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f} pp"


def _eur(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f} EUR"


def _roi(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.0f} %"


def _generic_table(name: str, found: list[dict[str, Any]]) -> Table:
    header = list(found[0]) if found else []
    rows = [[_cell(row[column]) for column in header] for row in found[:MAX_TABLE_ROWS]]
    return Table(name, header, rows, total_rows=len(found))


# --- reading ------------------------------------------------------------------------------


@dataclass
class ReportData:
    """What the report shows; None = the table does not exist in the warehouse."""

    lift: list[dict[str, Any]] | None
    stage_counts: dict[str, int] | None
    transitions: dict[tuple[str, str], float] | None
    kpis: list[dict[str, Any]] | None
    prices: list[dict[str, Any]] | None
    maturity: list[dict[str, Any]] | None
    as_of_date: Any = None
    predictions: list[dict[str, Any]] | None = None  # per lifecycle stage
    true_effects: dict[str, float] | None = None
    effects_default: float = 0.0
    shipped_campaigns: list[str] = field(default_factory=list)  # valid files in campaigns/


def _read_all(con: Any, name: str, schemas: tuple[str, ...]) -> list[dict[str, Any]] | None:
    table = tables.find_table(con, name, schemas)
    if table is None:
        return None
    return tables.rows(con, f"select * from {table}")


def read_report_data(cfg: Settings) -> ReportData:
    """Read everything the report shows from the warehouse (read-only)."""
    try:
        con = tables.connect(cfg)
    except tables.WarehouseUnavailable as error:
        raise ReportError(str(error)) from error
    with con:
        lift = _read_all(con, "measurement_campaign_lift", ("measurement",))
        stage_counts, as_of = _stage_counts(con)
        transitions = _transitions(con)
        kpis = _read_all(con, "measurement_omnichannel_kpis", ("measurement",))
        prices = _read_all(con, "measurement_price_consistency", ("measurement",))
        maturity = _read_all(con, "measurement_maturity_scores", ("measurement",))
        predictions = _predictions_by_stage(con)
    data = ReportData(lift, stage_counts, transitions, kpis, prices, maturity, as_of)
    data.predictions = predictions
    _read_true_effects(cfg, data)
    data.shipped_campaigns = _shipped_campaigns(cfg)
    return data


def _shipped_campaigns(cfg: Settings) -> list[str]:
    """Ids of the valid campaign files (a broken file is reported by `omni campaigns validate`)."""
    from orchestration.campaigns import load_all

    try:
        campaigns, _ = load_all(cfg.campaigns_dir)
    except OSError:
        return []
    return sorted(campaign.id for campaign in campaigns)


def _stage_counts(con: Any) -> tuple[dict[str, int] | None, Any]:
    dim = tables.find_table(con, "dim_customers", ("marts",))
    if dim is None:
        return None, None
    counts = {
        str(stage): int(count)
        for stage, count in con.execute(
            f"select lifecycle_stage, count(*) from {dim} group by 1"
        ).fetchall()
    }
    as_of = con.execute(f"select max(as_of_date) from {dim}").fetchone()
    return counts, as_of[0] if as_of else None


def _predictions_by_stage(con: Any) -> list[dict[str, Any]] | None:
    """The model's scores summarised per lifecycle stage (customers with a score only)."""
    table = tables.find_table(con, "customer_predictions", ("predictions",))
    dim = tables.find_table(con, "dim_customers", ("marts",))
    if table is None or dim is None:
        return None
    return tables.rows(
        con,
        f"select customers.lifecycle_stage, count(*) as customers, "
        f"avg(predictions.p_alive) as mean_p_alive, "
        f"avg(case when predictions.p_alive < 0.5 then 1.0 else 0.0 end) as share_below_half, "
        f"quantile_cont(predictions.p_alive, 0.1) as p_alive_p10, "
        f"quantile_cont(predictions.p_alive, 0.5) as p_alive_median, "
        f"sum(predictions.expected_purchases_90d) as expected_purchases_90d, "
        f"sum(predictions.predicted_value_90d) as predicted_value_90d, "
        f"max(predictions.as_of_date) as as_of_date, max(predictions.model_name) as model_name "
        f"from {table} as predictions "
        f"join {dim} as customers on customers.customer_id = predictions.customer_id "
        f"where predictions.p_alive is not null "
        f"group by 1 order by 1",
    )


def _transitions(con: Any) -> dict[tuple[str, str], float] | None:
    """Assignments counted by (stage at assignment, stage now)."""
    assignments = tables.find_table(con, "measurement_assignments", ("measurement",))
    dim = tables.find_table(con, "dim_customers", ("marts",))
    if assignments is None or dim is None:
        return None
    if "lifecycle_stage" not in tables.columns(con, assignments):
        return None
    found = con.execute(
        f"select assignments.lifecycle_stage, customers.lifecycle_stage, count(*) "
        f"from {assignments} as assignments "
        f"join {dim} as customers on customers.customer_id = assignments.customer_id "
        f"where assignments.lifecycle_stage is not null group by 1, 2"
    ).fetchall()
    return {(str(before), str(now)): float(count) for before, now, count in found}


def _read_true_effects(cfg: Settings, data: ReportData) -> None:
    """The simulator's true effects, when the world is a sandbox world with effects.json."""
    try:
        from orchestration.sandbox.world.closed_loop import EffectsError, load_effects
    except ImportError:  # the sandbox is not part of a production install
        return
    try:
        effects = load_effects(cfg.world_dir)
    except (EffectsError, OSError):
        return
    if effects is not None:
        data.true_effects = dict(effects.by_campaign)
        data.effects_default = effects.default


# --- sections -----------------------------------------------------------------------------


def _overall(lift: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [row for row in lift if str(row.get("dimension", "overall")) == "overall"]
    return sorted(rows, key=lambda row: str(row.get("campaign_id")))


def _is_significant(row: dict[str, Any]) -> bool:
    return _truthy(row.get("is_significant")) and not _truthy(row.get("is_small_sample"))


def _verdict(row: dict[str, Any]) -> str:
    if _truthy(row.get("is_small_sample")):
        return "small sample, not significant"
    return "significant" if _is_significant(row) else "not significant"


def lift_section(data: ReportData) -> Section:
    section = Section(
        "lift",
        "Lift per campaign",
        "Treatment (contacted) against holdout (held out at random, measured the same way from "
        "the day they would have been contacted): conversion within the attribution window.",
    )
    if data.lift is None:
        section.empty = "No lift yet: the warehouse has no measurement.measurement_campaign_lift."
        return section
    overall = _overall(data.lift)
    measured = {str(row.get("campaign_id")) for row in overall}
    unmeasured = [campaign for campaign in data.shipped_campaigns if campaign not in measured]
    if unmeasured:
        section.notes.append(
            "Not measured yet (no treated or held-out customer): " + ", ".join(unmeasured) + "."
        )
    if not overall:
        section.empty = "No campaign has treated or held-out customers yet: no lift to show."
        return section
    intervals = [
        charts.Interval(
            label=str(row.get("campaign_id")),
            estimate=_float(row.get("lift_conv")),
            low=_float(row.get("ci_low")),
            high=_float(row.get("ci_high")),
            is_significant=_is_significant(row),
            is_small_sample=_truthy(row.get("is_small_sample")),
        )
        for row in overall
    ]
    section.charts.append(
        charts.forest_plot(
            "lift",
            "Conversion lift per campaign (treatment - holdout)",
            intervals,
            x_label="difference in conversion rate, percentage points (95 % interval)",
            y_label="campaign",
            caption=(
                "Dot: measured difference in conversion rate; bar: its 95 % confidence interval. "
                "A filled dot is significant (the interval excludes zero with enough customers "
                "in both groups); hollow dots are not significant, and small groups are "
                "marked as such rather than reported as wins."
            ),
            fmt=charts.percent,
        )
    )
    section.tables.append(
        Table(
            "lift per campaign",
            [
                "campaign",
                "treated",
                "holdout",
                "conv. treated",
                "conv. holdout",
                "lift (95 % CI)",
                "revenue / customer treated",
                "revenue / customer holdout",
                "incremental revenue",
                "incremental margin",
                "cost",
                "ROI",
                "verdict",
            ],
            [
                [
                    str(row.get("campaign_id")),
                    _cell(row.get("n_treatment")),
                    _cell(row.get("n_holdout")),
                    _pct(_float(_first(row, "conv_rate_t", "conv_rate_treatment"))),
                    _pct(_float(_first(row, "conv_rate_h", "conv_rate_holdout"))),
                    f"{_pp(_float(row.get('lift_conv')))} "
                    f"({_pp(_float(row.get('ci_low')))} to {_pp(_float(row.get('ci_high')))})",
                    _eur(_float(_first(row, "rev_per_customer_t", "rev_per_customer_treatment"))),
                    _eur(_float(_first(row, "rev_per_customer_h", "rev_per_customer_holdout"))),
                    _eur(_float(row.get("incremental_revenue"))),
                    _eur(_float(row.get("incremental_gross_margin"))),
                    _eur(_float(row.get("cost_eur"))),
                    _roi(_float(row.get("roi"))),
                    _verdict(row),
                ]
                for row in overall
            ],
            total_rows=len(overall),
            row_classes=[
                "significant" if _is_significant(row) else "not-significant" for row in overall
            ],
        )
    )
    return section


def _roi_bars(rows: list[dict[str, Any]], label_of: str) -> list[charts.Bar]:
    """ROI per value: (sum of incremental margin - sum of cost) / sum of cost over its rows."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        label = _first(row, label_of, "value") if label_of == "dimension_value" else row[label_of]
        groups.setdefault(str(label), []).append(row)
    bars = []
    for label, members in sorted(groups.items()):
        margin = sum(_float(row.get("incremental_gross_margin")) or 0.0 for row in members)
        cost = sum(_float(row.get("cost_eur")) or 0.0 for row in members)
        significant = all(_is_significant(row) for row in members)
        bars.append(
            charts.Bar(
                label=label,
                value=(margin - cost) / cost if cost > 0 else None,
                note="" if significant else "not significant",
                is_muted=not significant,
            )
        )
    return bars


def roi_section(data: ReportData) -> Section:
    section = Section(
        "roi",
        "Return on investment",
        "ROI = (incremental gross margin - cost) / cost; cost counts the provider cost per "
        "message, cashback actually redeemed and discounts actually honoured.",
    )
    if data.lift is None:
        section.empty = "No ROI yet: the warehouse has no measurement.measurement_campaign_lift."
        return section
    caption = (
        "Bars: ROI summed over the campaigns ({what}): total incremental gross margin minus "
        "total cost, over total cost. Grey bars labelled not significant include a campaign "
        "whose lift is not significant (or whose groups are small); n/a: no cost recorded."
    )
    overall = _overall(data.lift)
    if overall:
        section.charts.append(
            charts.bar_chart(
                "roi-campaign",
                "ROI per campaign",
                _roi_bars(overall, "campaign_id"),
                x_label="ROI (incremental margin - cost) / cost",
                y_label="campaign",
                caption=caption.format(what="one bar per campaign"),
                fmt=charts.ratio,
            )
        )
    for dimension, chart_id, title in (
        ("channel", "roi-channel", "ROI by channel"),
        ("segment", "roi-segment", "ROI by segment"),
    ):
        rows = [row for row in data.lift if str(row.get("dimension")) == dimension]
        if not rows:
            section.notes.append(f"{title}: no breakdown by {dimension} yet.")
            continue
        section.charts.append(
            charts.bar_chart(
                chart_id,
                title,
                _roi_bars(rows, "dimension_value"),
                x_label="ROI (incremental margin - cost) / cost",
                y_label=dimension,
                caption=caption.format(what=f"of each {dimension}"),
                fmt=charts.ratio,
            )
        )
    if not section.charts:
        section.empty = "No campaign has been measured yet: no ROI to show."
    breakdowns = [row for row in data.lift if str(row.get("dimension")) not in ("", "overall")]
    if breakdowns:
        breakdowns.sort(
            key=lambda row: (
                str(row.get("campaign_id")),
                str(row.get("dimension")),
                str(_first(row, "dimension_value", "value")),
            )
        )
        section.tables.append(
            Table(
                "lift and ROI by breakdown",
                [
                    "campaign",
                    "dimension",
                    "value",
                    "treated",
                    "holdout",
                    "lift (95 % CI)",
                    "ROI",
                    "verdict",
                ],
                [
                    [
                        str(row.get("campaign_id")),
                        str(row.get("dimension")),
                        str(_first(row, "dimension_value", "value")),
                        _cell(row.get("n_treatment")),
                        _cell(row.get("n_holdout")),
                        f"{_pp(_float(row.get('lift_conv')))} ({_pp(_float(row.get('ci_low')))}"
                        f" to {_pp(_float(row.get('ci_high')))})",
                        _roi(_float(row.get("roi"))),
                        _verdict(row),
                    ]
                    for row in breakdowns[:MAX_TABLE_ROWS]
                ],
                total_rows=len(breakdowns),
            )
        )
    return section


def lifecycle_section(data: ReportData) -> Section:
    section = Section(
        "lifecycle",
        "Lifecycle flow",
        "Where customers stand today, and how the customers measured by a campaign moved "
        "between the stage they had when contacted (or held out) and their stage today.",
    )
    if not data.stage_counts:
        section.empty = "No customers yet: the warehouse has no marts.dim_customers rows."
        return section
    stages = [stage for stage in STAGES if stage in data.stage_counts] + sorted(
        set(data.stage_counts) - set(STAGES)
    )
    section.charts.append(
        charts.bar_chart(
            "lifecycle-stages",
            "Customers per lifecycle stage",
            [charts.Bar(stage, float(data.stage_counts[stage])) for stage in stages],
            x_label="customers",
            y_label="lifecycle stage",
            caption=f"Customers per stage as of {_cell(data.as_of_date)} (dim_customers).",
        )
    )
    _predictions_part(section, data)
    if not data.transitions:
        section.notes.append(
            "No stage transitions yet: no assignment with a lifecycle stage "
            "(measurement.measurement_assignments)."
        )
        return section
    names = [stage for stage in STAGES if any(stage in pair for pair in data.transitions)]
    names += sorted({name for pair in data.transitions for name in pair} - set(names))
    section.charts.append(
        charts.matrix_chart(
            "lifecycle-flow",
            "Stage at assignment -> stage today",
            names,
            names,
            data.transitions,
            x_label="stage today",
            y_label="stage at assignment",
            fmt=lambda value: f"{value:.0f}",
            caption=(
                "Assignments (treated and held out) counted by the customer's lifecycle stage "
                "when the campaign assigned them and their stage today; the diagonal stayed put."
            ),
        )
    )
    return section


def _predictions_part(section: Section, data: ReportData) -> None:
    """p_alive by lifecycle stage: where the rule-based stage and the model disagree."""
    if not data.predictions:
        section.notes.append(
            "No predictions yet: predictions.customer_predictions is missing or scores nobody "
            "(`omni predict` after the warehouse build)."
        )
        return
    order = {stage: position for position, stage in enumerate(STAGES)}
    rows = sorted(
        data.predictions,
        key=lambda row: (order.get(row["lifecycle_stage"], len(STAGES)), row["lifecycle_stage"]),
    )
    first = rows[0]
    section.charts.append(
        charts.bar_chart(
            "lifecycle-p-alive",
            "Predicted probability of still being a customer, by stage",
            [charts.Bar(str(row["lifecycle_stage"]), _float(row["mean_p_alive"])) for row in rows],
            x_label="mean p_alive",
            y_label="lifecycle stage",
            fmt=lambda value: f"{value:.2f}",
            caption=(
                f"Mean p_alive of the customers the model scored, per lifecycle stage "
                f"({first['model_name']}, fitted as of {_cell(first['as_of_date'])}; "
                "customers who never ordered have no score)."
            ),
        )
    )
    section.tables.append(
        Table(
            "predictions by lifecycle stage",
            [
                "stage",
                "customers scored",
                "mean p_alive",
                "p_alive 10th percentile",
                "median p_alive",
                "share below 0.5",
                "expected purchases in 90 days",
                "predicted value in 90 days",
            ],
            [
                [
                    str(row["lifecycle_stage"]),
                    _cell(row["customers"]),
                    f"{_float(row['mean_p_alive']) or 0:.2f}",
                    f"{_float(row['p_alive_p10']) or 0:.2f}",
                    f"{_float(row['p_alive_median']) or 0:.2f}",
                    _pct(_float(row["share_below_half"])),
                    f"{_float(row['expected_purchases_90d']) or 0:,.0f}",
                    _eur(_float(row["predicted_value_90d"])),
                ]
                for row in rows
            ],
            total_rows=len(rows),
        )
    )


def kpi_section(data: ReportData) -> Section:
    section = Section(
        "kpis",
        "Omnichannel KPIs",
        "Spend of single- against multi-channel customers, abandoned web carts completed in a "
        "store and how fast, journeys that continued on another channel. Each KPI shows the "
        "numerator and denominator it was computed from.",
    )
    if data.kpis is None:
        section.empty = (
            "No KPIs yet: the warehouse has no measurement.measurement_omnichannel_kpis."
        )
        return section
    if not data.kpis:
        section.empty = "The omnichannel KPIs are empty (no orders or contacts measured yet)."
        return section
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for row in data.kpis:
        by_unit.setdefault(str(row.get("unit")).lower(), []).append(row)
    uplift = next(
        (
            _float(row.get("value"))
            for row in data.kpis
            if row.get("kpi") == "multi_channel_spend_uplift"
        ),
        None,
    )
    spend = [row for row in by_unit.get("eur", []) if "kpi" in row]
    if spend:
        caption = "Net spend per buying customer, by whether they buy on one channel or on both."
        if uplift is not None:
            caption += (
                f" Multi-channel customers spend {uplift * 100:+.0f} % (seed 001 cites +15-30 %)."
            )
        section.charts.append(
            charts.bar_chart(
                "kpi-spend",
                "Spend per customer: single against multi-channel",
                [charts.Bar(str(row["kpi"]), _float(row.get("value"))) for row in spend],
                x_label="EUR per customer",
                y_label="customers",
                caption=caption,
                fmt=charts.euros,
            )
        )
    shares = [row for row in by_unit.get("share", []) if "kpi" in row]
    if shares:
        section.charts.append(
            charts.bar_chart(
                "kpi-shares",
                "Journeys across channels (shares)",
                [charts.Bar(str(row["kpi"]), _float(row.get("value"))) for row in shares],
                x_label="share",
                y_label="KPI",
                caption="Shares: carts completed in a store or online, contacts whose journey "
                "continued on another channel, products with a price mismatch. n/a: nothing to "
                "count yet (zero denominator).",
                fmt=charts.ratio,
            )
        )
    section.tables.append(_generic_table("omnichannel KPIs", data.kpis))
    return section


def price_section(data: ReportData) -> Section:
    section = Section(
        "prices",
        "Price consistency",
        "One price on every channel (seed 004): every product whose web, store or marketplace "
        "price differs is listed.",
    )
    if data.prices is None:
        section.empty = (
            "No price check yet: the warehouse has no measurement.measurement_price_consistency."
        )
        return section
    mismatches = [
        row
        for row in data.prices
        if not any(
            name in row and not _truthy(row[name])
            for name in ("is_mismatch", "has_mismatch", "is_price_mismatch")
        )
    ]
    if not mismatches:
        section.empty = "No price mismatch: every channel shows the same price."
        return section
    shown = [
        {name: value for name, value in row.items() if name != "price_mismatch_id"}
        for row in mismatches
    ]
    section.tables.append(_generic_table("price mismatches", shown))
    section.notes.append(f"{len(mismatches)} mismatch(es).")
    return section


def maturity_section(data: ReportData) -> Section:
    section = Section(
        "maturity",
        "Omnichannel maturity",
        "A score (0-100) per journey type on availability, persistence, traceability and "
        "history (seed 002): the share of the journey's instances that pass a measurable "
        "proxy, listed in the table.",
    )
    if data.maturity is None:
        section.empty = (
            "No maturity scores yet: the warehouse has no measurement.measurement_maturity_scores."
        )
        return section
    if not data.maturity:
        section.empty = "The maturity scores are empty."
        return section
    if not {"journey_type", "dimension", "score"} <= set(data.maturity[0]):
        section.tables.append(_generic_table("maturity scores", data.maturity))
        return section
    journeys = sorted({str(row["journey_type"]) for row in data.maturity})
    dimensions = [
        name
        for name in ("availability", "persistence", "traceability", "history")
        if any(str(row["dimension"]) == name for row in data.maturity)
    ]
    dimensions += sorted({str(row["dimension"]) for row in data.maturity} - set(dimensions))
    scores: dict[tuple[str, str], float] = {}
    for row in data.maturity:
        score = _float(row["score"])
        if score is not None:
            scores[(str(row["journey_type"]), str(row["dimension"]))] = score
    section.charts.append(
        charts.matrix_chart(
            "maturity",
            "Maturity score per journey type and dimension",
            journeys,
            dimensions,
            scores,
            x_label="dimension",
            y_label="journey type",
            caption="Score 0-100 (darker = more mature); an empty cell: the journey has no "
            "instance yet. The proxy of each dimension is in the table below.",
            fmt=lambda value: f"{value:.0f}",
            maximum=100.0,
        )
    )
    section.tables.append(_generic_table("maturity scores", data.maturity))
    return section


def closing_section(data: ReportData) -> Section:
    section = Section(
        "closing",
        "Closing note: measured against the true effect",
        "In the sandbox the simulator knows each campaign's true effect (world/effects.json, a "
        "relative uplift of the purchase probability). The measured relative lift is the "
        "treatment's conversion rate over the holdout's, minus one, with its 95 % interval "
        "(log-ratio interval of measurement_campaign_lift). Conversion within a window is "
        "not exactly the daily purchase probability, so agreement is approximate.",
    )
    if data.true_effects is None:
        section.empty = "No true effects known (not a sandbox world with effects.json)."
        return section
    overall = _overall(data.lift or [])
    if not overall:
        section.empty = "No campaign measured yet: nothing to compare with the true effects."
        return section
    rows, classes = [], []
    for row in overall:
        campaign_id = str(row.get("campaign_id"))
        true = data.true_effects.get(campaign_id, data.effects_default)
        measured, rel_low, rel_high = _relative_lift(row)
        if measured is not None and rel_low is not None and rel_high is not None:
            covered = "yes" if rel_low <= true <= rel_high else "no"
            shown = f"{measured * 100:+.0f} % ({rel_low * 100:+.0f} % to {rel_high * 100:+.0f} %)"
        else:
            covered, shown = "n/a (no conversions in an arm)", "–"
        rows.append([campaign_id, f"{true * 100:+.0f} %", shown, covered, _verdict(row)])
        classes.append("covered" if covered == "yes" else "not-covered")
    section.tables.append(
        Table(
            "measured against true effect",
            [
                "campaign",
                "true relative uplift",
                "measured relative lift (95 % CI)",
                "interval covers the truth",
                "verdict",
            ],
            rows,
            total_rows=len(rows),
            row_classes=classes,
        )
    )
    return section


def _relative_lift(row: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """Relative conversion lift and its 95 % interval.

    The model's own (``relative_lift_conv``, ``relative_ci_low/high``: a log-ratio interval)
    when present; otherwise the absolute lift and its interval over the holdout's rate.
    """
    names = ("relative_lift_conv", "relative_ci_low", "relative_ci_high")
    if all(name in row for name in names):
        estimate, low, high = (_float(row[name]) for name in names)
        return estimate, low, high
    base = _float(_first(row, "conv_rate_h", "conv_rate_holdout"))
    lift, low, high = (_float(row.get(name)) for name in ("lift_conv", "ci_low", "ci_high"))
    if not base or lift is None or low is None or high is None:
        return None, None, None
    return lift / base, low / base, high / base


def build_sections(data: ReportData) -> list[Section]:
    return [
        lift_section(data),
        roi_section(data),
        lifecycle_section(data),
        kpi_section(data),
        price_section(data),
        maturity_section(data),
        closing_section(data),
    ]


# --- rendering ----------------------------------------------------------------------------


def render(data: ReportData, *, generated_at: datetime | None = None) -> str:
    """The report as one HTML string."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from markupsafe import Markup

    environment = Environment(
        loader=FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=select_autoescape(["html", "j2"]),
    )
    sections = build_sections(data)
    for section in sections:
        section.charts = [Markup(chart) for chart in section.charts]  # built escaped
    return environment.get_template("report.html.j2").render(
        sections=sections,
        generated_at=(generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        as_of_date=_cell(data.as_of_date),
        campaigns=len(_overall(data.lift or [])),
    )


def write_report(cfg: Settings, out: Path | None = None, *, today: date | None = None) -> Path:
    """Write the report; by default ``OMNI_HOME/reports/report-<date>.html`` + ``latest.html``.

    With ``out`` the report is written there only. Returns the path written.
    """
    now = datetime.now(UTC)
    html = render(read_report_data(cfg), generated_at=now)
    day = today or now.date()
    path = out or cfg.omni_home / "reports" / f"report-{day.isoformat()}.html"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(html, encoding="utf-8")
        partial.replace(path)
        if out is None:
            shutil.copyfile(path, path.with_name("latest.html"))
    except OSError as error:
        raise ReportError(f"cannot write the report to {path}: {error}") from error
    return path
