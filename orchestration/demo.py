"""``omni demo``: the whole pipeline end to end on the embedded default.

Generates a retail world, starts the sandbox services, runs the ingest DAGs,
``warehouse_build`` and every active campaign's DAG through Airflow itself (audiences checked,
handed off and dispatched: emails to the sandbox SendGrid, cashback to the sandbox loyalty
API, offers to the sandbox store API and the staff sheets). Then the world lives on for
``MEASURED_DAYS`` days, with the true effect of each campaign set in ``DEMO_EFFECTS`` (the
sandbox reads what was delivered), the new days are loaded, and the ``measurement`` DAG
measures what each campaign earned and writes the report. It prints what was sent, where the
staff sheets, the inbox and the report are, and stops the sandbox again.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from orchestration import airflow_local, warehouse
from orchestration.settings import Settings

PIPELINE = ("ingest_shop", "ingest_pos", "ingest_social", "warehouse_build")
MEASUREMENT = "measurement"
MEASURED_DAYS = 14
# The simulator's true effect of each shipped campaign on a contacted customer's daily purchase
# probability (relative uplift for `effect_days`). In conversion terms it is smaller: the
# simulator writes the lift it expects to `world/closed_loop.json`, which the summary prints
# next to the measured one.
DEMO_EFFECTS: dict[str, float | int] = {
    "default": 0.0,
    "effect_days": MEASURED_DAYS,
    "abandoned_cart_nearby_store": 0.6,
    "post_purchase_follow_up": 0.3,
    "second_purchase_nudge": 0.4,
    "win_back_recovery": 0.5,
    "loyalty_cashback_300": 0.2,
}
# What a demo starts without: the previous demo's warehouse, ledger, hand-offs, sandbox
# journals (mail, credits, offers), staff sheets, inbox and reports.
_STATE = ("warehouse.duckdb", "ledger.sqlite", "outbox", "staff_sheets", "sandbox", "reports")


def run(cfg: Settings, customers: int, days: int, seed: int) -> dict[str, Any]:
    from orchestration.sandbox import services, world

    started = time.monotonic()
    print(f"1/5 generating a world of {customers:,} customers over {days} days (seed {seed})")
    services.down(cfg)
    reset(cfg)
    world.generate(cfg.world_dir, customers, days, seed)
    (cfg.world_dir / "effects.json").write_text(json.dumps(DEMO_EFFECTS, indent=2))
    print("2/5 preparing Airflow (metadata database, pools, connections, dbt manifest)")
    airflow_local.init(cfg)
    print("3/5 starting the sandbox services; ingest, warehouse, campaigns and dispatch")
    services.up(cfg)
    try:
        for dag_id in PIPELINE:
            airflow_local.run_dag(cfg, dag_id)
        for dag_id in campaign_dag_ids(cfg):
            airflow_local.run_dag(cfg, dag_id)
        campaigns = audience_counts(cfg)
        print(f"4/5 {MEASURED_DAYS} days later: the world reacts to what it received")
        live_on(cfg, MEASURED_DAYS)
        print("5/5 measuring: what did each campaign earn?")
        airflow_local.run_dag(cfg, MEASUREMENT)
    finally:
        services.down(cfg)
    summary = warehouse.demo_summary(cfg)
    summary["campaigns"] = campaigns
    summary["dispatch"] = dispatch_summary(cfg)
    summary["measurement"] = measurement_summary(cfg)
    summary["seconds"] = round(time.monotonic() - started, 1)
    print("done\n")
    print(format_summary(summary))
    return summary


def reset(cfg: Settings) -> None:
    """Forget the previous demo's state under ``OMNI_HOME`` (the world is regenerated)."""
    for name in _STATE:
        path = cfg.omni_home / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def live_on(cfg: Settings, days: int) -> None:
    """The days after the campaigns, run directly (what the daily DAGs would do): the world
    advances reading what the sandbox delivered, the sources are pulled, checked and built."""
    from orchestration.dispatch.warehouse_load import load_dispatch
    from orchestration.quality import check_raw
    from orchestration.sandbox import services, world
    from orchestration.sources import ingest

    world.advance(cfg.world_dir, days, sandbox_dir=cfg.sandbox_dir, campaigns_dir=cfg.campaigns_dir)
    services.reload_if_running(cfg)
    for source in ("shop", "pos", "social"):
        ingest(source, cfg=cfg)
    check_raw(cfg)
    load_dispatch(cfg)
    warehouse.dbt(cfg, "build", "--quiet")


def campaign_dag_ids(cfg: Settings) -> list[str]:
    """``campaign_<id>`` for every valid campaign file that is active."""
    from orchestration.campaigns import load_all

    campaigns, _ = load_all(cfg.campaigns_dir)
    return [f"campaign_{c.id}" for c in campaigns if c.status == "active"]


def audience_counts(cfg: Settings) -> dict[str, dict[str, Any]]:
    from orchestration.campaigns.preview import audience_counts as counts

    return counts(cfg)


