"""Staff sheets: one printable HTML page per store and day with the customers to expect.

From the ledger's ``sent`` in-store contacts (the offers the store API accepted), grouped by
store and by the local day of ``scheduled_send_at``, written to
``OMNI_HOME/staff_sheets/<YYYY-MM-DD>/<store_id>.html`` with an ``index.html`` per day that
links them. Each customer shows what staff need at the till: first name and how to recognise
them (loyalty account, masked email / phone), the cart items on this store's shelf (title,
reference, size and colour when known, quantity, price), the offer code, its amount and
conditions, the campaign's staff note and the last valid day.

The store's name comes from the contact's payload (``store_name``) or else, read-only, from the
warehouse's ``marts.dim_stores``. The content is exactly the offer the store API received
(:func:`orchestration.dispatch.in_store.offer_body`), so the sheet and the store's offer list
never disagree. Pages are self-contained (inline CSS, no scripts, no external assets), escaped
by Jinja's autoescape (a customer called ``<script>`` is text), carry no timestamp of their
own, and are rewritten only when their content changes: writing them again is idempotent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader

from orchestration.campaigns import Campaign
from orchestration.campaigns.templating import format_date, format_eur, format_percent
from orchestration.dispatch import in_store
from orchestration.dispatch.ledger import Contact, Ledger
from orchestration.dispatch.states import Channel, State
from orchestration.settings import Settings

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class StoreSheet:
    """One store's page for one day."""

    store_id: str
    name: str
    customers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return f"{store_file_stem(self.store_id)}.html"


def staff_sheets_dir(cfg: Settings) -> Path:
    """Where the sheets go: ``OMNI_HOME/staff_sheets``."""
    return cfg.omni_home / "staff_sheets"


def store_file_stem(store_id: str) -> str:
    """The store id as a file name (ids with other characters get a short hash, so two
    stores never share a page)."""
    safe = _UNSAFE.sub("_", store_id) or "store"
    if safe == store_id:
        return safe
    digest = hashlib.sha1(store_id.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{safe}-{digest}"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value,
    )


def _money(value: Any) -> str | None:
    try:
        return format_eur(float(value)) if value is not None else None
    except (TypeError, ValueError):
        return str(value)


def _amount_text(contact: Contact) -> str | None:
    """The offer's amount as staff read it: euros for a cashback amount, a percentage for a
    percent offer (its label carries any cap)."""
    kind = contact.payload.get("offer_kind")
    value = contact.payload.get("offer_value", contact.amount)
    if value is None:
        return None
    if kind == "cashback_amount":
        return _money(value)
    if kind in ("cashback_percent", "discount_code"):
        return format_percent(float(value))
    return None


def customer_entry(contact: Contact, body: dict[str, Any]) -> dict[str, Any]:
    """What the sheet shows of one contact, from the offer body the store API received."""
    conditions = body.get("conditions") or {}
    recognise = conditions.get("recognise") or {}
    labels = (
        ("loyalty_account_id", "Tarjeta / Loyalty card"),
        ("email", "Email"),
        ("phone", "Tel. / Phone"),
    )
    items = [
        {
            "title": item.get("title") or item.get("product_id"),
            "sku": item.get("sku"),
            "size": item.get("size"),
            "colour": item.get("colour") or item.get("color"),
            "quantity": item.get("quantity"),
            "price": _money(item.get("unit_price", item.get("price"))),
        }
        for item in body.get("items") or []
    ]
    return {
        "customer_id": contact.customer_id,
        "first_name": recognise.get("first_name") or contact.payload.get("first_name"),
        "recognise": [(label, recognise[key]) for key, label in labels if recognise.get(key)],
        "offer_label": conditions.get("offer_label"),
        "code": body.get("code"),
        "amount_text": _amount_text(contact),
        "conditions_text": conditions.get("text"),
        "staff_note": conditions.get("staff_note"),
        "valid_until_text": format_date(date.fromisoformat(body["valid_until"])),
        "cart_items": items,  # not "items": a template would read dict.items
    }


