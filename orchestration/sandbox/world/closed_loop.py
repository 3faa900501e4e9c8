"""The closed loop: what the sandbox write APIs delivered changes what the world does next.

`omni sandbox advance` reads the journals of the sandbox write services (``$OMNI_HOME/sandbox``):

- ``sendgrid_messages.jsonl``: every accepted message, each recipient's email, ``send_at`` and
  ``custom_args`` (``campaign_id``, ``customer_id``, ``offer_id``, optional ``offer_code``...);
- ``loyalty_credits.jsonl``: cashback credits (``member_id``: a POS ``loyalty_account_id``);
- ``store_offers.jsonl``: in-store offers (``customer_id`` = the warehouse customer id).

Each contact is mapped to a world person (an email through the shop/POS customers and the
persons table, a loyalty account through the POS customers, a warehouse customer id through the
``customer_id`` custom arg of an email to that person or an ``email`` / ``loyalty_account_id``
in the offer's ``conditions``); a contact that maps to nobody is skipped with a log line.

The true effect per campaign is set in ``<world>/effects.json`` (absent: no effect)::

    {"default": 0.0, "effect_days": 14, "code_redemption_rate": 0.6, "<campaign_id>": 0.5}

A value is the relative uplift of a contacted person's purchase probability (web and store),
from the UTC day of the contact for ``effect_days`` days; a person contacted by several
campaigns gets the largest. Persons whose probability is zero (prospects who never bought,
lapsed customers) stay at zero. Besides the uplift, the loop redeems: an active cashback credit
is used up by the first identified store sale the simulator makes for its holder (a Square
order discount; a sale dated days ahead, like a cart bought in store later, may come first),
and an offer code received by email is entered, with probability ``code_redemption_rate``, on
the recipient's online orders within the offer's validity (a Shopify ``discount_codes``
entry), once per person and offer. Everything is a pure function of the journals, the world's seed
and the day, so the same inputs give the same world.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from orchestration.sandbox.world.clock import DAY, SECOND, day_start_us

log = logging.getLogger(__name__)

EFFECTS_FILE = "effects.json"
STATE_FILE = "closed_loop.json"  # under _state/: credits and codes already redeemed
REPORT_FILE = "closed_loop.json"  # in the world folder: what the last advance did
MESSAGES = "sendgrid_messages.jsonl"
CREDITS = "loyalty_credits.jsonl"
OFFERS = "store_offers.jsonl"
DEFAULT_EFFECT_DAYS = 14
DEFAULT_CODE_REDEMPTION_RATE = 0.6
# Approximate share of started web checkouts that end in an order (web or store), and of store
# purchases made with the loyalty card: the expected conversions use them (see `observe`).
CHECKOUT_CONVERTS = 0.75
STORE_IDENTIFIED = 0.92
STORE_VALID_IN = ("store_only", "everywhere")
ONLINE_VALID_IN = ("everywhere", "online")


class EffectsError(ValueError):
    """``effects.json`` is not valid: the message says which entry and why."""


@dataclass(frozen=True)
class Effects:
    """The simulator's true campaign effects (``effects.json``)."""

    default: float = 0.0
    by_campaign: dict[str, float] = field(default_factory=dict)
    effect_days: int = DEFAULT_EFFECT_DAYS
    code_redemption_rate: float = DEFAULT_CODE_REDEMPTION_RATE

    def uplift(self, campaign_id: str | None) -> float:
        """Relative uplift of the purchase probability for a contact of `campaign_id`."""
        if campaign_id is not None and campaign_id in self.by_campaign:
            return self.by_campaign[campaign_id]
        return self.default


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EffectsError(f"effects.json: {name} must be a number, got {value!r}")
    return float(value)