def dispatch_summary(cfg: Settings) -> dict[str, Any]:
    """What dispatch did: ledger counts per channel, staff sheets, the sandbox inbox."""
    from orchestration.dispatch import Ledger
    from orchestration.dispatch.states import Channel
    from orchestration.sandbox.services.inbox import write_inbox

    with Ledger.from_settings(cfg) as ledger:
        by_channel = {channel.value: ledger.counts(channel=channel) for channel in Channel}
    sheets = sorted((cfg.omni_home / "staff_sheets").glob("*/index.html"))
    return {
        "by_channel": by_channel,
        "staff_sheets": [str(path) for path in sheets],
        "inbox": str(write_inbox(cfg)),
    }


def measurement_summary(cfg: Settings) -> dict[str, Any]:
    """The overall lift and ROI of each campaign, and the report's path."""
    reports = cfg.omni_home / "reports"
    latest = reports / "latest.html"
    with warehouse.connect_read_only(cfg) as con:
        rows = con.execute(
            "select campaign_id, n_treatment, n_holdout, conv_rate_t, conv_rate_h, lift_conv, "
            "ci_low, ci_high, roi, is_significant, is_small_sample "
            "from measurement.measurement_campaign_lift where dimension = 'overall' "
            "order by campaign_id"
        ).fetchall()
    columns = (
        "campaign_id", "n_treatment", "n_holdout", "conv_rate_t", "conv_rate_h", "lift_conv",
        "ci_low", "ci_high", "roi", "is_significant", "is_small_sample",
    )  # fmt: skip
    truth_file = cfg.world_dir / "closed_loop.json"
    truth = json.loads(truth_file.read_text()) if truth_file.exists() else {}
    expected = truth.get("expected_conversion", {})
    lift = [dict(zip(columns, row, strict=True)) for row in rows]
    for row in lift:
        found = expected.get(row["campaign_id"])
        row["true_lift"] = found["rate_with"] - found["rate_without"] if found else None
    return {"lift": lift, "report": str(latest) if latest.exists() else None}


def format_summary(summary: dict[str, Any]) -> str:
    lines = ["Rows per layer:"]
    for layer, rows in summary["rows_per_layer"].items():
        lines.append(f"  {layer:<14}{rows:>12,}")
    lines.append("Customers per lifecycle stage:")
    for stage, count in summary["lifecycle_stages"].items():
        lines.append(f"  {stage:<14}{count:>12,}")
    lines.append("Abandoned carts by outcome:")
    for outcome, count in summary["abandoned_carts"].items():
        lines.append(f"  {outcome:<26}{count:>8,}")
    merged = summary["identities"]
    lines.append(
        f"Identities: {merged['source_identities']:,} source records -> "
        f"{merged['customers']:,} customers ({merged['merged']:,} merged)"
    )
    lines.append(f"Quarantined raw rows: {summary['quarantined_rows']:,}")
    lines.append("Campaign audiences (treated / holdout / suppressed by reason; cost):")
    for campaign_id, stats in summary["campaigns"].items():
        lines.append(f"  {campaign_id}: {_audience_line(stats)}")
    lines.append("Preview a campaign: omni campaigns preview <campaign_id> --out <dir>")
    lines.extend(_dispatch_lines(summary["dispatch"]))
    lines.extend(_measurement_lines(summary["measurement"]))
    lines.append(f"Total time: {summary['seconds']} s")
    return "\n".join(lines)


def _dispatch_lines(dispatch: dict[str, Any]) -> list[str]:
    lines = ["Dispatched (sent / suppressed / dead letters / unknown / still queued):"]
    for channel, counts in dispatch["by_channel"].items():
        queued = counts["pending"] + counts["sending"] + counts["failed"]
        lines.append(
            f"  {channel:<18}{counts['sent']:>7,} / {counts['suppressed']:,} / "
            f"{counts['dead_lettered']:,} / {counts['unknown']:,} / {queued:,}"
        )
    lines.append("Staff sheets (one page per store and day):")
    lines.extend(f"  file://{path}" for path in dispatch["staff_sheets"] or ["none"])
    lines.append(f"Rendered emails, as recipients see them: file://{dispatch['inbox']}")
    return lines


def _measurement_lines(measurement: dict[str, Any]) -> list[str]:
    lines = [
        f"Measured after {MEASURED_DAYS} days (customers treated vs holdout; conversion; lift "
        "with its 95 % interval; ROI; the lift the simulator expects from its true effect):"
    ]
    for row in measurement["lift"]:
        flag = (
            "small sample"
            if row["is_small_sample"]
            else ("significant" if row["is_significant"] else "not significant")
        )
        roi = "n/a" if row["roi"] is None else f"{row['roi']:.2f}"
        lines.append(
            f"  {row['campaign_id']}: {row['n_treatment']:,} vs {row['n_holdout']:,}; "
            f"{_pct(row['conv_rate_t'])} vs {_pct(row['conv_rate_h'])}; lift "
            f"{_pct(row['lift_conv'])} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}] "
            f"({flag}); ROI {roi}; simulator's true lift {_pct(row['true_lift'])}"
        )
    lines.append(f"Report: file://{measurement['report']}")
    return lines


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f} %"


def _audience_line(stats: dict[str, Any]) -> str:
    reasons = stats["suppressions_by_reason"]
    suppressed = ", ".join(f"{reason} {count:,}" for reason, count in reasons.items())
    return (
        f"{stats['treatment_size']:,} / {stats['holdout_size']:,} / {suppressed or 'none'}"
        f"; cost {stats['estimated_cost_eur']:,.2f} EUR of {stats['budget_cap_eur']} budget"
    )
