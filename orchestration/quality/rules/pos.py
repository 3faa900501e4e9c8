"""Rules for ``raw_pos`` (a Square-v2-style API).

Square money is ``{amount, currency}`` with integer cents (``total_money__amount``);
quantities are strings (``"2"``). Enum sets are Square's documented values.
"""

from __future__ import annotations

from orchestration.quality.rules import (
    MAX_CENTS,
    MAX_QUANTITY,
    MAX_STOCK,
    SourceRules,
    TableRules,
    enum,
    money,
)

ORDER_STATES = enum("OPEN", "COMPLETED", "CANCELED", "DRAFT")
LOCATION_STATUSES = enum("ACTIVE", "INACTIVE")
WEEKDAYS = enum("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
INVENTORY_STATES = enum(
    "IN_STOCK",
    "SOLD",
    "RETURNED_BY_CUSTOMER",
    "RESERVED_FOR_SALE",
    "SOLD_ONLINE",
    "ORDERED_FROM_VENDOR",
    "RECEIVED_FROM_VENDOR",
    "IN_TRANSIT_TO",
    "IN_TRANSIT",
    "NONE",
    "WASTE",
    "UNLINKED_RETURN",
    "COMPOSED",
    "DECOMPOSED",
    "SUPPORTED_BY_NEWER_VERSION",
)

RULES = SourceRules(
    source="pos",
    required_tables=("locations", "catalog_objects", "orders", "orders__line_items", "customers"),
    tables=(
        TableRules(
            table="locations",
            key=("id",),
            required=("id",),
            timestamps=("created_at",),
            latitudes=("coordinates__latitude",),
            longitudes=("coordinates__longitude",),
            enums={"status": LOCATION_STATUSES},
        ),
        TableRules(
            table="locations__business_hours__periods",
            enums={"day_of_week": WEEKDAYS},
        ),
        TableRules(
            table="catalog_objects",
            key=("id",),
            required=("id", "updated_at"),
            not_null=("updated_at",),
            timestamps=("updated_at",),
            ranges=money("item_variation_data__price_money__amount", high=MAX_CENTS),
        ),
        TableRules(
            table="orders",
            key=("id",),
            required=("id", "updated_at"),
            not_null=("updated_at", "location_id"),
            timestamps=("created_at", "updated_at", "closed_at"),
            ranges=money("total_money__amount", high=MAX_CENTS),
            enums={"state": ORDER_STATES},
        ),
        TableRules(
            table="orders__line_items",
            key=("_dlt_parent_id", "uid"),
            required=("quantity",),
            ranges={
                "quantity": (0, MAX_QUANTITY),
                **money("base_price_money__amount", high=MAX_CENTS),
            },
        ),
        TableRules(
            table="orders__returns__return_line_items",
            ranges={
                "quantity": (0, MAX_QUANTITY),
                **money("base_price_money__amount", high=MAX_CENTS),
            },
        ),
        TableRules(
            table="inventory_counts",
            key=("catalog_object_id", "location_id", "state"),
            required=("catalog_object_id", "location_id", "quantity"),
            timestamps=("calculated_at",),
            ranges={"quantity": (0, MAX_STOCK)},
            enums={"state": INVENTORY_STATES},
        ),
        TableRules(
            table="customers",
            key=("id",),
            required=("id", "updated_at"),
            not_null=("updated_at",),
            timestamps=("created_at", "updated_at"),
        ),
        TableRules(
            table="loyalty_accounts",
            key=("id",),
            required=("id", "updated_at"),
            not_null=("updated_at",),
            timestamps=("created_at", "updated_at"),
            ranges={"balance": (0, 1e9), "lifetime_points": (0, 1e9)},
        ),
    ),
)
