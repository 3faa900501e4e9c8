"""One customer's whole history across channels, in time order (``omni customer ID``).

Seed 002 asks for "one central history of every interaction, whatever the channel" and for the
state of any request or contact to be visible from anywhere. This module reads it back from the
warehouse, read-only:

- identity: the source records unified into the customer (``int_customers_unified``) and the
  customer's row in ``dim_customers`` (stage, segment, consent, stores);
- the predictive lifecycle model's scores (``predictions.customer_predictions``: p_alive,
  expected purchases and value in the next 90 days), or None before the first ``predict``;
- orders, web and store (``fct_orders`` with their lines from ``fct_order_lines``);
- abandoned carts and what became of them (``fct_abandoned_carts``);
- returns and social activity (``fct_customer_interactions``; its orders and checkouts are the
  rows above, shown once);
- every campaign contact with its status (``fct_campaign_contacts``) and every holdout
  (``fct_campaign_holdouts``), each with the orders attributed to it when the measurement
  schema has them (``measurement_conversions``).

Dispatch and measurement tables that do not exist yet are reported as "no contacts yet", not
as an error. The id may be the unified ``customer_id`` or a source record key (``shop:123``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from orchestration.measurement import tables
from orchestration.settings import Settings


class CustomerHistoryError(RuntimeError):
    """The history cannot be read (no warehouse, no customer marts)."""


class UnknownCustomer(LookupError):
    """No customer has this id."""

    def __str__(self) -> str:
        return (
            f"unknown customer {self.args[0]!r}: no customer_id in marts.dim_customers and no "
            "source record key (shop:<id>, pos:<id>, social:<id>) in "
            "intermediate.int_customers_unified"
        )


# Interaction types shown through their own, richer facts (orders, abandoned carts).
_COVERED_INTERACTIONS = ("web_order", "store_sale", "checkout")


def customer_history(cfg: Settings, customer_id: str) -> dict[str, Any]:
    """Everything the warehouse knows about one customer, events sorted oldest first.

    Keys: ``customer`` (the dim_customers row), ``identities`` (source records), ``timeline``
    (dicts with ``at``, ``channel``, ``kind``, ``summary``, ``detail``), ``contacts`` and
    ``holdouts`` (lists, or None when the table does not exist yet), ``counts``.
    """
    try:
        con = tables.connect(cfg)
    except tables.WarehouseUnavailable as error:
        raise CustomerHistoryError(str(error)) from error
    with con:
        dim = tables.find_table(con, "dim_customers", ("marts",))
        unified = tables.find_table(con, "int_customers_unified", ("intermediate",))
        if dim is None or unified is None:
            raise CustomerHistoryError("the warehouse has no customer marts yet: run dbt build")
        customer = _customer_row(con, dim, unified, customer_id.strip())
        resolved = str(customer["customer_id"])
        identities = tables.rows(
            con,
            f"select source_system, source_record_id, record_key, email_normalized as email, "
            f"phone_normalized as phone, social_handle, first_name, last_name, updated_at "
            f"from {unified} where customer_id = ? order by source_system, source_record_id",
            [resolved],
        )
        conversions = _conversions(con, resolved)
        timeline = [
            *_orders(con, resolved),
            *_carts(con, resolved),
            *_interactions(con, resolved),
        ]
        contacts = _contacts(con, resolved, conversions)
        holdouts = _holdouts(con, resolved, conversions)
        prediction = _prediction(con, resolved)
    for contact in contacts or []:
        timeline.append(_contact_event(contact))
    for holdout in holdouts or []:
        timeline.append(_holdout_event(holdout))
    timeline.sort(key=lambda event: (_sortable(event["at"]), event["kind"]))
    counts: dict[str, int] = {}
    for event in timeline:
        counts[event["kind"]] = counts.get(event["kind"], 0) + 1
    return {
        "customer_id": resolved,
        "customer": customer,
        "prediction": prediction,
        "identities": identities,
        "timeline": timeline,
        "contacts": contacts,
        "holdouts": holdouts,
        "counts": counts,
    }


def _sortable(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.max


def _customer_row(con: Any, dim: str, unified: str, wanted: str) -> dict[str, Any]:
    found = tables.rows(con, f"select * from {dim} where customer_id = ?", [wanted])
    if not found:
        keys = tables.rows(
            con,
            f"select distinct customer_id from {unified} where record_key = ? or customer_key = ?",
            [wanted, wanted],
        )
        if len(keys) == 1:
            found = tables.rows(
                con, f"select * from {dim} where customer_id = ?", [keys[0]["customer_id"]]
            )
    if not found:
        raise UnknownCustomer(wanted)
    return found[0]


def _prediction(con: Any, customer_id: str) -> dict[str, Any] | None:
    table = tables.find_table(con, "customer_predictions", ("predictions",))
    if table is None:
        return None
    found = tables.rows(con, f"select * from {table} where customer_id = ?", [customer_id])
    return found[0] if found else None


def _prediction_line(prediction: dict[str, Any] | None) -> str:
    if prediction is None:
        return "  prediction: none yet (run `omni predict` after the warehouse build)"
    if prediction.get("prediction_status") != "predicted":
        return (
            f"  prediction as of {prediction.get('as_of_date')}: "
            f"{prediction.get('prediction_status')} (no score)"
        )
    return (
        f"  prediction as of {prediction.get('as_of_date')}: p_alive "
        f"{float(prediction['p_alive']):.2f}, "
        f"{float(prediction['expected_purchases_90d']):.2f} purchase(s) and "
        f"{_money(prediction['predicted_value_90d'])} expected in 90 days "
        f"({prediction.get('model_name')})"
    )


def _orders(con: Any, customer_id: str) -> list[dict[str, Any]]:
    orders_table = tables.find_table(con, "fct_orders", ("marts",))
    if orders_table is None:
        return []
    lines_table = tables.find_table(con, "fct_order_lines", ("marts",))
    lines: dict[str, list[dict[str, Any]]] = {}
    if lines_table is not None:
        for line in tables.rows(
            con,
            f"select order_id, product_id, sku, quantity, unit_price, line_amount "
            f"from {lines_table} where customer_id = ? order by order_line_id",
            [customer_id],
        ):
            lines.setdefault(str(line.pop("order_id")), []).append(line)
    events = []
    for order in tables.rows(
        con,
        f"select order_id, channel, store_id, fulfillment_type, financial_status, "
        f"shipment_status, delivered_at, item_quantity, total_amount, refunded_amount, "
        f"net_amount, ordered_at from {orders_table} where customer_id = ?",
        [customer_id],
    ):
        order["lines"] = lines.get(str(order["order_id"]), [])
        where = f" at {order['store_id']}" if order["store_id"] else ""
        state = order["shipment_status"] or order["financial_status"] or ""
        events.append(
            {
                "at": order["ordered_at"],
                "channel": order["channel"],
                "kind": "order",
                "summary": (
                    f"{order['order_id']} {_money(order['total_amount'])}, "
                    f"{order['item_quantity']} item(s), {order['fulfillment_type']}{where}"
                    + (f", {state}" if state else "")
                ),
                "detail": order,
            }
        )
    return events


def _carts(con: Any, customer_id: str) -> list[dict[str, Any]]:
    carts_table = tables.find_table(con, "fct_abandoned_carts", ("marts",))
    if carts_table is None:
        return []
    events = []
    for cart in tables.rows(
        con,
        f"select checkout_id, abandoned_at, product_count, item_quantity, subtotal_amount, "
        f"shipping_amount, total_amount, outcome, outcome_order_id, outcome_store_id, "
        f"outcome_at, recovered_amount from {carts_table} where customer_id = ?",
        [customer_id],
    ):
        outcome = str(cart["outcome"])
        if cart["outcome_order_id"]:
            outcome += f" ({cart['outcome_order_id']}"
            outcome += f" at {cart['outcome_store_id']}" if cart["outcome_store_id"] else ""
            outcome += f", {_when(cart['outcome_at'])})"
        events.append(
            {
                "at": cart["abandoned_at"],
                "channel": "web",
                "kind": "abandoned_cart",
                "summary": (
                    f"checkout {cart['checkout_id']} {_money(cart['total_amount'])} "
                    f"(shipping {_money(cart['shipping_amount'])}), "
                    f"{cart['item_quantity']} item(s) -> {outcome}"
                ),
                "detail": cart,
            }
        )
    return events


def _interactions(con: Any, customer_id: str) -> list[dict[str, Any]]:
    interactions_table = tables.find_table(con, "fct_customer_interactions", ("marts",))
    if interactions_table is None:
        return []
    covered = ", ".join(f"'{kind}'" for kind in _COVERED_INTERACTIONS)
    events = []
    for interaction in tables.rows(
        con,
        f"select interaction_id, channel, interaction_type, order_id, store_id, amount, status, "
        f"sentiment, occurred_at from {interactions_table} "
        f"where customer_id = ? and interaction_type not in ({covered})",
        [customer_id],
    ):
        parts = [str(interaction["interaction_id"])]
        if interaction["amount"] is not None:
            parts.append(_money(interaction["amount"]))
        for name in ("status", "sentiment", "store_id"):
            if interaction[name]:
                parts.append(f"{name} {interaction[name]}")
        events.append(
            {
                "at": interaction["occurred_at"],
                "channel": interaction["channel"],
                "kind": str(interaction["interaction_type"]),
                "summary": ", ".join(parts),
                "detail": interaction,
            }
        )
    return events


def _conversions(con: Any, customer_id: str) -> list[dict[str, Any]]:
    table = tables.find_table(con, "measurement_conversions", ("measurement",))
    if table is None or "customer_id" not in tables.columns(con, table):
        return []
    return tables.rows(con, f"select * from {table} where customer_id = ?", [customer_id])


def _attributed(conversions: list[dict[str, Any]], row: dict[str, Any]) -> list[str]:
    """Order ids attributed to a contact or holdout (same campaign and trigger occurrence)."""
    orders = []
    for conversion in conversions:
        if conversion.get("campaign_id") != row.get("campaign_id"):
            continue
        if "trigger_key" in conversion and conversion["trigger_key"] != row.get("trigger_key"):
            continue
        if conversion.get("order_id") is not None:
            orders.append(str(conversion["order_id"]))
    return sorted(set(orders))


def _contacts(
    con: Any, customer_id: str, conversions: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    table = tables.find_table(con, "fct_campaign_contacts", ("marts",))
    if table is None:
        return None
    found = tables.rows(con, f"select * from {table} where customer_id = ?", [customer_id])
    for contact in found:
        contact["attributed_order_ids"] = _attributed(conversions, contact)
    return found


def _holdouts(
    con: Any, customer_id: str, conversions: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    table = tables.find_table(con, "fct_campaign_holdouts", ("marts",))
    if table is None:
        return None
    found = tables.rows(con, f"select * from {table} where customer_id = ?", [customer_id])
    for holdout in found:
        holdout["attributed_order_ids"] = _attributed(conversions, holdout)
    return found


def _contact_event(contact: dict[str, Any]) -> dict[str, Any]:
    at = next(
        (
            contact[name]
            for name in ("contacted_at", "sent_at", "scheduled_send_at", "created_at")
            if contact.get(name) is not None
        ),
        None,
    )
    steps = [
        f"{label} {_when(contact[name])}"
        for name, label in (
            ("delivered_at", "delivered"),
            ("first_opened_at", "opened"),
            ("first_clicked_at", "clicked"),
            ("bounced_at", "bounced"),
            ("unsubscribed_at", "unsubscribed"),
        )
        if contact.get(name) is not None
    ]
    summary = f"{contact.get('campaign_id')}: {contact.get('status')}"
    offer = contact.get("offer_code") or contact.get("offer_id")
    if offer:
        summary += f", offer {offer}"
    if contact.get("amount_eur") is not None:
        summary += f" {_money(contact['amount_eur'])}"
    if steps:
        summary += f" ({'; '.join(steps)})"
    if contact.get("last_error") and contact.get("status") in ("failed", "bounced"):
        summary += f", error: {contact['last_error']}"
    summary += _outcome(contact["attributed_order_ids"])
    return {
        "at": at,
        "channel": contact.get("channel"),
        "kind": "contact",
        "summary": summary,
        "detail": contact,
    }


def _holdout_event(holdout: dict[str, Any]) -> dict[str, Any]:
    summary = f"{holdout.get('campaign_id')}: held out (control group), not contacted"
    return {
        "at": holdout.get("would_contact_at"),
        "channel": None,
        "kind": "holdout",
        "summary": summary + _outcome(holdout["attributed_order_ids"]),
        "detail": holdout,
    }


def _outcome(order_ids: list[str]) -> str:
    if not order_ids:
        return ""
    return f" -> bought within the attribution window: {', '.join(order_ids)}"


def _money(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value):,.2f} EUR" if isinstance(value, Decimal | float | int) else str(value)


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return "-" if value is None else str(value)


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def format_history(history: dict[str, Any]) -> str:
    """The history as text for a terminal: who, which records, then every event in order."""
    customer = history["customer"]
    name = " ".join(
        str(part) for part in (customer.get("first_name"), customer.get("last_name")) if part
    )
    lines = [
        f"customer {history['customer_id']}" + (f" ({name})" if name else ""),
        f"  lifecycle {customer.get('lifecycle_stage')}, segment {customer.get('rfm_segment')}, "
        f"preferred channel {customer.get('preferred_channel') or '-'}, "
        f"{customer.get('order_count') or 0} order(s), spent {_money(customer.get('total_spent'))}",
        f"  consent: email {_yes(customer.get('has_email_consent'))}, "
        f"sms {_yes(customer.get('has_sms_consent'))}; loyalty "
        f"{customer.get('loyalty_account_id') or 'none'}; nearest store "
        f"{customer.get('nearest_store_id') or '-'}, usual store "
        f"{customer.get('usual_store_id') or '-'}",
        _prediction_line(history.get("prediction")),
        f"identity: {len(history['identities'])} source record(s) unified",
    ]
    for record in history["identities"]:
        known = [
            str(record[name])
            for name in ("email", "phone", "social_handle")
            if record.get(name) is not None
        ]
        lines.append(f"  {record['record_key']:<24} {' '.join(known)}")
    lines.append(f"history: {len(history['timeline'])} event(s), oldest first")
    for event in history["timeline"]:
        lines.append(
            f"  {_when(event['at']):<16}  {event['channel'] or '-':<16}  "
            f"{event['kind']:<15} {event['summary']}"
        )
    if history["contacts"] is None:
        lines.append("contacts: no contacts yet (the warehouse has no fct_campaign_contacts)")
    elif not history["contacts"]:
        lines.append("contacts: no contacts yet")
    else:
        statuses: dict[str, int] = {}
        for contact in history["contacts"]:
            status = str(contact.get("status"))
            statuses[status] = statuses.get(status, 0) + 1
        shown = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
        lines.append(f"contacts: {len(history['contacts'])} ({shown})")
    if history["holdouts"]:
        lines.append(f"holdouts: {len(history['holdouts'])} (measured, never contacted)")
    return "\n".join(lines)
