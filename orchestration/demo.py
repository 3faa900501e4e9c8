"""``omni demo``: the whole pipeline end to end on the embedded default.

Generates a retail world, starts the sandbox services, runs the ingest DAGs,
``warehouse_build`` and every active campaign's DAG through Airflow itself, prints what the
warehouse now knows and what each campaign's audience is, and stops the sandbox again.
"""

from __future__ import annotations

import time
from typing import Any

from orchestration import airflow_local, warehouse
from orchestration.settings import Settings

PIPELINE = ("ingest_shop", "ingest_pos", "ingest_social", "warehouse_build")


def run(cfg: Settings, customers: int, days: int, seed: int) -> dict[str, Any]:
    from orchestration.sandbox import services, world

    started = time.monotonic()
    print(f"1/4 generating a world of {customers:,} customers over {days} days (seed {seed})")
    world.generate(cfg.world_dir, customers, days, seed)
    if cfg.warehouse_path.exists():  # a demo starts from an empty warehouse
        cfg.warehouse_path.unlink()
    print("2/4 preparing Airflow (metadata database, pool, connections, dbt manifest)")
    airflow_local.init(cfg)
    print("3/4 starting the sandbox services and running the DAGs")
    services.up(cfg)
    try:
        for dag_id in PIPELINE:
            airflow_local.run_dag(cfg, dag_id)
        for dag_id in campaign_dag_ids(cfg):
            airflow_local.run_dag(cfg, dag_id)
    finally:
        services.down(cfg)
    summary = warehouse.demo_summary(cfg)
    summary["campaigns"] = audience_counts(cfg)
    summary["seconds"] = round(time.monotonic() - started, 1)
    print("4/4 done\n")
    print(format_summary(summary))
    return summary


def campaign_dag_ids(cfg: Settings) -> list[str]:
    """``campaign_<id>`` for every valid campaign file that is active."""
    from orchestration.campaigns import load_all

    campaigns, _ = load_all(cfg.campaigns_dir)
    return [f"campaign_{c.id}" for c in campaigns if c.status == "active"]


def audience_counts(cfg: Settings) -> dict[str, dict[str, Any]]:
    from orchestration.campaigns.preview import audience_counts as counts

    return counts(cfg)


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
    lines.append(f"Total time: {summary['seconds']} s")
    return "\n".join(lines)


def _audience_line(stats: dict[str, Any]) -> str:
    reasons = stats["suppressions_by_reason"]
    suppressed = ", ".join(f"{reason} {count:,}" for reason, count in reasons.items())
    return (
        f"{stats['treatment_size']:,} / {stats['holdout_size']:,} / {suppressed or 'none'}"
        f"; cost {stats['estimated_cost_eur']:,.2f} EUR of {stats['budget_cap_eur']} budget"
    )
