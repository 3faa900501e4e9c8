"""One offer everywhere: check every contact about to be sent, block the inconsistent ones.

Before a pending (or failed, to be retried) contact is sent, :func:`check_pending` checks it
against three references:

1. **Its siblings** - the contacts of the same (campaign, customer, trigger occurrence) on the
   other channels, in any state: they must carry the same ``offer_id``, ``offer_code`` and
   ``amount``. The customer reads the email, gets the credit and is greeted in store about one
   offer; two versions of it would be a broken promise.
2. **The campaign's current config** (``campaigns/<id>.yml``, :func:`load_all`): offer id,
   kind, value, code and validity scope. The renderer shows the config's offer, so a contact
   recorded from an older config would credit one amount and announce another.
3. **The warehouse price of every item the contact shows**, on the channel it appears on:
   the email shows the cart items, matching or recommended products of its trigger payload
   (exactly what :func:`trigger_extra` hands the templates) at their web price; the in-store
   offer shows the cart items (``cart_items_json``) that staff find on the shelf, at the store
   price. Prices come from ``marts.dim_products`` (``web_price``, ``store_price``), read
   read-only. Past order lines (``order_items``) are not checked: they show what was paid.

A mismatch suppresses the contact with a readable reason (``offer_mismatch: ...``,
``price_mismatch: item X shows 49.95 but the web price is 39.95``) and, since it is one offer,
its siblings that are not sent yet (``offer_mismatch: sibling email contact ... blocked:
...``). Suppression is terminal and audited in the ledger. Without a warehouse the price part
is skipped with a warning (the offer checks still run).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestration.campaigns.config import Campaign
from orchestration.campaigns.loader import load_all
from orchestration.campaigns.preview import trigger_extra
from orchestration.dispatch.ledger import ConcurrentChange, Contact, Ledger
from orchestration.dispatch.states import Channel, IllegalTransition, State
from orchestration.settings import Settings

log = logging.getLogger(__name__)

OFFER_MISMATCH = "offer_mismatch"
PRICE_MISMATCH = "price_mismatch"
CHECKED_STATES = (State.PENDING, State.FAILED)  # what may still be sent (and suppressed)
# Trigger variables listing products shown with a current price (key of the price field).
PRICED_LISTS: tuple[str, ...] = ("cart_items", "matching_products", "recommended_products")
PRICE_FIELDS: tuple[str, ...] = ("unit_price", "price")
CENT = 0.005  # prices are compared to the cent
WAREHOUSE_RETRY_SECONDS = 10.0  # a dbt build may hold the DuckDB write lock for a moment

Group = tuple[str, str, str]  # (campaign_id, customer_id, trigger_key)
COUNT_KEYS = (
    "checked",
    "passed",
    "suppressed",
    OFFER_MISMATCH,
    PRICE_MISMATCH,
    "sibling",
    "prices_unchecked",
)


@dataclass(frozen=True)
class Price:
    """The warehouse prices of one product."""

    product_id: str
    sku: str | None
    title: str | None
    web_price: float | None
    store_price: float | None


@dataclass(frozen=True)
class PriceBook:
    """Warehouse prices by product id and by sku."""

    by_product: Mapping[str, Price]
    by_sku: Mapping[str, Price]

    def find(self, item: Mapping[str, Any]) -> Price | None:
        product_id, sku = item.get("product_id"), item.get("sku")
        if product_id is not None and str(product_id) in self.by_product:
            return self.by_product[str(product_id)]
        if sku is not None:
            return self.by_sku.get(str(sku))
        return None


def load_prices(cfg: Settings) -> PriceBook | None:
    """Every product's web and store price from ``marts.dim_products`` (read-only), or None
    (with a warning) when the warehouse or the table is not there or cannot be opened."""
    import duckdb

    path = cfg.warehouse_path
    if not path.exists():
        log.warning("Offer check: no warehouse at %s: item prices are not checked", path)
        return None
    deadline = time.monotonic() + WAREHOUSE_RETRY_SECONDS
    while True:
        try:
            con = duckdb.connect(str(path), read_only=True)
            break
        except duckdb.IOException as error:  # locked by a writer (dbt): wait a little
            if time.monotonic() >= deadline:
                log.warning(
                    "Offer check: warehouse %s unreadable (%s): prices not checked", path, error
                )
                return None
            time.sleep(0.5)
    try:
        found = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'marts' and table_name = 'dim_products'"
        ).fetchone()
        if not found or found[0] == 0:
            log.warning("Offer check: the warehouse has no marts.dim_products: prices not checked")
            return None
        rows = con.execute(
            "select cast(product_id as varchar), cast(sku as varchar), title, "
            "cast(web_price as double), cast(store_price as double) from marts.dim_products"
        ).fetchall()
    finally:
        con.close()
    prices = [Price(str(row[0]), row[1], row[2], row[3], row[4]) for row in rows]
    return PriceBook(
        by_product={price.product_id: price for price in prices},
        by_sku={price.sku: price for price in prices if price.sku},
    )


def _same_number(left: float | None, right: float | None) -> bool:
    if left is None or right is None:
        return left is None and right is None
    return math.isclose(float(left), float(right), abs_tol=CENT)


def _blank(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value)


def _money(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def _offer_text(contact: Contact) -> str:
    return (
        f"{contact.channel} has offer {contact.offer_id} code {contact.offer_code or '-'} "
        f"amount {contact.amount if contact.amount is not None else '-'}"
    )


def _same_offer(left: Contact, right: Contact) -> bool:
    return (
        left.offer_id == right.offer_id
        and _blank(left.offer_code) == _blank(right.offer_code)
        and _same_number(left.amount, right.amount)
    )


def sibling_problem(group: Sequence[Contact]) -> str | None:
    """Why the contacts of one (campaign, customer, trigger) disagree on the offer, or None."""
    if all(_same_offer(group[0], contact) for contact in group[1:]):
        return None
    shown = "; ".join(_offer_text(contact) for contact in sorted(group, key=lambda c: c.channel))
    return f"{OFFER_MISMATCH}: the channels disagree: {shown}"


def config_problem(contact: Contact, campaign: Campaign | None) -> str | None:
    """Why the contact's offer is not the campaign's current offer, or None."""
    if campaign is None:
        return f"{OFFER_MISMATCH}: campaign {contact.campaign_id} has no valid campaign file"
    offer = campaign.offer
    payload = contact.payload
    value = getattr(offer, "value", None)
    code = getattr(offer, "code", None)
    problems: list[str] = []
    if contact.offer_id != offer.id:
        problems.append(f"offer id {contact.offer_id} but the campaign's offer is {offer.id}")
    kind = payload.get("offer_kind")
    if kind is not None and kind != offer.kind:
        problems.append(f"offer kind {kind} but the campaign's is {offer.kind}")
    if not _same_number(contact.amount, value):
        problems.append(
            f"amount {contact.amount if contact.amount is not None else 'none'} but the "
            f"campaign's offer value is {value if value is not None else 'none'}"
        )
    if _blank(contact.offer_code) != _blank(code):
        problems.append(
            f"code {contact.offer_code or 'none'} but the campaign's is {code or 'none'}"
        )
    valid_in = payload.get("offer_valid_in")
    if valid_in is not None and valid_in != offer.valid_in:
        problems.append(f"valid in {valid_in} but the campaign's offer is {offer.valid_in}")
    if not problems:
        return None
    return f"{OFFER_MISMATCH}: {contact.channel} contact has " + "; ".join(problems)


def shown_items(contact: Contact, campaign: Campaign) -> list[dict[str, Any]]:
    """The items with a price the contact shows on its channel (see the module docstring)."""
    payload = contact.payload
    if contact.channel == Channel.IN_STORE.value:
        raw = payload.get("cart_items_json") or "[]"
        items = json.loads(raw) if isinstance(raw, str) else raw
        return [item for item in items or [] if isinstance(item, dict)]
    if contact.channel != Channel.EMAIL.value:
        return []  # the cashback line shows the offer, no item
    raw_trigger = payload.get("payload_json") or "{}"
    trigger = json.loads(raw_trigger) if isinstance(raw_trigger, str) else dict(raw_trigger)
    extra = trigger_extra(campaign, trigger, None)
    found: list[dict[str, Any]] = []
    for name in PRICED_LISTS:
        found.extend(item for item in extra.get(name) or [] if isinstance(item, dict))
    return found


def price_problem(contact: Contact, campaign: Campaign, prices: PriceBook) -> str | None:
    """Why an item the contact shows is not at its warehouse price on this channel, or None."""
    in_store = contact.channel == Channel.IN_STORE.value
    which = "store price" if in_store else "web price"
    for item in shown_items(contact, campaign):
        shown = next((item[key] for key in PRICE_FIELDS if item.get(key) is not None), None)
        if shown is None:
            continue
        price = prices.find(item)
        name = str(item.get("title") or item.get("sku") or item.get("product_id") or "?")
        if item.get("sku") and item.get("title"):
            name = f"{item['title']} ({item['sku']})"
        if price is None:
            return (
                f"{PRICE_MISMATCH}: item {name} shows {float(shown):.2f} but the warehouse "
                "has no such product"
            )
        expected = price.store_price if in_store else price.web_price
        if not _same_number(float(shown), expected):
            return (
                f"{PRICE_MISMATCH}: item {name} shows {float(shown):.2f} but the {which} is "
                f"{_money(expected)}"
            )
    return None


def _groups(contacts: Iterable[Contact]) -> dict[Group, list[Contact]]:
    grouped: dict[Group, list[Contact]] = {}
    for contact in contacts:
        key = (contact.campaign_id, contact.customer_id, contact.trigger_key)
        grouped.setdefault(key, []).append(contact)
    return grouped


def _suppress(ledger: Ledger, contact: Contact, reason: str) -> bool:
    """Suppress one contact; False when it left pending/failed meanwhile (claimed, sent)."""
    try:
        ledger.suppress(contact.contact_id, reason)
    except (IllegalTransition, ConcurrentChange):
        log.warning(
            "Offer check: %s could not be suppressed (no longer pending)", contact.contact_id
        )
        return False
    return True


def check_pending(
    ledger: Ledger, cfg: Settings, *, campaign_id: str | None = None
) -> dict[str, int]:
    """Check every pending or failed contact (of ``campaign_id``, else all) and suppress the
    inconsistent ones with their not-yet-sent siblings.

    Returns counts: ``checked`` (contacts looked at), ``passed``, ``suppressed`` (all
    suppressions), ``offer_mismatch`` and ``price_mismatch`` (contacts suppressed for their own
    problem), ``sibling`` (suppressed because a sibling failed the check), and
    ``prices_unchecked`` (1 when the warehouse could not be read).
    """
    due = [
        contact
        for state in CHECKED_STATES
        for contact in ledger.list_contacts(state=state, campaign_id=campaign_id)
    ]
    counts: Counter[str] = Counter(dict.fromkeys(COUNT_KEYS, 0))
    counts["checked"] = len(due)
    if not due:
        return dict(counts)
    campaigns, _errors = load_all(cfg.campaigns_dir)
    by_id = {campaign.id: campaign for campaign in campaigns}
    needs_prices = any(c.channel in (Channel.EMAIL.value, Channel.IN_STORE.value) for c in due)
    prices = load_prices(cfg) if needs_prices else None
    if needs_prices and prices is None:
        counts["prices_unchecked"] = 1
    # Siblings in any state: an offer already sent on one channel binds the others.
    everyone: list[Contact] = []
    for due_campaign in sorted({contact.campaign_id for contact in due}):
        everyone.extend(ledger.list_contacts(campaign_id=due_campaign))
    groups = _groups(everyone)
    due_ids = {contact.contact_id for contact in due}
    for key, group in sorted(groups.items()):
        checked = [contact for contact in group if contact.contact_id in due_ids]
        if not checked:
            continue
        campaign = by_id.get(key[0])
        reasons: dict[str, str] = {}  # contact id -> its own problem
        shared = sibling_problem(group)
        for contact in checked:
            problem = shared or config_problem(contact, campaign)
            if problem is None and campaign is not None and prices is not None:
                problem = price_problem(contact, campaign, prices)
            if problem is not None:
                reasons[contact.contact_id] = problem
        if not reasons:
            counts["passed"] += len(checked)
            continue
        first_id, first_reason = sorted(reasons.items())[0]
        culprit = next(contact for contact in group if contact.contact_id == first_id)
        for contact in checked:
            own = reasons.get(contact.contact_id)
            reason = own or (
                f"{OFFER_MISMATCH}: sibling {culprit.channel} contact {culprit.contact_id} "
                f"blocked: {first_reason}"
            )
            if _suppress(ledger, contact, reason):
                counts["suppressed"] += 1
                counts[reason.split(":", 1)[0] if own else "sibling"] += 1
                log.warning(
                    "Offer check: suppressed %s (%s): %s",
                    contact.contact_id,
                    contact.channel,
                    reason,
                )
        for contact in group:
            if contact.state in (State.SENT, State.UNKNOWN, State.SENDING):
                log.error(
                    "Offer check: the %s contact %s of a blocked offer is already %s and "
                    "cannot be withdrawn (%s)",
                    contact.channel,
                    contact.contact_id,
                    contact.state.value,
                    first_reason,
                )
    result = dict(counts)
    log.info("Offer check: %s", result)
    return result


__all__ = [
    "OFFER_MISMATCH",
    "PRICE_MISMATCH",
    "Price",
    "PriceBook",
    "check_pending",
    "config_problem",
    "load_prices",
    "price_problem",
    "shown_items",
    "sibling_problem",
]
