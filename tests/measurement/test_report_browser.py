"""The report in a real browser: headless Debian ``chromium`` lays out every chart.

The report carries no script. For the test, a copy of it gets one small inline script at the
end that measures, after layout, each chart's rendered size and each mark's bounding box and
writes them into ``data-rendered-*`` attributes; ``chromium --headless --dump-dom`` prints the
DOM after the script ran. So the assertions are about what the browser drew: the charts exist,
have a size, and show one visible mark per campaign (bar, interval or cell).

``make test`` installs chromium first (scripts/install-chromium). Without it this test FAILS
with the command to run: a report nobody checked in a browser is not tested.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from orchestration import settings
from orchestration.measurement.report import write_report

from .builders import (
    CAMPAIGNS,
    STAGES,
    Element,
    full_fixture,
    marks,
    parse_report,
    write_measurement_fixture,
)

MEASURE = """
<script>
for (const svg of document.querySelectorAll("svg.chart")) {
  const box = svg.getBoundingClientRect();
  svg.setAttribute("data-rendered-width", Math.round(box.width));
  svg.setAttribute("data-rendered-height", Math.round(box.height));
  for (const mark of svg.querySelectorAll(".mark")) {
    const shape = mark.getBBox();
    mark.setAttribute("data-rendered-area", Math.round(shape.width * shape.height));
  }
}
document.body.setAttribute("data-measured", "true");
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Debian chromium is not installed: run `scripts/install-chromium` (`make test` does); "
        "the report's browser test cannot run without it",
        pytrace=False,
    )


def rendered_dom(report: Path, work: Path) -> list[Element]:
    """The DOM of ``report`` after chromium laid it out and the measuring script ran."""
    measured = work / "measured.html"
    measured.write_text(report.read_text().replace("</body>", MEASURE + "</body>"))
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # root in CI containers
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={work / 'profile'}",
            "--window-size=1280,2000",
            "--dump-dom",
            measured.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    elements = parse_report(result.stdout)
    body = next(element for element in elements if element.tag == "body")
    assert body.attrs.get("data-measured") == "true", "the page did not finish rendering"
    return elements


def test_chromium_draws_every_chart_with_one_mark_per_campaign(
    cfg: settings.Settings, tmp_path: Path
) -> None:
    full_fixture(cfg)
    elements = rendered_dom(write_report(cfg), tmp_path)
    charts = [element for element in elements if element.tag == "svg"]
    assert {chart.attrs["data-chart"] for chart in charts} >= {
        "lift",
        "roi-campaign",
        "roi-channel",
        "roi-segment",
        "lifecycle-stages",
        "lifecycle-flow",
        "maturity",
    }
    for chart in charts:
        assert int(chart.attrs["data-rendered-width"]) > 300, chart.attrs["data-chart"]
        assert int(chart.attrs["data-rendered-height"]) > 50, chart.attrs["data-chart"]
    campaigns = sorted(row.campaign_id for row in CAMPAIGNS)
    for chart_id in ("lift", "roi-campaign"):
        drawn = marks(elements, chart_id)
        assert sorted(mark.attrs["data-label"] for mark in drawn) == campaigns, chart_id
        for mark in drawn:
            area = int(mark.attrs["data-rendered-area"])
            assert area > 0, (chart_id, mark.attrs["data-label"])
    points = [e for e in elements if e.chart == "lift" and e.attrs.get("class") == "point"]
    assert len(points) == len(CAMPAIGNS)
    assert len(marks(elements, "lifecycle-stages")) == len(STAGES)


def test_chromium_renders_a_report_of_empty_tables(cfg: settings.Settings, tmp_path: Path) -> None:
    write_measurement_fixture(cfg.warehouse_path, [])
    elements = rendered_dom(write_report(cfg), tmp_path)
    assert not [element for element in elements if element.tag == "svg"]
    sections = [element for element in elements if "data-section" in element.attrs]
    empty = [element for element in elements if element.attrs.get("data-empty") == "true"]
    assert len(sections) == len(empty) == 7