def warehouse_store_names(cfg: Settings) -> dict[str, str]:
    """``{store_id: "name (city)"}`` from the warehouse's ``marts.dim_stores`` (read-only), for
    hand-offs whose rows carry no store name; ``{}`` when the warehouse is absent or busy."""
    if not cfg.warehouse_path.exists():
        return {}
    import duckdb

    try:
        with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
            rows = con.execute(
                "select cast(store_id as varchar), store_name, city from marts.dim_stores"
            ).fetchall()
    except duckdb.Error as error:
        log.info("staff sheets: no store names from the warehouse (%s)", error)
        return {}
    return {
        str(store_id): f"{name} ({city})" if city else str(name)
        for store_id, name, city in rows
        if name
    }


def _write_if_changed(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` unless it already holds exactly that."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def collect_sheets(
    contacts: list[Contact],
    campaigns: dict[str, Campaign],
    day: date | None = None,
    store_names: dict[str, str] | None = None,
) -> dict[date, dict[str, StoreSheet]]:
    """The sheets to write: ``{day: {store_id: StoreSheet}}`` of sent in-store contacts. The
    store's name is the payload's ``store_name``, else ``store_names`` (the warehouse's)."""
    names = store_names or {}
    sheets: dict[date, dict[str, StoreSheet]] = defaultdict(dict)
    for contact in contacts:
        when = in_store.send_day(contact)
        store_id = contact.payload.get("store_id")
        if when is None or store_id is None or (day is not None and when != day):
            continue
        try:
            body = in_store.offer_body(contact, campaigns.get(contact.campaign_id))
        except in_store.OfferRefused as refused:  # it was accepted, so this is unexpected
            log.warning("staff sheet: %s skipped: %s", contact.contact_id, refused)
            continue
        key = str(store_id)
        sheet = sheets[when].get(key)
        if sheet is None:
            sheet = sheets[when][key] = StoreSheet(key, names.get(key, f"Tienda {key}"))
        if contact.payload.get("store_name"):
            sheet.name = str(contact.payload["store_name"])
        sheet.customers.append(customer_entry(contact, body))
    for stores in sheets.values():
        for sheet in stores.values():
            sheet.customers.sort(
                key=lambda entry: (str(entry["first_name"] or ""), entry["customer_id"])
            )
    return sheets


def write_staff_sheets(ledger: Ledger, cfg: Settings, *, day: date | None = None) -> list[Path]:
    """Write the staff sheets of ``day`` (default: every day with sent in-store offers); returns
    the paths written (store pages, then each day's ``index.html``). A given ``day`` without
    offers still gets its (empty) index, so staff see that nobody is expected."""
    contacts = ledger.list_contacts(state=State.SENT, channel=Channel.IN_STORE)
    names = warehouse_store_names(cfg) if contacts else {}
    sheets = collect_sheets(contacts, in_store.campaigns_by_id(cfg), day, names)
    if day is not None and day not in sheets:
        sheets[day] = {}
    env = _environment()
    page, index = (
        env.get_template("staff_sheet.html.j2"),
        env.get_template("staff_sheets_index.html.j2"),
    )
    written: list[Path] = []
    for when in sorted(sheets):
        folder = staff_sheets_dir(cfg) / when.isoformat()
        day_text = format_date(when)
        stores = sorted(sheets[when].values(), key=lambda sheet: (sheet.name, sheet.store_id))
        for sheet in stores:
            path = folder / sheet.file_name
            _write_if_changed(
                path, page.render(store=sheet, customers=sheet.customers, day_text=day_text)
            )
            written.append(path)
        listing = [
            {
                "store_id": sheet.store_id,
                "name": sheet.name,
                "file_name": sheet.file_name,
                "customers": len(sheet.customers),
            }
            for sheet in stores
        ]
        path = folder / "index.html"
        _write_if_changed(path, index.render(stores=listing, day_text=day_text))
        written.append(path)
    log.info("staff sheets: %d files under %s", len(written), staff_sheets_dir(cfg))
    return written


__all__ = [
    "StoreSheet",
    "collect_sheets",
    "customer_entry",
    "staff_sheets_dir",
    "store_file_stem",
    "warehouse_store_names",
    "write_staff_sheets",
]