def parse_effects(data: Any) -> Effects:
    """Effects from the decoded ``effects.json`` (EffectsError on a bad entry)."""
    if not isinstance(data, dict):
        raise EffectsError("effects.json must be an object {campaign_id: relative uplift, ...}")
    uplifts = {}
    for key, value in data.items():
        if key in ("effect_days", "code_redemption_rate"):
            continue
        uplift = _number(value, repr(key))
        if uplift < -1:
            raise EffectsError(f"effects.json: {key!r} is {uplift}; an uplift is at least -1")
        uplifts[str(key)] = uplift
    days = data.get("effect_days", DEFAULT_EFFECT_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise EffectsError(f"effects.json: effect_days must be a whole number >= 1, got {days!r}")
    rate = _number(data.get("code_redemption_rate", DEFAULT_CODE_REDEMPTION_RATE), "rate")
    if not 0 <= rate <= 1:
        raise EffectsError(f"effects.json: code_redemption_rate must be in [0, 1], got {rate}")
    default = uplifts.pop("default", 0.0)
    return Effects(default, uplifts, days, rate)


def load_effects(world_dir: Path) -> Effects | None:
    """The effects of ``<world>/effects.json``, or None when the file does not exist."""
    path = Path(world_dir) / EFFECTS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise EffectsError(f"{path} is not JSON: {error}") from error
    return parse_effects(data)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a journal (missing file: none; a torn or foreign line is skipped)."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("%s line %d is not JSON: skipped", path, number)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            log.warning("%s line %d is not an object: skipped", path, number)
    return records


def _timestamp_us(value: Any) -> int | None:
    """Microseconds of a unix time (int seconds) or an ISO date/timestamp; None if neither."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value) * SECOND
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return day_start_us(date.fromisoformat(text))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * SECOND)


def _until_us(value: Any) -> int | None:
    """The end of a validity: a date means through that whole UTC day."""
    at = _timestamp_us(value)
    if at is not None and isinstance(value, str) and len(value.strip()) == 10:
        at += DAY - 1
    return at


def _email_key(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class Contact:
    person: int  # index into the model's persons
    campaign_id: str | None
    at_us: int
    source: str  # email | loyalty_credit | store_offer


@dataclass(frozen=True)
class Credit:
    person: int
    credit_id: str
    offer_id: str
    loyalty_account_id: str
    amount: float
    from_us: int
    until_us: int


@dataclass(frozen=True)
class Code:
    person: int
    code: str
    kind: str  # the campaign offer kind: discount_code | free_shipping | ...
    value: float
    offer_id: str
    from_us: int
    until_us: int


@dataclass(frozen=True)
class OfferTerms:
    """What a campaign config says about its offer (to read codes a message does not carry)."""

    campaign_id: str
    kind: str | None
    value: float | None
    code: str | None
    valid_in: str | None
    validity_days: int | None


def campaign_offers(campaigns_dir: Path | None) -> dict[str, OfferTerms]:
    """``{offer_id: OfferTerms}`` from the campaign files (none when the folder is absent)."""
    if campaigns_dir is None or not Path(campaigns_dir).is_dir():
        return {}
    import yaml

    offers = {}
    for path in sorted(Path(campaigns_dir).glob("*.y*ml")):
        try:
            config = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            log.warning("campaign file %s is not YAML: its offer is not known here", path)
            continue
        offer = config.get("offer") if isinstance(config, dict) else None
        if not isinstance(offer, dict) or not isinstance(offer.get("id"), str):
            continue
        value, days = offer.get("value"), offer.get("validity_days")
        offers[offer["id"]] = OfferTerms(
            campaign_id=str(config.get("id", path.stem)),
            kind=offer.get("kind"),
            value=float(value) if isinstance(value, int | float) else None,
            code=offer.get("code") if isinstance(offer.get("code"), str) else None,
            valid_in=offer.get("valid_in"),
            validity_days=days if isinstance(days, int) else None,
        )
    return offers


class PersonIndex:
    """Finds world persons by email, loyalty account or POS customer id."""

    def __init__(self, person_ids: np.ndarray, *tables: pa.Table) -> None:
        self.person_ids = person_ids
        self.by_email: dict[str, int] = {}
        self.by_account: dict[str, int] = {}
        self.account_of: dict[int, str] = {}
        for table in tables:
            columns = set(table.column_names)
            persons = table["person_id"].to_pylist()
            for name in ("email", "loyalty_account_id", "pos_customer_id"):
                if name not in columns:
                    continue
                for person_id, value in zip(persons, table[name].to_pylist(), strict=True):
                    index = self._index(person_id)
                    if index is None or value is None:
                        continue
                    if name == "email":
                        key = _email_key(value)
                        if key is not None:
                            self.by_email.setdefault(key, index)
                    else:
                        self.by_account.setdefault(str(value).strip(), index)
                        if name == "loyalty_account_id":
                            self.account_of.setdefault(index, str(value))

    def _index(self, person_id: Any) -> int | None:
        if person_id is None:
            return None
        position = int(np.searchsorted(self.person_ids, int(person_id)))
        if position < len(self.person_ids) and self.person_ids[position] == int(person_id):
            return position
        return None

    def email(self, value: Any) -> int | None:
        key = _email_key(value)
        return None if key is None else self.by_email.get(key)

    def account(self, value: Any) -> int | None:
        return self.by_account.get(value.strip()) if isinstance(value, str) else None


@dataclass
class ClosedLoop:
    """Contacts, credits and codes of the journals, mapped to persons; redemption state."""

    effects: Effects
    contacts: list[Contact]
    credits: dict[int, list[Credit]]
    codes: dict[int, list[Code]]
    person_ids: np.ndarray
    redeemed_credits: set[str] = field(default_factory=set)
    used_codes: set[tuple[int, str]] = field(default_factory=set)
    skipped: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    undelivered: int = 0
    # (campaign, person) -> log P(no purchase) over the effect days seen, without / with effect.
    no_purchase: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    # -- the purchase uplift -------------------------------------------------------------
    def uplift(self, day: date, n_persons: int) -> np.ndarray:
        """Per person (aligned with person_id), the purchase multiplier on `day` (1 = none)."""
        multiplier = np.ones(n_persons)
        if not self.contacts:
            return multiplier
        person = np.array([contact.person for contact in self.contacts], dtype=np.int64)
        at = np.array([contact.at_us for contact in self.contacts], dtype=np.int64)
        factor = np.array([1.0 + self.effects.uplift(c.campaign_id) for c in self.contacts])
        first = at - at % DAY  # midnight UTC of the contact's day
        start = day_start_us(day)
        active = (first <= start) & (start < first + self.effects.effect_days * DAY)
        active &= person < n_persons
        best = np.full(n_persons, -np.inf)  # a negative effect must not be masked by 1
        np.maximum.at(best, person[active], factor[active])
        return np.where(np.isfinite(best), best, multiplier)

    def observe(
        self, day: date, p_web: np.ndarray, p_store: np.ndarray, multiplier: np.ndarray | None
    ) -> None:
        """Accumulate, per campaign and contacted person, the chance of not buying on `day`.

        With the day's base purchase probabilities (before any uplift) and the multiplier
        applied, this gives the expected conversion rate of a campaign's contacted persons
        over the simulated days of their effect window, with and without the effect: the
        truth to compare a measured lift with (a relative uplift of the daily probability is
        a smaller relative lift of the chance to buy at least once).
        """
        start = day_start_us(day)
        window = self.effects.effect_days * DAY
        n = len(p_web)
        for contact in self.contacts:
            first = contact.at_us - contact.at_us % DAY
            if contact.person >= n or not first <= start < first + window:
                continue
            person = contact.person
            factor = 1.0 if multiplier is None else float(multiplier[person])
            base_web = CHECKOUT_CONVERTS * float(p_web[person])
            base_store = STORE_IDENTIFIED * float(p_store[person])
            without = math.log1p(-min(base_web, 1 - 1e-9)) + math.log1p(-min(base_store, 1 - 1e-9))
            treated_web = min(base_web * factor, 1 - 1e-9)
            treated_store = min(base_store * factor, 1 - 1e-9)
            with_effect = math.log1p(-treated_web) + math.log1p(-treated_store)
            key = (contact.campaign_id or "default", person)
            if key in self.no_purchase and self.no_purchase[key][2] == start:
                continue  # one person contacted twice by a campaign: count the day once
            sums = self.no_purchase.setdefault(key, [0.0, 0.0, -1.0])
            sums[0] += without
            sums[1] += with_effect
            sums[2] = start

    def expected_conversion(self) -> dict[str, dict[str, float]]:
        """Per campaign: contacted persons and their expected conversion without / with effect."""
        by_campaign: dict[str, list[tuple[float, float]]] = {}
        for (campaign, _), (without, with_effect, _) in self.no_purchase.items():
            pair = (1 - math.exp(without), 1 - math.exp(with_effect))
            by_campaign.setdefault(campaign, []).append(pair)
        result = {}
        for campaign, pairs in sorted(by_campaign.items()):
            rate_without = sum(p[0] for p in pairs) / len(pairs)
            rate_with = sum(p[1] for p in pairs) / len(pairs)
            result[campaign] = {
                "persons": len(pairs),
                "rate_without": round(rate_without, 4),
                "rate_with": round(rate_with, 4),
                "relative_lift": round(rate_with / rate_without - 1, 4) if rate_without else 0.0,
            }
        return result

    # -- redemptions -----------------------------------------------------------------------
    def store_redemptions(
        self, person: np.ndarray, created: np.ndarray, total: np.ndarray
    ) -> list[tuple[int, Credit, float]]:
        """(sale index, credit, amount) for sales by holders of active credits, time order."""
        order = np.argsort(created, kind="stable")
        holding = np.isin(person[order], np.fromiter(self.credits, np.int64, len(self.credits)))
        redeemed = []
        for sale in order[holding]:
            remaining = round(float(total[sale]), 2)
            for credit in self.credits[int(person[sale])]:
                if credit.credit_id in self.redeemed_credits or remaining <= 0:
                    continue
                if not credit.from_us <= int(created[sale]) < credit.until_us:
                    continue
                amount = round(min(credit.amount, remaining), 2)
                self.redeemed_credits.add(credit.credit_id)
                remaining = round(remaining - amount, 2)
                redeemed.append((int(sale), credit, amount))
        self.counts["credits_redeemed"] = self.counts.get("credits_redeemed", 0) + len(redeemed)
        return redeemed

    def online_redemptions(
        self,
        person: np.ndarray,
        created: np.ndarray,
        subtotal: np.ndarray,
        shipping: np.ndarray,
        rng: np.random.Generator,
    ) -> list[tuple[int, Code, float, str]]:
        """(order index, code, amount, Shopify type) for orders where a code was entered."""
        used = []
        ordered = np.argsort(created, kind="stable")
        holding = np.isin(person[ordered], np.fromiter(self.codes, np.int64, len(self.codes)))
        for order in ordered[holding]:
            person_id = int(self.person_ids[int(person[order])])
            for code in self.codes[int(person[order])]:
                if (person_id, code.offer_id) in self.used_codes:
                    continue
                if not code.from_us <= int(created[order]) < code.until_us:
                    continue
                if rng.random() >= self.effects.code_redemption_rate:
                    continue
                amount, kind = _code_amount(code, float(subtotal[order]), float(shipping[order]))
                self.used_codes.add((person_id, code.offer_id))
                used.append((int(order), code, amount, kind))
                break
        self.counts["codes_redeemed"] = self.counts.get("codes_redeemed", 0) + len(used)
        return used

    # -- state -------------------------------------------------------------------------------
    def save(self, state_dir: Path) -> None:
        state = {
            "redeemed_credits": sorted(self.redeemed_credits),
            "used_codes": sorted([person, offer] for person, offer in self.used_codes),
        }
        (state_dir / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")

    def summary(self) -> dict[str, Any]:
        persons = {contact.person for contact in self.contacts}
        return {
            "effects": {"default": self.effects.default, **self.effects.by_campaign},
            "effect_days": self.effects.effect_days,
            "contacts": len(self.contacts),
            "contacted_persons": len(persons),
            "credits": sum(len(credits) for credits in self.credits.values()),
            "codes": sum(len(codes) for codes in self.codes.values()),
            "credits_redeemed": self.counts.get("credits_redeemed", 0),
            "codes_redeemed": self.counts.get("codes_redeemed", 0),
            "skipped": dict(sorted(self.skipped.items())),
            "undelivered_emails": self.undelivered,
            "expected_conversion": self.expected_conversion(),
        }


def _code_amount(code: Code, subtotal: float, shipping: float) -> tuple[float, str]:
    """The money a code takes off an order and its Shopify ``type``."""
    if code.kind == "free_shipping":
        return round(shipping, 2), "shipping"
    if code.kind in ("discount_code", "discount_percent"):
        return round(subtotal * code.value / 100, 2), "percentage"
    return round(min(code.value, subtotal), 2), "fixed_amount"


class _Reader:
    """Turns journal records into contacts, credits and codes (one pass per journal)."""

    def __init__(self, index: PersonIndex, offers: dict[str, OfferTerms]) -> None:
        self.index = index
        self.offers = offers
        self.offer_campaign = {offer_id: terms.campaign_id for offer_id, terms in offers.items()}
        self.customer_person: dict[str, int] = {}
        self.contacts: list[Contact] = []
        self.credits: dict[int, list[Credit]] = {}
        self.codes: dict[int, list[Code]] = {}
        self.skipped: dict[str, int] = {}
        self.undelivered = 0

    def skip(self, what: str, why: str, record: Any) -> None:
        self.skipped[what] = self.skipped.get(what, 0) + 1
        log.warning("closed loop: %s skipped (%s): %s", what, why, str(record)[:200])

    def emails(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            recipients = message.get("recipients")
            accepted = message.get("accepted_at")
            events = message.get("events")
            events = events if isinstance(events, list) else []
            undelivered = {
                event.get("sg_message_id")
                for event in events
                if isinstance(event, dict) and event.get("event") in ("bounce", "dropped")
            }
            if not isinstance(recipients, list):
                self.skip("email", "no recipients", message.get("message_id"))
                continue
            for recipient in recipients:
                if not isinstance(recipient, dict):
                    self.skip("email", "recipient is not an object", recipient)
                    continue
                if recipient.get("sg_message_id") in undelivered:
                    self.undelivered += 1  # bounced: the person never saw it
                    continue
                args = recipient.get("custom_args") or {}
                args = args if isinstance(args, dict) else {}
                at = _timestamp_us(recipient.get("send_at")) or _timestamp_us(accepted)
                person = self.index.email(recipient.get("email"))
                if person is None or at is None:
                    why = "unknown email" if person is None else "no accepted_at/send_at"
                    self.skip("email", why, recipient.get("email"))
                    continue
                campaign = args.get("campaign_id")
                campaign = campaign if isinstance(campaign, str) and campaign else None
                offer_id = args.get("offer_id")
                if isinstance(offer_id, str) and offer_id and campaign:
                    self.offer_campaign.setdefault(offer_id, campaign)
                if isinstance(args.get("customer_id"), str):
                    self.customer_person.setdefault(args["customer_id"], person)
                self.contacts.append(Contact(person, campaign, at, "email"))
                self._code(person, at, args)

    def _code(self, person: int, at: int, args: dict[str, Any]) -> None:
        """The offer code an email carried, when it can be used online."""
        offer_id = args.get("offer_id") if isinstance(args.get("offer_id"), str) else None
        terms = self.offers.get(offer_id) if offer_id else None
        code = args.get("offer_code") or (terms.code if terms else None)
        if not isinstance(code, str) or not code:
            return
        valid_in = args.get("offer_valid_in") or (terms.valid_in if terms else None)
        if valid_in not in ONLINE_VALID_IN:
            return
        kind = args.get("offer_kind") or (terms.kind if terms else None) or "discount_code"
        try:
            value = float(args.get("offer_value") or (terms.value if terms else None) or 0)
        except ValueError:
            value = 0.0
        until = _until_us(args.get("offer_valid_until"))
        if until is None:
            days = terms.validity_days if terms and terms.validity_days else DEFAULT_EFFECT_DAYS
            until = day_start_us(
                datetime.fromtimestamp(at / SECOND, UTC).date() + timedelta(days=days + 1)
            )
        entry = Code(person, code, str(kind), value, offer_id or code, at, until)
        self.codes.setdefault(person, []).append(entry)

    def loyalty_credits(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            member = record.get("member_id")
            person = self.index.account(member)
            created = _timestamp_us(record.get("created_at"))
            until = _until_us(record.get("expires_at"))
            credit_id, offer_id = record.get("credit_id"), record.get("offer_id")
            try:
                amount = float(record.get("amount_eur"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                amount = math.nan
            if person is None:
                self.skip("loyalty_credit", "unknown loyalty account", member)
                continue
            if created is None or until is None or not isinstance(credit_id, str):
                self.skip("loyalty_credit", "no credit_id/created_at/expires_at", credit_id)
                continue
            if not math.isfinite(amount) or amount <= 0:
                self.skip("loyalty_credit", "amount_eur is not a positive number", credit_id)
                continue
            offer = offer_id if isinstance(offer_id, str) else ""
            campaign = self.offer_campaign.get(offer)
            self.contacts.append(Contact(person, campaign, created, "loyalty_credit"))
            if record.get("valid_in") in STORE_VALID_IN and record.get("status", "active") in (
                "active",
            ):
                credit = Credit(person, credit_id, offer, str(member), amount, created, until)
                self.credits.setdefault(person, []).append(credit)

    def store_offers(self, records: list[dict[str, Any]]) -> None:
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for record in records:  # every version is journaled: the last one wins
            latest[(str(record.get("store_id")), str(record.get("offer_key")))] = record
        for record in latest.values():
            if record.get("status") == "withdrawn":
                continue
            person = self._offer_person(record)
            at = _timestamp_us(record.get("valid_from")) or _timestamp_us(record.get("created_at"))
            if person is None or at is None:
                why = "customer not mappable to a person" if person is None else "no time"
                self.skip("store_offer", why, record.get("customer_id"))
                continue
            offer = record.get("offer_id")
            campaign = self.offer_campaign.get(offer) if isinstance(offer, str) else None
            self.contacts.append(Contact(person, campaign, at, "store_offer"))

    def _offer_person(self, record: dict[str, Any]) -> int | None:
        conditions = record.get("conditions")
        if isinstance(conditions, dict):
            for name in ("loyalty_account_id", "pos_customer_id"):
                person = self.index.account(conditions.get(name))
                if person is not None:
                    return person
            person = self.index.email(conditions.get("email"))
            if person is not None:
                return person
        customer = record.get("customer_id")
        return self.customer_person.get(str(customer)) if customer is not None else None


def has_inputs(sandbox_dir: Path | None, world_dir: Path) -> bool:
    """Whether there is anything to close the loop with (effects.json or a journal)."""
    if sandbox_dir is None:
        return False
    journals = (Path(sandbox_dir) / name for name in (MESSAGES, CREDITS, OFFERS))
    return (Path(world_dir) / EFFECTS_FILE).exists() or any(path.exists() for path in journals)


def build(
    sandbox_dir: Path | None,
    world_dir: Path,
    person_ids: np.ndarray,
    customers: list[pa.Table],
    campaigns_dir: Path | None = None,
) -> ClosedLoop | None:
    """The closed loop of a world, or None when there is no ``effects.json`` and no journal.

    `customers` are tables with ``person_id`` and ``email`` / ``loyalty_account_id`` /
    ``pos_customer_id`` (the latest shop and POS customers, the persons table). Without
    ``effects.json`` contacts have no effect (every multiplier 1) but credits and codes are
    still redeemed.
    """
    effects = load_effects(world_dir)
    if sandbox_dir is None:
        return None
    sandbox_dir = Path(sandbox_dir)
    messages = read_jsonl(sandbox_dir / MESSAGES)
    credits = read_jsonl(sandbox_dir / CREDITS)
    offers = read_jsonl(sandbox_dir / OFFERS)
    if effects is None and not (messages or credits or offers):
        return None
    reader = _Reader(PersonIndex(person_ids, *customers), campaign_offers(campaigns_dir))
    reader.emails(messages)
    reader.loyalty_credits(credits)
    reader.store_offers(offers)
    for person_credits in reader.credits.values():
        person_credits.sort(key=lambda credit: (credit.from_us, credit.credit_id))
    loop = ClosedLoop(
        effects=effects or Effects(),
        contacts=reader.contacts,
        credits=reader.credits,
        codes=reader.codes,
        person_ids=person_ids,
        skipped=reader.skipped,
        undelivered=reader.undelivered,
    )
    state = world_dir / "_state" / STATE_FILE
    if state.exists():
        saved = json.loads(state.read_text())
        loop.redeemed_credits = set(saved.get("redeemed_credits", []))
        loop.used_codes = {(int(p), str(o)) for p, o in saved.get("used_codes", [])}
    return loop
