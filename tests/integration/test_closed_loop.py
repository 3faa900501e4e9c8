"""The closed loop: a known true effect, dispatched, lived through, and measured.

A small world runs the whole chain once with two campaigns whose true effect the simulator
knows (``effects.json``): one that raises a contacted customer's purchase probability by
``EFFECT`` (relative), one with no effect at all. Both hold out half of their audience. The
campaigns are checked, handed off and dispatched to the sandbox services; the world then lives
``DAYS`` more days, reading what the sandbox delivered; the new days are loaded and the
``measurement`` models built. The measured lift must cover the true effect within its 95 %
interval, and find nothing (an interval around zero) where there is nothing.

The true effect in conversion terms is what the simulator expects for the contacted persons
(``closed_loop.json``: ``rate_with - rate_without`` over the window), not the relative uplift
of the daily purchase probability set in ``effects.json``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestration import settings, warehouse

pytestmark = pytest.mark.slow

SHIPPED = settings.REPO_ROOT / "campaigns"
EFFECT = 2.0  # +200 % purchase probability for contacted customers of the effective campaign
DAYS = 14
EFFECTIVE = "post_purchase_follow_up"
NO_EFFECT = "loyalty_cashback_300"


def _campaigns(directory: Path) -> Path:
    """The two campaigns, with half of each audience held out and room in their budgets."""
    shutil.copytree(SHIPPED / "templates", directory / "templates")
    for campaign_id in (EFFECTIVE, NO_EFFECT):
        text = (SHIPPED / f"{campaign_id}.yml").read_text(encoding="utf-8")
        text, found = re.subn(r"(?m)^holdout_percent: .*$", "holdout_percent: 50", text)
        if not found:
            text += "\nholdout_percent: 50\n"
        text, found = re.subn(r"(?m)^(\s+budget_cap_eur:) .*$", r"\1 1000000", text)
        assert found == 1, campaign_id
        (directory / f"{campaign_id}.yml").write_text(text, encoding="utf-8")
    return directory


def _build(cfg: settings.Settings) -> None:
    from orchestration.campaigns.publish import publish_campaign_files
    from orchestration.dispatch.warehouse_load import load_dispatch
    from orchestration.quality import check_raw
    from orchestration.sources import ingest

    for source in ("shop", "pos", "social"):
        ingest(source, cfg=cfg)
    check_raw(cfg)
    publish_campaign_files(cfg)
    load_dispatch(cfg)
    warehouse.dbt(cfg, "build", "--quiet")


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    from orchestration.campaigns import load_all
    from orchestration.campaigns.handoff import hand_to_dispatch
    from orchestration.dispatch import run
    from orchestration.quality.activation import check_audience
    from orchestration.sandbox import services, world

    home = tmp_path_factory.mktemp("closed-loop")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(home))
        patch.setenv("OMNI_CAMPAIGNS_DIR", str(_campaigns(home / "campaigns")))
        cfg = settings.load()
        world.generate(cfg.world_dir, 4_500, 60, 11)
        effects = {"default": 0.0, "effect_days": DAYS, EFFECTIVE: EFFECT, NO_EFFECT: 0.0}
        (cfg.world_dir / "effects.json").write_text(json.dumps(effects))
        with services.running(cfg.world_dir) as urls:
            for name, url in urls.items():
                patch.setenv(f"OMNI_{name.upper()}_URL", url)
            cfg = settings.load()
            _build(cfg)
            campaigns, errors = load_all(cfg.campaigns_dir)
            assert not errors
            for campaign in campaigns:
                checked = check_audience(cfg, campaign)
                hand_to_dispatch(cfg, campaign.id, "closed_loop_run", checked)
            dispatched = run.dispatch(cfg)
            assert dispatched["totals"]["sent"] > 0, dispatched
        world.advance(
            cfg.world_dir, DAYS, sandbox_dir=cfg.sandbox_dir, campaigns_dir=cfg.campaigns_dir
        )
        with services.running(cfg.world_dir) as urls:  # the services serve the new days
            for name, url in urls.items():
                patch.setenv(f"OMNI_{name.upper()}_URL", url)
            cfg = settings.load()
            _build(cfg)
        with warehouse.connect_read_only(cfg) as con:
            rows = con.execute(
                "select * from measurement.measurement_campaign_lift where dimension = 'overall'"
            ).fetchdf()
        truth = json.loads((cfg.world_dir / "closed_loop.json").read_text())
        measured = {str(row["campaign_id"]): row.to_dict() for _, row in rows.iterrows()}
        for campaign_id, expected in truth["expected_conversion"].items():
            if campaign_id in measured:
                measured[campaign_id]["true_lift"] = (
                    expected["rate_with"] - expected["rate_without"]
                )
        yield measured


def test_both_campaigns_were_measured_on_both_arms(measured: dict[str, dict[str, Any]]) -> None:
    for campaign_id in (EFFECTIVE, NO_EFFECT):
        row = measured[campaign_id]
        assert row["n_treatment"] >= 30 and row["n_holdout"] >= 30, row
        # half held out: the arms are of similar size
        assert 0.6 < row["n_treatment"] / row["n_holdout"] < 1.6, row


def test_the_measured_lift_covers_the_true_effect(measured: dict[str, dict[str, Any]]) -> None:
    row = measured[EFFECTIVE]
    assert row["true_lift"] > 0.05, row  # the simulator expects a clear effect
    interval = (row["ci_low"], row["lift_conv"], row["ci_high"])
    assert interval[0] <= row["true_lift"] <= interval[2], (row["true_lift"], interval)
    assert row["ci_low"] > 0 and bool(row["is_significant"]), row  # a real effect is found


def test_no_effect_is_found_where_there_is_none(measured: dict[str, dict[str, Any]]) -> None:
    row = measured[NO_EFFECT]  # its own assignment changes nothing: the truth is zero
    assert row["ci_low"] <= 0 <= row["ci_high"], row
    assert not bool(row["is_significant"]), row
