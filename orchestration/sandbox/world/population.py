"""The static world: stores, products, persons and their identities on each channel.

Built once per world by `build`, vectorised over all persons. It returns the hidden `Model`
and the first chunks of the tables that describe who and what exists (stores, products,
persons, shop/POS customers, social profiles, marketplace listings, initial stock). After the
generated window, `arrive` adds the persons who become known on each advanced day.

Shape of the population (shares are of persons):
- ~65% were already customers before the simulated window (created up to two years earlier,
  most buying from the first day); ~35% appear during the window (acquisition), most of
  them make a first purchase some days later, ~30% have not bought by the end.
- channels: web only 30%, store only 30%, web+store 20%, web+social 5%, store+social 5%,
  all three 10% (so ~40% multi-channel). Customers on web and store buy more often.
- homes scatter around a home store (median ~7 km), so stores near home exist.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.sandbox.world import reference as ref
from orchestration.sandbox.world.clock import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    ZONES,
    day_start_us,
    season_factor,
)
from orchestration.sandbox.world.messy import (
    digits,
    e164,
    join,
    messy_email,
    messy_handle,
    messy_phone,
    pick,
)
from orchestration.sandbox.world.model import (
    NEVER,
    Inventory,
    Model,
    Persons,
    Products,
    Stores,
    pos_customer_ids,
    social_user_ids,
)
from orchestration.sandbox.world.sink import chunk, col

N_PRODUCTS = 300
BRAND = "Omni"
STORE_SUFFIXES = ("Centro", "Norte", "Sur", "Este", "Oeste", "Plaza", "Parque", "Puerto")
# Opening-hours templates: opens, closes, closed weekday (6 = Sunday, -1 = never), share.
HOURS = (
    ("10:00", "22:00", -1, 0.4),
    ("09:30", "21:00", 6, 0.35),
    ("10:00", "21:00", 6, 0.15),
    ("09:00", "20:30", -1, 0.1),
)
# Channel mixes (web, store, social) and their share of persons.
CHANNEL_MIXES = (
    ((1, 0, 0), 0.30),
    ((0, 1, 0), 0.30),
    ((1, 1, 0), 0.20),
    ((1, 0, 1), 0.05),
    ((0, 1, 1), 0.05),
    ((1, 1, 1), 0.10),
)
EXISTING_SHARE = 0.65
FOLLOWER_SHARE = 0.4  # social followers who are not customers, per customer on social
MEAN_DAYS_BETWEEN_PURCHASES = 26.0
MEAN_ACTIVE_DAYS = 240.0
WEB_COMPLETION = 0.68  # share of started checkouts that complete (intent rates are inflated)


def _ascii(words: tuple[str, ...]) -> tuple[str, ...]:
    table = str.maketrans("áéíóúüñçàèòÁÉÍÓÚÑ' ", "aeiouuncaeoAEIOUN__")
    return tuple(word.translate(table).lower().replace("_", "") for word in words)


def store_count(customers: int) -> int:
    """~20 stores at 5,000 customers, ~300 at 1M (grows like the square root)."""
    return int(max(3, round(20 * (customers / 5_000) ** 0.51)))


def _allocate_stores(n: int) -> np.ndarray:
    """City index of each store: Sainte-Laguë apportionment on population^0.7."""
    weight = np.array([city.population_k for city in ref.CITIES], dtype=float) ** 0.7
    seats = np.zeros(len(ref.CITIES), dtype=int)
    for _ in range(n):
        seats[np.argmax(weight / (2 * seats + 1))] += 1
    return np.repeat(np.arange(len(ref.CITIES)), seats)


def _stores(rng: np.random.Generator, n: int, start_us: int) -> tuple[Stores, pa.Table]:
    city = _allocate_stores(n)
    lat0 = np.array([c.latitude for c in ref.CITIES])[city]
    lon0 = np.array([c.longitude for c in ref.CITIES])[city]
    rank = np.zeros(n, dtype=int)  # rank of the store within its city
    for k in range(1, n):
        rank[k] = rank[k - 1] + 1 if city[k] == city[k - 1] else 0
    distance = np.where(rank == 0, rng.uniform(0.2, 1.2, n), rng.uniform(1.5, 9.0, n))
    angle = rng.uniform(0, 2 * np.pi, n)
    lat = lat0 + distance * np.cos(angle) / 111.0
    lon = lon0 + distance * np.sin(angle) / (111.0 * np.cos(np.radians(lat0)))
    zone = np.array([ZONES.index(c.timezone) for c in ref.CITIES], dtype=np.int8)[city]
    hours = rng.choice(len(HOURS), size=n, p=[h[3] for h in HOURS])
    opens = pick([h[0] for h in HOURS], hours)
    closes = pick([h[1] for h in HOURS], hours)
    closed = np.array([h[2] for h in HOURS], dtype=np.int8)[hours]

    def local_us(text: tuple[str, ...]) -> np.ndarray:
        values = [int(t[:2]) * HOUR + int(t[3:]) * MINUTE for t in text]
        return np.array(values, dtype=np.int64)[hours]

    open_us = local_us(tuple(h[0] for h in HOURS))
    close_us = local_us(tuple(h[1] for h in HOURS))
    population = np.array([c.population_k for c in ref.CITIES], dtype=float)
    per_city = np.bincount(city, minlength=len(ref.CITIES))
    weight = population[city] / per_city[city] * rng.uniform(0.7, 1.3, n)
    weight /= weight.sum()
    store_id = np.arange(1, n + 1, dtype=np.int64)
    names = pick([c.name for c in ref.CITIES], city)
    suffix = pick(STORE_SUFFIXES + tuple(f"{i}" for i in range(9, 60)), rank)
    multi = per_city[city] > 1
    name = pc.if_else(
        pa.array(multi), join(f"{BRAND} ", names, " ", suffix), join(f"{BRAND} ", names)
    )
    postal = join(
        pick([c.postal_prefix for c in ref.CITIES], city), "0", digits(rng.integers(1, 60, n), 2)
    )
    created = start_us - rng.integers(200, 4000, n) * DAY
    table = chunk(
        "stores",
        {
            "store_id": store_id,
            "pos_location_id": join("L", digits(store_id, 4)),
            "name": name,
            "city": names,
            "postal_code": postal,
            "latitude": np.round(lat, 6),
            "longitude": np.round(lon, 6),
            "timezone": pick(ZONES, zone),
            "opens_local": opens,
            "closes_local": closes,
            "closed_weekday": col(closed.astype(np.int32), pa.int32(), valid=closed >= 0),
            "created_at": created,
        },
        key=store_id,
        visible=created,
    )
    stores = Stores(store_id, city, lat, lon, zone, open_us, close_us, closed, weight)
    return stores, table


def _psych_price(value: np.ndarray) -> np.ndarray:
    """Retail prices end in .95 (at least 2.95)."""
    return np.maximum(np.floor(value), 2.0) + 0.95


def _products(rng: np.random.Generator, start_us: int) -> tuple[Products, pa.Table]:
    categories = list(ref.CATEGORIES)
    n = N_PRODUCTS
    category = np.sort(np.arange(n) % len(categories))
    product_id = np.arange(1, n + 1, dtype=np.int64)
    median = np.array([ref.CATEGORIES[c][1] for c in categories])[category]
    web_price = _psych_price(median * rng.lognormal(0.0, 0.45, n))
    differs = rng.random(n) < 0.03
    shift = rng.choice([-0.1, -0.05, 0.05, 0.1], size=n)
    store_price = np.where(differs, _psych_price(web_price * (1 + shift)), web_price)
    cost = np.round(web_price * rng.uniform(0.35, 0.6, n), 2)
    nouns = [noun for c in categories for noun in ref.CATEGORIES[c][0]]
    noun_offset = np.cumsum([0] + [len(ref.CATEGORIES[c][0]) for c in categories])[:-1]
    within = np.arange(n) - np.searchsorted(category, category, side="left")
    noun = (
        noun_offset[category]
        + within % np.array([len(ref.CATEGORIES[c][0]) for c in categories])[category]
    )
    colour = rng.integers(0, len(ref.COLOURS), n)
    title = join(pick(nouns, noun), " ", pick(ref.COLOURS, colour))
    code = pick([_ascii((c,))[0][:3].upper() for c in categories], category)
    created = start_us - rng.integers(30, 700, n) * DAY
    updated = np.minimum(created + rng.integers(0, 40, n) * DAY, start_us - DAY)
    table = chunk(
        "products",
        {
            "product_id": product_id,
            "sku": join("SKU-", code, "-", digits(product_id, 5)),
            "pos_catalog_id": join("SQV", digits((product_id * 7919) % 100_000_000, 8)),
            "title": title,
            "category": pick(categories, category),
            "web_price": web_price,
            "store_price": store_price,
            "cost": cost,
            "created_at": created,
            "updated_at": updated,
        },
        key=product_id,
        visible=updated,
    )
    popularity = rng.lognormal(0.0, 1.0, n)
    return Products(product_id, web_price, store_price, category.astype(np.int8), popularity), table


def _listings(rng: np.random.Generator, products: Products, start_us: int) -> pa.Table:
    n = len(products.product_id)
    listed = rng.random((n, len(ref.MARKETPLACES))) < np.array([0.35, 0.15, 0.1])
    product_index, market = np.nonzero(listed)
    base = products.web_price[product_index]
    differs = rng.random(len(base)) < 0.3
    price = np.where(differs, _psych_price(base * rng.uniform(0.85, 1.1, len(base))), base)
    product_id = products.product_id[product_index]
    updated = start_us - rng.integers(1, 30, len(base)) * DAY
    codes = pick(ref.MARKETPLACES, market)
    return chunk(
        "marketplace_listings",
        {
            "listing_id": join(codes, "-", digits(product_id, 5)),
            "marketplace": codes,
            "product_id": product_id,
            "price": price,
            "updated_at": updated,
        },
        key=product_id * 8 + market,
        visible=updated,
    )


def _inventory(rng: np.random.Generator, model: Model, start_us: int) -> tuple[Inventory, pa.Table]:
    n_stores, n_products = len(model.stores.store_id), len(model.products.product_id)
    store = np.repeat(np.arange(n_stores, dtype=np.int32), n_products)
    product = np.tile(np.arange(n_products, dtype=np.int32), n_stores)
    quantity = rng.negative_binomial(3, 3 / (3 + 15), len(store)).astype(np.int32)
    quantity[rng.random(len(store)) < 0.06] = 0
    inventory = Inventory(store, product, quantity)
    valid_from = np.full(len(store), start_us - DAY + 6 * HOUR, dtype=np.int64)
    key = model.next_ids("inventory_row", len(store))
    table = chunk(
        "inventory_levels",
        {
            "store_id": model.stores.store_id[store],
            "product_id": model.products.product_id[product],
            "quantity": quantity,
            "valid_from": valid_from,
        },
        key=key,
        visible=valid_from,
    )
    return inventory, table


@dataclass(frozen=True)
class IdStart:
    """Ids already used: new persons continue after them (counters in `Model.counters`)."""

    person: int = 0
    shop_customer: int = 0
    pos_customer: int = 0
    social_profile: int = 0


def _persons(
    rng: np.random.Generator,
    created_day: np.ndarray,
    existing: np.ndarray,
    stores: Stores,
    start_us: int,
    ids: IdStart,
) -> tuple[Persons, dict[str, np.ndarray]]:
    """Hidden per-person parameters plus the raw draws the identity tables are built from.

    `existing` persons were customers before the window (most buying from day 0); the others
    are new: `created_day` is when they became known.
    """
    n = len(created_day)
    mix = rng.choice(len(CHANNEL_MIXES), size=n, p=[m[1] for m in CHANNEL_MIXES])
    channels = np.array([m[0] for m in CHANNEL_MIXES], dtype=bool)[mix]
    has_web, has_store, has_social = channels[:, 0], channels[:, 1], channels[:, 2]

    # Lifecycle: when the first purchase happens (if ever) and when frequency starts dropping.
    never = rng.random(n)
    delay = np.floor(rng.exponential(10.0, n)) + 1
    first = np.where(
        existing,
        np.where(never < 0.9, -NEVER, rng.uniform(0, 150, n)),
        np.where(never < 0.3, NEVER, np.floor(created_day) + delay),
    )
    store_only_new = ~existing & has_store & ~has_web & (first < NEVER)
    first = np.where(store_only_new, np.floor(created_day), first)  # card given at the till
    # ...during opening hours of that first visit (about 09:00-18:00 UTC).
    till_time = np.floor(created_day) + rng.uniform(9 / 24, 18 / 24, n)
    created_day = np.where(store_only_new, till_time, created_day)
    churn = np.maximum(first, 0.0) + rng.exponential(MEAN_ACTIVE_DAYS, n)

    base = rng.gamma(2.0, 1.0 / (2.0 * MEAN_DAYS_BETWEEN_PURCHASES), n)
    both = has_web & has_store
    multiplier = np.where(both, 1.35, 1.0) * np.where(has_social, 1.1, 1.0)
    share_web = np.where(both, rng.beta(2.0, 2.0, n), has_web.astype(float))
    rate_web = base * multiplier * share_web / WEB_COMPLETION
    rate_store = base * multiplier * (1.0 - share_web)

    home_store = rng.choice(len(stores.store_id), size=n, p=stores.weight).astype(np.int32)
    zone = stores.zone[home_store].copy()
    zone[(zone == 0) & (rng.random(n) < 0.012)] = ZONES.index(ref.LISBON)

    shop_ids = np.zeros(n, dtype=np.int64)
    shop_ids[has_web] = 7_100_000_000 + ids.shop_customer + rng.permutation(int(has_web.sum())) + 1
    pos_number = np.zeros(n, dtype=np.int64)
    pos_number[has_store] = ids.pos_customer + rng.permutation(int(has_store.sum())) + 1

    consent_email = rng.random(n) < 0.7
    consent_sms = rng.random(n) < 0.35
    email_state = np.where(consent_email, 1, np.where(rng.random(n) < 0.15, 2, 0)).astype(np.int8)
    persons = Persons(
        person_id=ids.person + np.arange(1, n + 1, dtype=np.int64),
        shop_customer_id=shop_ids,
        pos_number=pos_number,
        social_number=np.zeros(n, dtype=np.int64),
        has_web=has_web,
        has_store=has_store,
        has_social=has_social,
        zone=zone,
        home_store=home_store,
        created_day=created_day,
        first_purchase_day=first,
        churn_day=churn,
        rate_web=rate_web,
        rate_store=rate_store,
        favourite_category=rng.integers(0, len(ref.CATEGORIES), n).astype(np.int8),
        email_state=email_state,
        sms_state=consent_sms.astype(np.int8),
        pos_unsubscribed=~consent_email,
    )
    created_us = start_us + np.round(created_day * DAY / SECOND).astype(np.int64) * SECOND
    return persons, {
        "created_us": created_us,
        "consent_email": consent_email,
        "consent_sms": consent_sms,
    }


def _identities(
    rng: np.random.Generator,
    persons: Persons,
    stores: Stores,
    draws: dict[str, np.ndarray],
    start_us: int,
    ids: IdStart,
    follower_share: float,
) -> tuple[dict[str, pa.Table], pa.Array, np.ndarray]:
    """Identity tables of `persons` (assigning their social numbers), their shop emails
    aligned with them, and the social numbers of new followers who are not customers.

    Emails carry a unique number and phones come from a bijection of the person id, so both
    stay unique when persons arrive later (`ids`).
    """
    n = len(persons.person_id)
    created_us = draws["created_us"]
    first = rng.integers(0, len(ref.FIRST_NAMES), n)
    surname_weight = 1.0 / np.arange(1, len(ref.LAST_NAMES) + 1) ** 0.6
    surname_weight /= surname_weight.sum()
    last1 = rng.choice(len(ref.LAST_NAMES), size=n, p=surname_weight)
    last2 = rng.choice(len(ref.LAST_NAMES), size=n, p=surname_weight)
    first_name = pick(ref.FIRST_NAMES, first)
    surname1, surname2 = pick(ref.LAST_NAMES, last1), pick(ref.LAST_NAMES, last2)
    last_name = join(surname1, " ", surname2)
    first_ascii = pick(_ascii(ref.FIRST_NAMES), first)
    last1_ascii, last2_ascii = (
        pick(_ascii(ref.LAST_NAMES), last1),
        pick(_ascii(ref.LAST_NAMES), last2),
    )
    order = ids.person + rng.permutation(n)  # a unique number keeps every email unique
    code = digits(order + 1)
    separator = pick((".", "", "_"), rng.choice(3, size=n, p=(0.5, 0.3, 0.2)))
    domain = pick(ref.EMAIL_DOMAINS, rng.integers(0, len(ref.EMAIL_DOMAINS), n))
    email = join(first_ascii, separator, last1_ascii, code, "@", domain)
    other_email = join(
        first_ascii,
        last2_ascii,
        code,
        "@",
        pick(("outlook.es", "empresa.es"), rng.integers(0, 2, n)),
    )
    national = 600_000_000 + (order.astype(np.int64) * 7_654_321 + 12_345) % 100_000_000
    household = rng.random(n) < 0.02  # a few persons give the household's phone
    national[household] = national[rng.integers(0, n, int(household.sum()))]
    phone = e164(national)

    # Home: around the home store (median ~7 km, most within 2-25 km).
    home = persons.home_store
    city_of_store = stores.city
    store_lat, store_lon = stores.latitude[home], stores.longitude[home]
    distance = np.clip(rng.lognormal(np.log(7.0), 0.65, n), 0.3, 60.0)
    distance = np.where(persons.zone == 1, distance * 0.5, distance)
    angle = rng.uniform(0, 2 * np.pi, n)
    latitude = np.round(store_lat + distance * np.cos(angle) / 111.0, 5)
    longitude = np.round(
        store_lon + distance * np.sin(angle) / (111.0 * np.cos(np.radians(store_lat))), 5
    )
    city = pick([c.name for c in ref.CITIES], city_of_store[home])
    postal = join(
        pick([c.postal_prefix for c in ref.CITIES], city_of_store[home]),
        "0",
        digits(rng.integers(1, 80, n), 2),
    )
    timezone = pick(ZONES, persons.zone)
    window_start = rng.choice([8, 9, 10, 12, 14, 17, 18, 19], size=n)
    window_end = np.minimum(window_start + rng.choice([2, 3, 4, 6, 8], size=n), 22)

    # How channels link: shared email, shared phone, both, or nothing in common.
    link = rng.choice(4, size=n, p=(0.45, 0.35, 0.15, 0.05))  # email, phone, both, none
    both = persons.has_web & persons.has_store
    shop_has_phone = np.where(both, (link == 1) | (link == 2), rng.random(n) < 0.4)
    pos_email_kind = np.where(  # 0 none, 1 same email, 2 another email
        both,
        np.where((link == 0) | (link == 2), 1, np.where(rng.random(n) < 0.5, 2, 0)),
        np.where(rng.random(n) < 0.5, 1, 0),
    )

    tables: dict[str, pa.Table] = {}
    web = np.flatnonzero(persons.has_web)
    shop_email = messy_email(rng, email.take(pa.array(web)))
    one_surname = rng.random(len(web)) < 0.6
    states = ("not_subscribed", "subscribed", "unsubscribed")
    tables["shop_customers"] = chunk(
        "shop_customers",
        {
            "shop_customer_id": persons.shop_customer_id[web],
            "person_id": persons.person_id[web],
            "email": shop_email,
            "phone": col(messy_phone(rng, national[web]), pa.string(), valid=shop_has_phone[web]),
            "first_name": first_name.take(pa.array(web)),
            "last_name": pc.if_else(
                pa.array(one_surname), surname1.take(pa.array(web)), last_name.take(pa.array(web))
            ),
            "email_consent_state": pick(states, persons.email_state[web]),
            "sms_consent_state": pick(states, persons.sms_state[web]),
            "address1": join(
                pick(ref.STREETS, rng.integers(0, len(ref.STREETS), len(web))),
                " ",
                digits(rng.integers(1, 140, len(web))),
            ),
            "city": city.take(pa.array(web)),
            "zip": postal.take(pa.array(web)),
            "latitude": latitude[web],
            "longitude": longitude[web],
            "timezone": timezone.take(pa.array(web)),
            "contact_window_start_hour": window_start[web].astype(np.int32),
            "contact_window_end_hour": window_end[web].astype(np.int32),
            "created_at": created_us[web],
            "updated_at": created_us[web],
        },
        key=persons.shop_customer_id[web],
        visible=created_us[web],
    )
    row_of_person = np.cumsum(persons.has_web) - 1
    aligned_shop_email = shop_email.take(pa.array(row_of_person, mask=~persons.has_web))

    store = np.flatnonzero(persons.has_store)
    till_caps = rng.random(len(store)) < 0.2
    kind = pos_email_kind[store]
    pos_email_source = pc.if_else(
        pa.array(kind == 2), other_email.take(pa.array(store)), email.take(pa.array(store))
    )
    pos_ids = pos_customer_ids(persons.pos_number[store])
    given = first_name.take(pa.array(store))
    family = last_name.take(pa.array(store))
    tables["pos_customers"] = chunk(
        "pos_customers",
        {
            "pos_customer_id": pos_ids,
            "person_id": persons.person_id[store],
            "given_name": pc.if_else(pa.array(till_caps), pc.utf8_upper(given), given),
            "family_name": pc.if_else(pa.array(till_caps), pc.utf8_upper(family), family),
            "email": col(messy_email(rng, pos_email_source), pa.string(), valid=kind > 0),
            "phone": messy_phone(rng, national[store]),
            "loyalty_account_id": join("LA", digits(persons.pos_number[store], 8)),
            "email_unsubscribed": persons.pos_unsubscribed[store],
            "created_at": created_us[store],
            "updated_at": created_us[store],
        },
        key=persons.pos_number[store],
        visible=created_us[store],
    )

    # Social: customers' profiles plus followers who are not (yet) customers.
    social = np.flatnonzero(persons.has_social)
    n_followers = int(round(follower_share * len(social)))
    numbers = ids.social_profile + rng.permutation(len(social) + n_followers).astype(np.int64) + 1
    persons.social_number[social] = numbers[: len(social)]
    followers = numbers[len(social) :]
    f_first = rng.integers(0, len(ref.FIRST_NAMES), n_followers)
    f_last = rng.integers(0, len(ref.LAST_NAMES), n_followers)
    handle = join(
        pc.take(first_ascii, pa.array(social)),
        pick(("_", ".", ""), rng.integers(0, 3, len(social))),
        pc.take(last1_ascii, pa.array(social)),
        digits(rng.integers(0, 100, len(social))),
    )
    follower_handle = join(
        pick(_ascii(ref.FIRST_NAMES), f_first),
        pick(("_", ".", ""), rng.integers(0, 3, n_followers)),
        pick(_ascii(ref.LAST_NAMES), f_last),
        digits(rng.integers(0, 1000, n_followers)),
    )
    shares_email = rng.random(len(social)) < 0.4
    shares_phone = rng.random(len(social)) < 0.15
    profile_updated = (
        np.maximum(created_us[social], start_us - 400 * DAY)
        + rng.integers(0, 30, len(social)) * DAY
    )
    profile_updated = np.minimum(profile_updated, np.maximum(created_us[social], start_us))
    if ids.person:  # followers met after the window: they appear on the arrival day
        follower_updated = created_us.min() + rng.integers(0, HOUR, n_followers)
    else:
        follower_updated = start_us - rng.integers(1, 400, n_followers) * DAY
    social_numbers = np.concatenate([numbers[: len(social)], followers])
    tables["social_profiles"] = chunk(
        "social_profiles",
        {
            "social_user_id": social_user_ids(social_numbers),
            "person_id": col(
                np.concatenate([persons.person_id[social], np.zeros(n_followers, np.int64)]),
                pa.int64(),
                valid=np.arange(len(social_numbers)) < len(social),
            ),
            "username": messy_handle(rng, pa.concat_arrays([handle, follower_handle])),
            "name": pa.concat_arrays(
                [
                    join(first_name.take(pa.array(social)), " ", surname1.take(pa.array(social))),
                    join(pick(ref.FIRST_NAMES, f_first), " ", pick(ref.LAST_NAMES, f_last)),
                ]
            ),
            "email": pa.concat_arrays(
                [
                    col(messy_email(rng, email.take(pa.array(social))), pa.string(), shares_email),
                    pa.nulls(n_followers, pa.string()),
                ]
            ),
            "phone": pa.concat_arrays(
                [
                    col(messy_phone(rng, national[social]), pa.string(), shares_phone),
                    pa.nulls(n_followers, pa.string()),
                ]
            ),
            "updated_at": np.concatenate([profile_updated, follower_updated]),
        },
        key=social_numbers,
        visible=np.concatenate([profile_updated, follower_updated]),
    )

    tables["persons"] = chunk(
        "persons",
        {
            "person_id": persons.person_id,
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "phone": phone,
            "home_latitude": latitude,
            "home_longitude": longitude,
            "city": city,
            "postal_code": postal,
            "timezone": timezone,
            "contact_window_start_hour": window_start.astype(np.int32),
            "contact_window_end_hour": window_end.astype(np.int32),
            "consent_email": draws["consent_email"],
            "consent_sms": draws["consent_sms"],
            "has_web": persons.has_web,
            "has_store": persons.has_store,
            "has_social": persons.has_social,
            "shop_customer_id": col(persons.shop_customer_id, pa.int64(), persons.has_web),
            "pos_customer_id": col(
                pos_customer_ids(persons.pos_number), pa.string(), persons.has_store
            ),
            "social_user_id": col(
                social_user_ids(persons.social_number), pa.string(), persons.has_social
            ),
            "created_at": created_us,
        },
        key=persons.person_id,
        visible=created_us,
    )
    return tables, aligned_shop_email, followers


def build(
    seed: int, customers: int, days: int, start_date: date
) -> tuple[Model, list[tuple[str, pa.Table]]]:
    """The model and the initial chunks (table name, rows) of a new world."""
    start_us = day_start_us(start_date)

    def stream(k: int) -> np.random.Generator:
        return np.random.default_rng([seed, 1, k])

    stores, store_table = _stores(stream(1), store_count(customers), start_us)
    products, product_table = _products(stream(2), start_us)
    rng = stream(3)
    existing = rng.random(customers) < EXISTING_SHARE
    created_day = np.where(
        existing, -rng.uniform(1, 720, customers), rng.uniform(0, days, customers)
    )
    persons, draws = _persons(rng, created_day, existing, stores, start_us, IdStart())
    identity_tables, shop_email, followers = _identities(
        stream(4), persons, stores, draws, start_us, IdStart(), FOLLOWER_SHARE
    )
    model = Model(
        seed=seed,
        start_date=start_date,
        stores=stores,
        products=products,
        persons=persons,
        followers=followers,
        inventory=Inventory(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32)),
        arrivals_per_day=float((~existing).sum()) / days,
        shop_email=shop_email,
    )
    model.counters.update(
        person=customers,
        shop_customer=int(persons.has_web.sum()),
        pos_customer=int(persons.has_store.sum()),
        social_profile=int(persons.has_social.sum()) + len(followers),
    )
    inventory, inventory_table = _inventory(stream(5), model, start_us)
    model.inventory = inventory
    chunks = [
        ("stores", store_table),
        ("products", product_table),
        ("marketplace_listings", _listings(stream(6), products, start_us)),
        ("inventory_levels", inventory_table),
        *identity_tables.items(),
    ]
    return model, chunks


def arrive(model: Model, day: int) -> list[tuple[str, pa.Table]]:
    """New persons who become known on `day` (after the generated window): `advance` calls
    this so acquisition goes on. Appends them to `model` and returns their identity chunks."""
    rng = np.random.default_rng([model.seed, 3, day])
    season = season_factor(model.start_date + timedelta(days=day))
    count = int(rng.poisson(model.arrivals_per_day * season))
    if count == 0:
        return []
    start_us = model.start_date_us
    ids = IdStart(
        person=model.counters["person"],
        shop_customer=model.counters["shop_customer"],
        pos_customer=model.counters["pos_customer"],
        social_profile=model.counters["social_profile"],
    )
    created_day = day + rng.uniform(0, 1, count)
    existing = np.zeros(count, dtype=bool)
    persons, draws = _persons(rng, created_day, existing, model.stores, start_us, ids)
    tables, shop_email, followers = _identities(
        rng, persons, model.stores, draws, start_us, ids, FOLLOWER_SHARE
    )
    model.persons = Persons(
        **{
            f.name: np.concatenate([getattr(model.persons, f.name), getattr(persons, f.name)])
            for f in fields(Persons)
        }
    )
    model.followers = np.concatenate([model.followers, followers])
    if model.shop_email is not None:
        model.shop_email = pa.concat_arrays([model.shop_email, shop_email])
    model.counters.update(
        person=ids.person + count,
        shop_customer=ids.shop_customer + int(persons.has_web.sum()),
        pos_customer=ids.pos_customer + int(persons.has_store.sum()),
        social_profile=ids.social_profile + int(persons.has_social.sum()) + len(followers),
    )
    return list(tables.items())
