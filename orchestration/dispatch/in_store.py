"""In-store offers: upsert each claimed contact's offer into its store's list in the store API.

``PUT {store}/v1/stores/{store_id}/offers/{contact_id}`` with ``{customer_id, offer_id, code,
conditions, items, valid_from, valid_until}``. The store API keys the offer by the contact id
and treats the same body again as no change (same ``version``), so a retry or a re-run after a
crash cannot duplicate an offer.

What staff get (:func:`offer_body`, also what the staff sheets print):

``code``
    the offer's code; a cashback offer has none (it is applied through the loyalty account),
    so the offer id stands in as the reference staff look up.
``items``
    the cart items of the trigger (``cart_items_json``): the abandoned-cart trigger only picks a
    store that has every item of the cart on its shelf, in the cart's quantity.
``conditions``
    an object: the human text (``text``: offer label, where it is valid, until when, minimum
    purchase when the payload has one), the campaign's ``staff_note`` (``channels.in_store.
    staff_note``, rendered by the campaign renderer with the same context as a preview) and
    ``recognise``: how staff recognise the customer (first name, loyalty account, masked email
    and phone when the payload has them).

Outcomes as for every REST channel (:mod:`orchestration.dispatch.http`): 2xx -> ``sent`` (the
provider id names the store, key and version), 4xx -> ``dead_lettered`` with the API's text,
429/5xx/timeouts -> ``failed`` with a retry time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestration.campaigns import Campaign, load_all
from orchestration.dispatch import http, pacing
from orchestration.dispatch.cashback import DEFAULT_TIMEZONE, trigger_payload
from orchestration.dispatch.ledger import Contact, Ledger
from orchestration.dispatch.states import Channel
from orchestration.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 200
CHANNEL = Channel.IN_STORE
ITEM_FIELDS = (
    "product_id",
    "sku",
    "title",
    "category",
    "size",
    "colour",
    "color",
    "quantity",
    "unit_price",
    "price",
)


class OfferRefused(ValueError):
    """The contact's offer cannot be placed as it is (no store, no valid date): dead-lettered."""


def mask_email(email: Any) -> str | None:
    """``lucia.martin@example.com`` -> ``l***@example.com`` (enough to confirm, not to copy)."""
    if not isinstance(email, str) or "@" not in email:
        return None
    local, _, domain = email.strip().partition("@")
    return f"{local[:1]}***@{domain}" if local else None


def mask_phone(phone: Any) -> str | None:
    """``+34 600 123 456`` -> ``*** 456`` (the last three digits)."""
    if phone is None:
        return None
    digits = "".join(character for character in str(phone) if character.isdigit())
    return f"*** {digits[-3:]}" if len(digits) >= 6 else None


def _zone(payload: Mapping[str, Any]) -> ZoneInfo:
    try:
        return ZoneInfo(str(payload.get("timezone") or DEFAULT_TIMEZONE))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def send_day(contact: Contact) -> date | None:
    """The local day (customer's timezone, else Europe/Madrid) the offer starts: the day of
    ``scheduled_send_at`` (or of ``sent_at`` when it had none)."""
    moment = contact.scheduled_send_at or contact.sent_at
    return moment.astimezone(_zone(contact.payload)).date() if moment else None


