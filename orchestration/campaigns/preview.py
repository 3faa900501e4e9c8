"""Preview a campaign for a real customer, and count every campaign's audience.

Reads the warehouse READ-ONLY (the audiences ``activation.*`` built by dbt from the
published configs): :func:`preview` picks a customer (the one asked for, else the first of the
campaign's audience), renders every channel with :func:`render_contact` from the customer's
warehouse record and trigger payload, writes the files a marketer opens (``email.html``,
``email.txt``, ``cashback_line.txt``, ``staff_card.txt``, ``stats.json``), and returns the
campaign's numbers: audience, holdout, suppressions by reason, estimated cost against the
budget. :func:`audience_counts` gives those numbers for every published campaign.

The template variables come from the trigger row's ``payload_json`` (see
``templating.TRIGGER_NAMES``) adjusted by the campaign's own trigger switches
(:func:`trigger_extra`), so dispatch can build exactly the same context.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from orchestration.campaigns.config import Campaign
from orchestration.campaigns.loader import load_all
from orchestration.campaigns.templating import (
    TRIGGER_NAMES,
    RenderError,
    example_context,
    render_contact,
)
from orchestration.settings import Settings

HOLDOUT_BUCKETS = 10_000
# The trigger model of each trigger type (schema triggers).
TRIGGER_MODELS = {
    "abandoned_cart_nearby_stock": "trigger_abandoned_cart_nearby_stock",
    "post_purchase_follow_up": "trigger_post_purchase_follow_up",
    "win_back": "trigger_win_back",
    "loyalty_cashback_milestone": "trigger_loyalty_cashback_milestone",
    "second_purchase": "trigger_second_purchase",
}
_EMPTY_VALUES: dict[str, Any] = {
    "cart": {},
    "cart_items": [],
    "order": {},
    "order_items": [],
    "survey_url": "",
    "matching_products": [],
    "newsletter_url": "",
    "days_inactive": 0,
    "milestone": {},
    "first_order": {},
    "recommended_products": [],
}


class PreviewError(RuntimeError):
    """The preview cannot be made (unknown campaign, warehouse not built, unknown customer)."""


def holdout_bucket(campaign_id: str, customer_id: str) -> int:
    """The customer's holdout bucket (0..9999) in a campaign, as the SQL computes it
    (``activation_hash_bucket``): the first 8 hex digits of md5('<campaign>:<customer>')."""
    digest = hashlib.md5(f"{campaign_id}:{customer_id}".encode()).hexdigest()  # noqa: S324
    return int(digest[:8], 16) % HOLDOUT_BUCKETS


def is_holdout(campaign_id: str, customer_id: str, holdout_percent: float) -> bool:
    """True when the customer is in the campaign's control group."""
    return holdout_bucket(campaign_id, customer_id) < holdout_percent * 100


