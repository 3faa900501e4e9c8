"""`omni report` on a fixture measurement schema: what the charts and tables must show.

The fixture (``builders.write_measurement_fixture``) creates the contract's tables in a private
DuckDB warehouse with hand-made rows; the expected marks, significance labels and ROI values
are computed here from the same inputs, by hand.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from orchestration import cli, settings
from orchestration.measurement.report import ReportError, write_report

from .builders import (
    CAMPAIGNS,
    KPIS,
    MATURITY,
    PRICES,
    STAGES,
    TRANSITIONS,
    full_fixture,
    lift_values,
    marks,
    parse_report,
    write_measurement_fixture,
)


def test_report_is_written_with_latest_copy(cfg: settings.Settings) -> None:
    full_fixture(cfg)
    path = write_report(cfg, today=date(2026, 11, 2))
    assert path == cfg.omni_home / "reports" / "report-2026-11-02.html"
    assert (path.parent / "latest.html").read_text() == path.read_text()
    html = path.read_text()
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    ), "the report must be self-contained: no script, nothing fetched"


def test_lift_forest_plot_has_one_interval_per_campaign(cfg: settings.Settings) -> None:
    full_fixture(cfg)
    elements = parse_report(write_report(cfg).read_text())
    intervals = marks(elements, "lift")
    assert sorted(mark.attrs["data-label"] for mark in intervals) == sorted(
        row.campaign_id for row in CAMPAIGNS
    )
    points = [e for e in elements if e.chart == "lift" and e.attrs.get("class") == "point"]
    assert len(points) == len(CAMPAIGNS)
    significance = {mark.attrs["data-label"]: mark.attrs["data-significant"] for mark in intervals}
    # By hand: only the first campaign's interval excludes zero with enough customers.
    assert significance == {
        "abandoned_cart_nearby_store": "true",
        "win_back_recovery": "false",
        "second_purchase_nudge": "false",
    }
    small = {mark.attrs["data-label"]: mark.attrs["data-small-sample"] for mark in intervals}
    assert small["second_purchase_nudge"] == "true"
    for row in CAMPAIGNS:
        mark = next(m for m in intervals if m.attrs["data-label"] == row.campaign_id)
        expected = lift_values(row)
        assert float(mark.attrs["data-low"]) == pytest.approx(expected[10])
        assert float(mark.attrs["data-high"]) == pytest.approx(expected[11])


def test_every_chart_has_title_axis_labels_and_caption(cfg: settings.Settings) -> None:
    full_fixture(cfg)
    html = write_report(cfg).read_text()
    elements = parse_report(html)
    charts = [e.attrs["data-chart"] for e in elements if e.tag == "svg"]
    assert set(charts) == {
        "lift",
        "roi-campaign",
        "roi-channel",
        "roi-segment",
        "lifecycle-stages",
        "lifecycle-flow",
        "kpi-spend",
        "kpi-shares",
        "maturity",
    }
    for chart in charts:
        classes = [e.attrs.get("class", "") for e in elements if e.chart == chart]
        assert any(e.tag == "title" for e in elements if e.chart == chart), chart
        assert "chart-title" in classes, chart
        assert any("x-label" in value for value in classes), chart
        assert any("y-label" in value for value in classes), chart
    assert html.count("<figcaption>") == len(charts)


def test_small_and_non_significant_results_are_labelled(cfg: settings.Settings) -> None:
    full_fixture(cfg)
    html = write_report(cfg).read_text()
    assert "small sample, not significant" in html
    assert html.count('<tr class="not-significant">') == 2
    assert html.count('<tr class="significant">') == 1


def test_roi_bars_are_margin_minus_cost_over_cost(cfg: settings.Settings) -> None:
    full_fixture(cfg)
    elements = parse_report(write_report(cfg).read_text())
    per_campaign = {
        m.attrs["data-label"]: m.attrs["data-value"] for m in marks(elements, "roi-campaign")
    }
    for row in CAMPAIGNS:
        margin = (row.margin_t - row.margin_h) * row.n_treatment
        assert float(per_campaign[row.campaign_id]) == pytest.approx(
            (margin - row.cost_eur) / row.cost_eur
        )
    # One channel (email) over all three campaigns: summed margin and cost.
    (email,) = marks(elements, "roi-channel")
    margin = sum((row.margin_t - row.margin_h) * row.n_treatment for row in CAMPAIGNS)
    cost = sum(row.cost_eur for row in CAMPAIGNS)
    assert email.attrs["data-label"] == "email"
    assert float(email.attrs["data-value"]) == pytest.approx((margin - cost) / cost)
    assert "muted" in email.attrs["class"]  # includes non-significant campaigns
    assert len(marks(elements, "roi-segment")) == 1


def test_lifecycle_flow_counts_stages_and_transitions(cfg: settings.Settings) -> None:
    full_fixture(cfg)
    elements = parse_report(write_report(cfg).read_text())
    stages = {
        m.attrs["data-label"]: float(m.attrs["data-value"])
        for m in marks(elements, "lifecycle-stages")
    }
    expected = dict(STAGES)
    for _, now in TRANSITIONS:
        expected[now] += 1
    assert stages == {stage: float(count) for stage, count in expected.items()}
    cells = {
        (m.attrs["data-from"], m.attrs["data-to"]): float(m.attrs["data-value"])
        for m in marks(elements, "lifecycle-flow")
    }
    assert cells == {
        ("experimentation", "loyalty"): 2,
        ("retention", "recovery"): 1,
        ("loyalty", "loyalty"): 1,
    }


def test_every_price_mismatch_maturity_score_and_kpi_is_shown(cfg: settings.Settings) -> None:
    full_fixture(cfg)
    html = write_report(cfg).read_text()
    elements = parse_report(html)
    scores = {
        (mark.attrs["data-from"], mark.attrs["data-to"]): float(mark.attrs["data-value"])
        for mark in marks(elements, "maturity")
    }
    assert scores == {
        (journey, dimension): score
        for journey, dimension, score, *_ in MATURITY
        if score is not None
    }
    for product_id, channel_a, channel_b, *_ in PRICES:
        assert f"<td>{product_id}</td><td>SKU</td><td>A product</td><td>shoes</td>" in html
        assert f"<td>{channel_a}</td><td>{channel_b}</td>" in html
    assert "2 mismatch(es)." in html
    spend = {m.attrs["data-label"]: m.attrs["data-value"] for m in marks(elements, "kpi-spend")}
    assert spend == {
        "spend_per_customer_single_channel": "80.0",
        "spend_per_customer_multi_channel": "104.0",
    }
    assert "Multi-channel customers spend +30 %" in html
    shares = {m.attrs["data-label"]: m.attrs["data-value"] for m in marks(elements, "kpi-shares")}
    assert shares == {
        "abandoned_cart_store_completion_share": "0.12",
        "contact_cross_channel_continuation_share": "",  # zero denominator: n/a, no bar
    }
    for kpi, unit, *_ in KPIS:  # every KPI in the table, with its unit
        assert f"<td>{kpi}</td><td>{unit}</td>" in html


def test_empty_tables_render_with_every_section_saying_so(cfg: settings.Settings) -> None:
    write_measurement_fixture(cfg.warehouse_path, [])
    html = write_report(cfg).read_text()
    elements = parse_report(html)
    assert not [e for e in elements if "mark" in e.attrs.get("class", "").split()]
    empty = [e for e in elements if e.attrs.get("data-empty") == "true"]
    sections = [e.attrs["data-section"] for e in elements if "data-section" in e.attrs]
    assert len(sections) == 7
    assert len(empty) == 7  # every section says it has nothing, none crashes
    assert "No campaign has treated or held-out customers yet" in html


def test_a_warehouse_without_measurement_schema_still_renders(cfg: settings.Settings) -> None:
    import duckdb

    with duckdb.connect(str(cfg.warehouse_path)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.dim_customers as select 'x' as customer_id, "
            "'loyalty' as lifecycle_stage, date '2026-11-01' as as_of_date"
        )
    html = write_report(cfg).read_text()
    assert "the warehouse has no measurement.measurement_campaign_lift" in html
    assert len(marks(parse_report(html), "lifecycle-stages")) == 1


def test_cli_report_out_and_missing_warehouse(
    cfg: settings.Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["report"]) == 1
    assert "no warehouse" in capsys.readouterr().err
    with pytest.raises(ReportError):
        write_report(cfg)
    full_fixture(cfg)
    out = tmp_path / "elsewhere" / "r.html"
    assert cli.main(["report", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert 'data-chart="lift"' in out.read_text()
    assert not (cfg.omni_home / "reports").exists()


def test_shipped_campaigns_without_measurement_are_named(cfg: settings.Settings) -> None:
    from orchestration.campaigns import load_all

    full_fixture(cfg)
    html = write_report(cfg).read_text()
    shipped, _ = load_all(cfg.campaigns_dir)
    measured = {row.campaign_id for row in CAMPAIGNS}
    unmeasured = sorted(c.id for c in shipped if c.id not in measured)
    assert unmeasured, "the fixture measures only some of the shipped campaigns"
    assert f"Not measured yet (no treated or held-out customer): {', '.join(unmeasured)}." in html


def test_a_warehouse_held_by_a_writer_is_a_clear_error(
    cfg: settings.Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """DuckDB: while another process writes the file (a dbt build), nobody else can open it."""
    import subprocess
    import sys

    full_fixture(cfg)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(cfg.warehouse_path)!r})\n"
            "print('holding', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "holding"
        assert cli.main(["report"]) == 1
        assert "a writer such as a dbt build holds it" in capsys.readouterr().err
        assert cli.main(["customer", "anyone"]) == 1
        assert "a writer such as a dbt build holds it" in capsys.readouterr().err
    finally:
        writer.communicate("", timeout=30)
    assert cli.main(["report"]) == 0  # free again


def test_predictions_by_lifecycle_stage(cfg: settings.Settings) -> None:
    """With predictions.customer_predictions, the lifecycle section shows the mean p_alive of
    the scored customers per stage (customers without a score are not averaged in)."""
    import duckdb

    full_fixture(cfg)
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        stages = dict(
            con.execute("select customer_id, lifecycle_stage from marts.dim_customers").fetchall()
        )
        con.execute("create schema predictions")
        con.execute(
            "create table predictions.customer_predictions (customer_id varchar, "
            "as_of_date date, p_alive double, expected_purchases_90d double, "
            "predicted_value_90d double, model_name varchar)"
        )
        rows = [
            (customer_id, None if index % 4 == 0 else (index % 10) / 10)
            for index, customer_id in enumerate(sorted(stages))
        ]
        con.executemany(
            "insert into predictions.customer_predictions values "
            "(?, date '2026-11-01', ?, 1.0, 50.0, 'test model')",
            rows,
        )
    expected: dict[str, list[float]] = {}
    for customer_id, p_alive in rows:
        if p_alive is not None:
            expected.setdefault(stages[customer_id], []).append(p_alive)
    html = write_report(cfg).read_text()
    bars = {
        m.attrs["data-label"]: float(m.attrs["data-value"])
        for m in marks(parse_report(html), "lifecycle-p-alive")
    }
    assert bars == pytest.approx({stage: sum(v) / len(v) for stage, v in expected.items()})
    assert "test model" in html


def test_no_predictions_says_so(cfg: settings.Settings) -> None:
    full_fixture(cfg)
    html = write_report(cfg).read_text()
    assert not marks(parse_report(html), "lifecycle-p-alive")
    assert "No predictions yet" in html