def cart_items(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cart items as objects (the known fields, in a fixed order), from
    ``cart_items_json`` (a JSON text or a list), else the trigger payload's ``cart_items``."""
    raw: Any = payload.get("cart_items_json")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError:
            raw = []
    if not raw:
        raw = trigger_payload(dict(payload)).get("cart_items") or []
    if not isinstance(raw, list):
        return []
    items = []
    for item in raw:
        if isinstance(item, dict):
            items.append({key: item[key] for key in ITEM_FIELDS if item.get(key) is not None})
    return items


def _valid_until(payload: Mapping[str, Any]) -> str:
    text = payload.get("offer_valid_until")
    if not text:
        raise OfferRefused("no offer_valid_until")
    try:
        return date.fromisoformat(str(text)[:10]).isoformat()
    except ValueError as error:
        raise OfferRefused(f"offer_valid_until is not a date: {text!r}") from error


def _fallback_label(payload: Mapping[str, Any]) -> str:
    """The offer label when the campaign file is gone (the warehouse's offer fields)."""
    from orchestration.campaigns.templating import format_eur, format_percent

    kind, value = payload.get("offer_kind"), payload.get("offer_value")
    if value is None:
        return str(kind or "oferta")
    if kind == "cashback_percent":
        label = f"{format_percent(float(value))} de cashback"
        cap = payload.get("cashback_max_reward_eur")
        return label + (f" (hasta {format_eur(float(cap))})" if cap is not None else "")
    if kind == "cashback_amount":
        return f"{format_eur(float(value))} de cashback"
    if kind == "discount_code":
        return f"{format_percent(float(value))} de descuento"
    return str(kind or "oferta")


def _staff_note(contact: Contact, campaign: Campaign, day: date | None) -> str | None:
    """The campaign's staff note rendered for this customer by the campaign renderer (the
    preview's), or None when the campaign has none. Raises :class:`OfferRefused` when it
    cannot be rendered."""
    from jinja2 import TemplateError

    from orchestration.campaigns.config import Channels
    from orchestration.campaigns.preview import trigger_extra
    from orchestration.campaigns.templating import render_contact

    in_store = campaign.channels.in_store
    if in_store is None:
        return None
    payload = contact.payload
    only_store = campaign.model_copy(update={"channels": Channels(in_store=in_store)})
    customer = {
        "customer_id": contact.customer_id,
        "first_name": payload.get("first_name") or "",
        "last_name": payload.get("last_name") or "",
        "email": payload.get("email"),
        "city": payload.get("city"),
    }
    store = None
    if payload.get("store_id") is not None:
        store = {
            "store_id": payload["store_id"],
            "name": payload.get("store_name") or f"tienda {payload['store_id']}",
            "city": payload.get("store_city"),
            "distance_km": payload.get("distance_km"),
        }
    try:
        extra = trigger_extra(campaign, trigger_payload(dict(payload)), store)
        rendered = render_contact(only_store, customer, extra, today=day)
    except (TemplateError, ValueError, TypeError) as error:
        # the same rule as email: a contact whose message cannot be rendered is blocked with
        # the reason (file, line, field), never sent with a part missing
        raise OfferRefused(f"staff note not rendered: {error}") from error
    card = rendered.staff_card or ""
    marker = "Nota para el equipo:"  # the last line of templating.STAFF_CARD
    return card.rsplit(marker, 1)[1].strip() if marker in card else None


def offer_body(contact: Contact, campaign: Campaign | None) -> dict[str, Any]:
    """The store API body of one contact's offer (deterministic for a given contact and
    campaign file: the same PUT again changes nothing). Raises :class:`OfferRefused`."""
    from orchestration.campaigns.templating import format_date, format_eur, offer_view

    payload = contact.payload
    offer_id = contact.offer_id or payload.get("offer_id")
    if not offer_id:
        raise OfferRefused("no offer_id")
    day = send_day(contact)
    valid_until = _valid_until(payload)
    view = offer_view(campaign, day or date.today()) if campaign is not None else None
    label = view["label"] if view else _fallback_label(payload)
    valid_in = payload.get("offer_valid_in") or (view["valid_in"] if view else None)
    valid_in_label = "solo en tiendas" if valid_in == "store_only" else "en tienda y online"
    code = contact.offer_code or payload.get("offer_code") or (view["code"] if view else None)
    minimum = payload.get("offer_min_purchase_eur") or payload.get("min_purchase_eur")
    until_text = format_date(date.fromisoformat(valid_until))
    text = f"{label} · {valid_in_label} · válida hasta el {until_text}"
    if minimum is not None:
        text += f" · compra mínima {format_eur(float(minimum))}"
    recognise = {
        "first_name": payload.get("first_name"),
        "loyalty_account_id": payload.get("loyalty_account_id"),
        "email": mask_email(payload.get("email")),
        "phone": mask_phone(payload.get("phone")),
    }
    conditions: dict[str, Any] = {
        "text": text,
        "offer_label": label,
        "offer_kind": payload.get("offer_kind"),
        "valid_in": valid_in,
        "min_purchase_eur": minimum,
        "campaign_id": contact.campaign_id,
        "campaign_name": campaign.name if campaign is not None else None,
        "staff_note": _staff_note(contact, campaign, day) if campaign is not None else None,
        "recognise": {key: value for key, value in recognise.items() if value},
    }
    body: dict[str, Any] = {
        "customer_id": contact.customer_id,
        "offer_id": str(offer_id),
        # cashback has no code: staff apply it on the loyalty account; the offer id is the reference
        "code": str(code or offer_id),
        "conditions": {key: value for key, value in conditions.items() if value is not None},
        "items": cart_items(payload),
        "valid_until": valid_until,
    }
    if day is not None:
        body["valid_from"] = day.isoformat()
    return body


def offer_request(
    contact: Contact, base_url: str, campaigns: Mapping[str, Campaign]
) -> http.PreparedRequest | str:
    """The PUT for one contact, or the reason it cannot be made."""
    store_id = contact.payload.get("store_id")
    if store_id is None or str(store_id).strip() == "":
        return "no store_id for the in-store offer"
    try:
        body = offer_body(contact, campaigns.get(contact.campaign_id))
    except OfferRefused as refused:
        return str(refused)
    store = quote(str(store_id), safe="")
    return http.PreparedRequest(
        "PUT", f"{base_url.rstrip('/')}/v1/stores/{store}/offers/{contact.contact_id}", body
    )


def _offer_version(contact: Contact, outcome: http.Outcome) -> str | None:
    body = outcome.body
    if not isinstance(body, dict):
        return None
    return f"store:{body.get('store_id')}:offer:{body.get('offer_key')}:v{body.get('version')}"


def campaigns_by_id(cfg: Settings) -> dict[str, Campaign]:
    """The valid campaign files (the staff notes come from them); broken files are logged."""
    campaigns, errors = load_all(cfg.campaigns_dir)
    for error in errors:
        log.warning("campaign file skipped for staff notes: %s", error)
    return {campaign.id: campaign for campaign in campaigns}


def send_due(
    ledger: Ledger,
    cfg: Settings,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    campaign_id: str | None = None,
) -> dict[str, int]:
    """Upsert every due in-store offer (see the module docstring); returns the counts
    ``{"claimed", "sent", "failed", "dead_lettered", "unknown"}``."""
    base_url = cfg.base_urls["store"]
    campaigns = campaigns_by_id(cfg)
    with http.session(cfg.tokens["store"]) as client:
        return http.send_rest_channel(
            ledger,
            CHANNEL,
            client,
            lambda contact: offer_request(contact, base_url, campaigns),
            _offer_version,
            now=now,
            batch_size=batch_size,
            limit=limit,
            campaign_id=campaign_id,
            max_backoff=cfg.dispatch_max_backoff_seconds,
            provider=pacing.channel_gate(CHANNEL, cfg),
        )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "OfferRefused",
    "campaigns_by_id",
    "cart_items",
    "mask_email",
    "mask_phone",
    "offer_body",
    "offer_request",
    "send_day",
    "send_due",
]
