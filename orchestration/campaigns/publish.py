"""Write validated campaigns into the warehouse: ``config.campaigns``, one row per campaign.

The audiences (``dbt_project/models/activation``) are computed in SQL, so the campaign files
must be in the warehouse. Only campaigns that passed validation reach the table; a broken
file is simply absent (its error is reported by ``omni campaigns validate``), so it can never
change another campaign's audience. The table's content is replaced on every publish (the
campaign files are the truth), inside one short read-write transaction: DuckDB has a single
writer, so the connection is held only for the few statements needed.

Every trigger parameter gets its own typed column (``trigger_radius_km``...), so the SQL
needs no JSON functions; the parameters are also kept whole as JSON text. Lists (lifecycle
stages, segments, value bands, channels) are comma-separated text, ``''`` meaning no filter:
portable to every engine the dbt project targets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestration.campaigns.config import Campaign
from orchestration.settings import Settings

SCHEMA = "config"
TABLE = "campaigns"

# (column, DuckDB type). The dbt source `config.campaigns` documents each column.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("campaign_id", "varchar"),
    ("name", "varchar"),
    ("owner", "varchar"),
    ("status", "varchar"),
    ("start_date", "date"),
    ("end_date", "date"),
    ("trigger_type", "varchar"),
    ("trigger_params", "varchar"),
    ("trigger_radius_km", "double"),
    ("trigger_min_cart_value", "double"),
    ("trigger_abandoned_after_minutes", "integer"),
    ("trigger_max_cart_age_days", "integer"),
    ("trigger_days_after_delivery", "integer"),
    ("trigger_include_survey", "boolean"),
    ("trigger_include_matching_products", "boolean"),
    ("trigger_invite_to_newsletter", "boolean"),
    ("trigger_spend_threshold", "double"),
    ("trigger_order_count_threshold", "integer"),
    ("trigger_days_since_first_purchase", "integer"),
    ("audience_lifecycle_stages", "varchar"),
    ("audience_segments", "varchar"),
    ("audience_value_bands", "varchar"),
    ("audience_min_p_alive", "double"),
    ("audience_max_p_alive", "double"),
    ("offer_id", "varchar"),
    ("offer_kind", "varchar"),
    ("offer_value", "double"),
    ("offer_code", "varchar"),
    ("offer_valid_in", "varchar"),
    ("offer_validity_days", "integer"),
    ("offer_max_reward_eur", "double"),
    ("budget_cap_eur", "double"),
    ("channels", "varchar"),
    ("has_email", "boolean"),
    ("has_loyalty_cashback", "boolean"),
    ("has_in_store", "boolean"),
    ("holdout_percent", "double"),
    ("priority", "integer"),
    ("re_entry_rule", "varchar"),
    ("cooldown_days", "integer"),
    ("frequency_cap_override", "integer"),
    ("is_transactional", "boolean"),
    ("attribution_window_days", "integer"),
    ("source_file", "varchar"),
    ("published_at", "timestamp"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)

# Trigger parameters that become typed columns: parameter name -> column name.
TRIGGER_PARAM_COLUMNS: dict[str, str] = {
    "radius_km": "trigger_radius_km",
    "min_cart_value": "trigger_min_cart_value",
    "abandoned_after_minutes": "trigger_abandoned_after_minutes",
    "max_cart_age_days": "trigger_max_cart_age_days",
    "days_after_delivery": "trigger_days_after_delivery",
    "include_survey": "trigger_include_survey",
    "include_matching_products": "trigger_include_matching_products",
    "invite_to_newsletter": "trigger_invite_to_newsletter",
    "spend_threshold": "trigger_spend_threshold",
    "order_count_threshold": "trigger_order_count_threshold",
    "days_since_first_purchase": "trigger_days_since_first_purchase",
}


def _joined(values: Iterable[str]) -> str:
    return ",".join(str(value) for value in values)


def campaign_row(campaign: Campaign, published_at: datetime) -> dict[str, Any]:
    """The ``config.campaigns`` row of one campaign (built on :meth:`Campaign.to_record`)."""
    record = campaign.to_record()
    params: dict[str, Any] = record["trigger_params"]
    unknown = sorted(set(params) - set(TRIGGER_PARAM_COLUMNS))
    if unknown:  # a new trigger parameter needs its column here and in the dbt source
        raise ValueError(f"trigger parameters without a config column: {', '.join(unknown)}")
    channels: list[str] = record["channels"]
    row: dict[str, Any] = {
        "campaign_id": record["campaign_id"],
        "name": record["name"],
        "owner": record["owner"],
        "status": record["status"],
        "start_date": record["start_date"],
        "end_date": record["end_date"],
        "trigger_type": record["trigger_type"],
        "trigger_params": json.dumps(params, sort_keys=True),
        **{column: params.get(param) for param, column in TRIGGER_PARAM_COLUMNS.items()},
        "audience_lifecycle_stages": _joined(record["lifecycle_stages"]),
        "audience_segments": _joined(record["segments"]),
        "audience_value_bands": _joined(record["value_bands"]),
        "audience_min_p_alive": record["min_p_alive"],
        "audience_max_p_alive": record["max_p_alive"],
        "offer_id": record["offer_id"],
        "offer_kind": record["offer_kind"],
        "offer_value": record["offer_value"],
        "offer_code": record["offer_code"],
        "offer_valid_in": record["offer_valid_in"],
        "offer_validity_days": record["offer_validity_days"],
        "offer_max_reward_eur": record["offer_max_reward_eur"],
        "budget_cap_eur": record["budget_cap_eur"],
        "channels": _joined(channels),
        "has_email": "email" in channels,
        "has_loyalty_cashback": "loyalty_cashback" in channels,
        "has_in_store": "in_store" in channels,
        "holdout_percent": record["holdout_percent"],
        "priority": record["priority"],
        "re_entry_rule": record["re_entry_rule"],
        "cooldown_days": record["cooldown_days"],
        "frequency_cap_override": record["frequency_cap_override"],
        "is_transactional": record["transactional"],
        "attribution_window_days": record["attribution_window_days"],
        "source_file": None if campaign.source_path is None else campaign.source_path.name,
        "published_at": published_at,
    }
    return row


def publish_configs(cfg: Settings, campaigns: Sequence[Campaign]) -> int:
    """Replace ``config.campaigns`` in the warehouse with ``campaigns``; return the row count.

    Pass the valid campaigns of :func:`orchestration.campaigns.load_all`. Takes the DuckDB
    write lock for one short transaction (callers in Airflow use the ``warehouse`` pool).
    """
    import duckdb

    from orchestration import warehouse

    published_at = datetime.now(UTC).replace(tzinfo=None)
    rows = [campaign_row(campaign, published_at) for campaign in campaigns]
    cfg.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    columns_sql = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
    placeholders = ", ".join("?" for _ in COLUMNS)
    with (
        warehouse.writing(cfg, "publishing the campaigns"),
        duckdb.connect(str(cfg.warehouse_path)) as con,
    ):
        con.execute("begin transaction")
        try:
            con.execute(f"create schema if not exists {SCHEMA}")
            con.execute(f"create or replace table {SCHEMA}.{TABLE} ({columns_sql})")
            if rows:
                con.executemany(
                    f"insert into {SCHEMA}.{TABLE} values ({placeholders})",
                    [[row[name] for name in COLUMN_NAMES] for row in rows],
                )
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
    return len(rows)


def publish_campaign_files(cfg: Settings) -> dict[str, Any]:
    """Validate every file of ``cfg.campaigns_dir`` and publish the valid ones.

    A broken file is reported (logged, and returned under ``broken_files``) and left out; the
    other campaigns are published as usual.
    """
    import logging

    from orchestration.campaigns.loader import load_all

    campaigns, errors = load_all(cfg.campaigns_dir)
    for error in errors:
        logging.getLogger(__name__).warning("campaign file left out: %s", error)
    return {
        "published": publish_configs(cfg, campaigns),
        "campaigns": sorted(campaign.id for campaign in campaigns),
        "broken_files": [str(error) for error in errors],
    }


__all__ = ["COLUMNS", "COLUMN_NAMES", "campaign_row", "publish_campaign_files", "publish_configs"]
