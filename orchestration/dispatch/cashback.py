"""Loyalty cashback: credit each claimed contact's cashback in the loyalty API, exactly once.

``POST {loyalty}/v1/members/{loyalty_account_id}/credits`` with ``Idempotency-Key:
<contact_id>`` and ``{amount_eur, offer_id, valid_in, expires_at}``. The loyalty API answers a
repeated key with the original credit (200, never a second credit), so any retry is safe: a
timeout, a 5xx, a dispatcher that crashed after the credit and before the ledger row was
marked (``recover_stale`` puts the row back to ``pending``; the re-POST replays).

The amount:

``cashback_amount``
    the contact's ``amount`` (the offer's euros).
``cashback_percent``
    the percent of the cart / order value, capped by ``cashback_max_reward_eur``. The audience
    (``sync_loyalty_cashback_audience``) does not carry the cart value itself, but its
    ``estimated_cost_eur`` is exactly that figure: ``int_campaign_eligibility`` computes it as
    ``least(offer_value / 100 * coalesce(reference_amount, average_order_value, 0),
    offer_max_reward_eur)`` (reference_amount = the abandoned cart's subtotal or the order's
    total). We credit that, rounded to cents, so what is credited is what the budget cap
    counted. Without it (an older hand-off), the same rule on the trigger payload's
    ``cart.subtotal`` / ``order.total``.

``expires_at`` is the end of the ``offer_valid_until`` day (23:59:59) in the customer's
timezone (payload ``timezone``, else Europe/Madrid, the dbt var ``default_timezone``).
Outcomes: 201/200 -> ``sent`` with the credit id; 404 (unknown member) and other 4xx ->
``dead_lettered`` with the API's error text; 429/5xx/timeouts -> ``failed`` with a retry time
(retried across runs until the retry horizon; a 429 paces every call to the API).
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestration.dispatch import http, pacing
from orchestration.dispatch.ledger import Contact, Ledger
from orchestration.dispatch.states import Channel
from orchestration.settings import Settings

DEFAULT_BATCH_SIZE = 200
CHANNEL = Channel.LOYALTY_CASHBACK
DEFAULT_TIMEZONE = "Europe/Madrid"  # dbt var default_timezone
VALID_IN = ("store_only", "everywhere")
CENT = Decimal("0.01")


class CreditRefused(ValueError):
    """The contact cannot be credited as it is (no account, no amount...): dead-lettered."""


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def trigger_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The trigger's template variables (the nested ``payload_json`` of the hand-off row)."""
    nested = payload.get("payload_json")
    if isinstance(nested, dict):
        return nested
    if isinstance(nested, str) and nested.strip():
        try:
            parsed = json.loads(nested)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _reference_amount(payload: dict[str, Any]) -> Decimal | None:
    """The cart subtotal or order total the trigger carried (what a percent applies to)."""
    trigger = trigger_payload(payload)
    for holder, key in (("cart", "subtotal"), ("cart", "total"), ("order", "total")):
        section = trigger.get(holder)
        if isinstance(section, dict):
            found = _decimal(section.get(key))
            if found is not None and found > 0:
                return found
    return None


def credit_amount(contact: Contact) -> Decimal:
    """The euros to credit (cents), by the rule in the module docstring; raises
    :class:`CreditRefused` when there is nothing valid to credit."""
    payload = contact.payload
    kind = payload.get("offer_kind")
    cap = _decimal(payload.get("cashback_max_reward_eur"))
    if kind == "cashback_amount":
        amount = _decimal(contact.amount)
        if amount is None:
            amount = _decimal(payload.get("cashback_amount_eur"))
    elif kind == "cashback_percent":
        amount = _decimal(contact.estimated_cost_eur)
        if amount is None:
            percent = _decimal(payload.get("cashback_percent") or payload.get("offer_value"))
            reference = _reference_amount(payload)
            if percent is None or reference is None:
                raise CreditRefused(
                    "cashback_percent without estimated_cost_eur nor a cart/order value"
                )
            amount = percent / 100 * reference
        if cap is not None:
            amount = min(amount, cap)
    else:
        raise CreditRefused(f"offer kind {kind!r} is not a cashback offer")
    if amount is None:
        raise CreditRefused("no cashback amount")
    rounded = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    if cap is not None and rounded > cap:
        rounded = cap.quantize(CENT)
    if rounded <= 0:
        raise CreditRefused(f"nothing to credit (amount {rounded} EUR)")
    return rounded


def _zone(payload: dict[str, Any]) -> ZoneInfo:
    name = payload.get("timezone") or DEFAULT_TIMEZONE
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def expires_at(payload: dict[str, Any]) -> str:
    """The end of the ``offer_valid_until`` day in the customer's timezone, ISO with offset."""
    text = payload.get("offer_valid_until")
    if not text:
        raise CreditRefused("no offer_valid_until")
    try:
        day = date.fromisoformat(str(text)[:10])
    except ValueError as error:
        raise CreditRefused(f"offer_valid_until is not a date: {text!r}") from error
    return datetime.combine(day, time(23, 59, 59), _zone(payload)).isoformat()


def credit_body(contact: Contact) -> dict[str, Any]:
    """The credit request body (deterministic: a retry sends the same body, as the loyalty
    API requires for a replay)."""
    payload = contact.payload
    offer_id = contact.offer_id or payload.get("offer_id")
    if not offer_id:
        raise CreditRefused("no offer_id")
    valid_in = payload.get("offer_valid_in")
    if valid_in not in VALID_IN:
        raise CreditRefused(f"offer_valid_in must be one of {list(VALID_IN)}, got {valid_in!r}")
    return {
        "amount_eur": f"{credit_amount(contact)}",
        "offer_id": str(offer_id),
        "valid_in": valid_in,
        "expires_at": expires_at(payload),
    }


def credit_request(contact: Contact, base_url: str) -> http.PreparedRequest | str:
    """The POST for one contact, or the reason it cannot be made."""
    member = contact.payload.get("loyalty_account_id")
    if not member:
        return "no loyalty_account_id to credit"
    try:
        body = credit_body(contact)
    except CreditRefused as refused:
        return str(refused)
    return http.PreparedRequest(
        "POST",
        f"{base_url.rstrip('/')}/v1/members/{quote(str(member), safe='')}/credits",
        body,
        {"Idempotency-Key": contact.contact_id},
    )


def _credit_id(contact: Contact, outcome: http.Outcome) -> str | None:
    body = outcome.body
    return str(body["credit_id"]) if isinstance(body, dict) and body.get("credit_id") else None


def send_due(
    ledger: Ledger,
    cfg: Settings,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    campaign_id: str | None = None,
) -> dict[str, int]:
    """Credit every due cashback contact (see the module docstring); returns the counts
    ``{"claimed", "sent", "failed", "dead_lettered", "unknown"}``."""
    base_url = cfg.base_urls["loyalty"]
    with http.session(cfg.tokens["loyalty"]) as client:
        return http.send_rest_channel(
            ledger,
            CHANNEL,
            client,
            lambda contact: credit_request(contact, base_url),
            _credit_id,
            now=now,
            batch_size=batch_size,
            limit=limit,
            campaign_id=campaign_id,
            max_backoff=cfg.dispatch_max_backoff_seconds,
            provider=pacing.channel_gate(CHANNEL, cfg),
        )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "CreditRefused",
    "credit_amount",
    "credit_body",
    "credit_request",
    "expires_at",
    "send_due",
    "trigger_payload",
]