def trigger_extra(
    campaign: Campaign, payload: Mapping[str, Any], store: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The template variables of a trigger row (``payload_json`` parsed) for this campaign.

    Every variable the trigger type promises is present (empty when the row lacks it), and the
    campaign's switches apply: no survey link without ``include_survey``, no matching products
    without ``include_matching_products``, no newsletter link without ``invite_to_newsletter``.
    """
    trigger = campaign.trigger
    names = TRIGGER_NAMES.get(trigger.type, frozenset())
    extra: dict[str, Any] = {name: payload.get(name, _EMPTY_VALUES.get(name)) for name in names}
    if getattr(trigger, "include_survey", True) is False:
        extra["survey_url"] = ""
    if getattr(trigger, "include_matching_products", True) is False:
        extra["matching_products"] = []
    if getattr(trigger, "invite_to_newsletter", True) is False:
        extra["newsletter_url"] = ""
    extra["store"] = dict(store) if store else None
    return extra


def _connect(cfg: Settings) -> Any:
    import duckdb

    if not cfg.warehouse_path.exists():
        raise PreviewError(f"no warehouse at {cfg.warehouse_path}: run the pipeline first")
    return duckdb.connect(str(cfg.warehouse_path), read_only=True)


def _rows(con: Any, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
    cursor = con.execute(sql, parameters or [])
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _require_audiences(con: Any) -> None:
    found = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'activation' and table_name = 'int_campaign_eligibility'"
    ).fetchone()
    if not found or found[0] == 0:
        raise PreviewError(
            "the warehouse has no audiences yet (activation.int_campaign_eligibility): "
            "publish the campaigns and run dbt build"
        )


def _campaign_stats(con: Any, campaign_id: str) -> dict[str, Any]:
    """Audience, holdout, suppressions by reason and cost for one campaign."""
    config = _rows(
        con,
        "select budget_cap_eur, holdout_percent, status, start_date, end_date "
        "from activation.stg_config__campaigns where campaign_id = ?",
        [campaign_id],
    )
    totals = _rows(
        con,
        """
        select
            count(*) as candidates,
            count(*) filter (where is_in_audience) as audience_size,
            count(*) filter (where is_in_audience and is_holdout) as holdout_size,
            count(*) filter (where is_in_audience and not is_holdout) as treatment_size,
            count(*) filter (where is_in_audience and not is_holdout and sends_email) as email,
            count(*) filter (
                where is_in_audience and not is_holdout and sends_loyalty_cashback
            ) as loyalty_cashback,
            count(*) filter (where is_in_audience and not is_holdout and sends_in_store)
                as in_store,
            coalesce(sum(estimated_cost_eur) filter (
                where is_in_audience and not is_holdout), 0) as estimated_cost_eur
        from activation.int_campaign_eligibility
        where campaign_id = ?
        """,
        [campaign_id],
    )[0]
    reasons = _rows(
        con,
        "select scope, reason, count(*) as customers from activation.suppressions "
        "where campaign_id = ? group by scope, reason order by scope desc, customers desc, reason",
        [campaign_id],
    )
    budget = config[0]["budget_cap_eur"] if config else None
    cost = round(float(totals["estimated_cost_eur"]), 2)
    audience = int(totals["audience_size"])
    return {
        "status": config[0]["status"] if config else None,
        "candidates": int(totals["candidates"]),
        "audience_size": audience,
        "holdout_size": int(totals["holdout_size"]),
        "treatment_size": int(totals["treatment_size"]),
        "holdout_share": round(totals["holdout_size"] / audience, 4) if audience else None,
        "holdout_percent": config[0]["holdout_percent"] if config else None,
        "contacts_by_channel": {
            "email": int(totals["email"]),
            "loyalty_cashback": int(totals["loyalty_cashback"]),
            "in_store": int(totals["in_store"]),
        },
        "suppressions_by_reason": {
            row["reason"]: int(row["customers"]) for row in reasons if row["scope"] == "contact"
        },
        "channel_suppressions_by_reason": {
            row["reason"]: int(row["customers"]) for row in reasons if row["scope"] == "channel"
        },
        "estimated_cost_eur": cost,
        "budget_cap_eur": budget,
        "budget_used_percent": round(100 * cost / budget, 1) if budget else None,
        "is_within_budget": budget is None or cost <= budget,
    }


def audience_counts(cfg: Settings) -> dict[str, dict[str, Any]]:
    """The numbers of :func:`preview` for every published campaign, by campaign id."""
    with _connect(cfg) as con:
        _require_audiences(con)
        ids = [
            row["campaign_id"]
            for row in _rows(
                con, "select campaign_id from activation.stg_config__campaigns order by 1"
            )
        ]
        return {campaign_id: _campaign_stats(con, campaign_id) for campaign_id in ids}


def _pick(con: Any, campaign: Campaign, customer_id: str | None) -> dict[str, Any]:
    """The eligibility row to preview: the given customer's, else the audience's first."""
    if customer_id is not None:
        where, parameters = "customer_id = ?", [campaign.id, customer_id]
    else:
        where, parameters = "true", [campaign.id]
    rows = _rows(
        con,
        f"""
        select * from activation.int_campaign_eligibility
        where campaign_id = ? and {where}
        order by is_in_audience desc, is_holdout, customer_id
        limit 1
        """,
        parameters,
    )
    return rows[0] if rows else {}


def _trigger_row(con: Any, campaign: Campaign, customer_id: str) -> dict[str, Any]:
    """The customer's latest trigger row of the campaign's type (for a customer outside today's
    audience), or {}."""
    model = TRIGGER_MODELS[campaign.trigger.type]
    rows = _rows(
        con,
        f"select * from triggers.{model} where customer_id = ? order by occurred_at desc limit 1",
        [customer_id],
    )
    return rows[0] if rows else {}


def _store(con: Any, store_id: str | None, distance_km: float | None) -> dict[str, Any] | None:
    if store_id is None:
        return None
    rows = _rows(
        con,
        "select store_id, store_name as name, city, postal_code, opens_local, closes_local "
        "from marts.dim_stores where store_id = ?",
        [store_id],
    )
    if not rows:
        return None
    store = rows[0]
    store["distance_km"] = round(float(distance_km), 1) if distance_km is not None else None
    return store


def contact_context(
    con: Any, campaign: Campaign, customer_id: str, row: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``(customer, extra)`` pair :func:`render_contact` needs for one audience row.

    ``con`` is an open (read-only) warehouse connection; ``row`` is a row of a ``sync_*``
    audience, of ``activation.int_campaign_eligibility`` or of a trigger model (it needs
    ``payload_json``, and uses ``store_id`` and ``distance_km`` when present). The customer
    comes from ``marts.dim_customers``; the store is the row's store, else the customer's
    nearest. Dispatch renders with exactly what the preview shows.
    """
    customers = _rows(
        con,
        "select customer_id, first_name, last_name, email, city, nearest_store_id, "
        "nearest_store_distance_km from marts.dim_customers where customer_id = ?",
        [customer_id],
    )
    if not customers:
        raise PreviewError(f"no customer {customer_id!r} in marts.dim_customers")
    record = customers[0]
    payload = json.loads(row.get("payload_json") or "{}")
    store_id = row.get("store_id") or record["nearest_store_id"]
    distance = row.get("distance_km")
    if distance is None and store_id == record["nearest_store_id"]:
        distance = record["nearest_store_distance_km"]
    store = _store(con, store_id, distance)
    customer = {
        key: record[key] for key in ("customer_id", "first_name", "last_name", "email", "city")
    }
    customer["first_name"] = customer["first_name"] or ""
    return customer, trigger_extra(campaign, payload, store)


def _jsonable(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def preview(
    cfg: Settings,
    campaign_id: str,
    customer_id: str | None = None,
    out_dir: Path | None = None,
    *,
    campaigns_dir: Path | None = None,
) -> dict[str, Any]:
    """Render ``campaign_id`` for a real customer on every channel, with the campaign's numbers.

    ``customer_id``: the customer to show (default: the first of the campaign's audience).
    A customer outside today's audience is rendered from their latest trigger row, or from
    the trigger type's example data when they have none (``payload_source`` says which).
    ``out_dir``: where to write ``email.html``, ``email.txt``, ``cashback_line.txt``,
    ``staff_card.txt`` and ``stats.json``. Raises :class:`PreviewError` when it cannot.
    """
    campaigns, errors = load_all(campaigns_dir or cfg.campaigns_dir)
    by_id = {campaign.id: campaign for campaign in campaigns}
    if campaign_id not in by_id:
        problems = "; ".join(str(error) for error in errors if campaign_id in str(error.file))
        raise PreviewError(
            f"no valid campaign {campaign_id!r}" + (f": {problems}" if problems else "")
        )
    campaign = by_id[campaign_id]
    with _connect(cfg) as con:
        _require_audiences(con)
        decision = _pick(con, campaign, customer_id)
        chosen = customer_id or decision.get("customer_id")
        if chosen is None:
            raise PreviewError(f"campaign {campaign_id!r} has no candidate in the warehouse")
        trigger = decision or _trigger_row(con, campaign, chosen)
        payload_source = "trigger" if trigger.get("payload_json") else "example"
        if payload_source == "example":
            trigger = {
                **trigger,
                "payload_json": json.dumps(example_context(campaign.trigger.type)[1]),
            }
        customer, extra = contact_context(con, campaign, chosen, trigger)
        stats = _campaign_stats(con, campaign_id)
    send_at = decision.get("scheduled_send_at")
    send_date = send_at.date() if isinstance(send_at, datetime) else date.today()
    try:
        contact = render_contact(campaign, customer, extra, today=send_date)
    except RenderError as error:  # file, line, field and reason; never a traceback
        raise PreviewError(f"cannot render customer {chosen}: {error}") from error
    result: dict[str, Any] = {
        "campaign_id": campaign_id,
        "customer_id": chosen,
        "payload_source": payload_source,
        "decision": {
            "is_in_audience": decision.get("is_in_audience"),
            "suppression_reason": decision.get("suppression_reason"),
            "is_holdout": decision.get("is_holdout"),
            "channels": [
                name
                for name in ("email", "loyalty_cashback", "in_store")
                if decision.get(f"sends_{name}")
            ],
            "scheduled_send_at": send_at,
            "trigger_key": trigger.get("trigger_key"),
        },
        "rendered": contact.as_dict(),
        "stats": stats,
        "files": [],
    }
    result = _jsonable(result)
    if out_dir is not None:
        written = contact.write_files(out_dir)
        stats_path = out_dir / "stats.json"
        stats_path.write_text(
            json.dumps(
                {key: result[key] for key in ("campaign_id", "customer_id", "decision", "stats")},
                indent=2,
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
        result["files"] = [str(path) for path in [*written, stats_path]]
    return result


__all__ = [
    "PreviewError",
    "contact_context",
    "audience_counts",
    "holdout_bucket",
    "is_holdout",
    "preview",
    "trigger_extra",
]
