"""Rules for ``raw_shop`` (a Shopify-style Admin REST API).

Enum sets are Shopify's documented values, so the rules hold against the real shop too.
Money arrives as strings (``"12.30"``): ``invalid_number`` catches text that is not a
number, the ranges catch negative amounts.
"""

from __future__ import annotations

from orchestration.quality.rules import (
    MAX_QUANTITY,
    MAX_UNIT_PRICE,
    SourceRules,
    TableRules,
    enum,
    money,
)

CONSENT_STATES = enum(
    "subscribed", "not_subscribed", "unsubscribed", "pending", "redacted", "invalid"
)
FINANCIAL_STATUSES = enum(
    "pending",
    "authorized",
    "partially_paid",
    "paid",
    "partially_refunded",
    "refunded",
    "voided",
)
FULFILLMENT_STATUSES = enum("fulfilled", "partial", "restocked", "unfulfilled")
FULFILLMENT_STATES = enum("pending", "open", "success", "cancelled", "error", "failure")
SHIPMENT_STATUSES = enum(
    "pending",
    "label_printed",
    "label_purchased",
    "attempted_delivery",
    "ready_for_pickup",
    "picked_up",
    "confirmed",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "failure",
)

RULES = SourceRules(
    source="shop",
    required_tables=("customers", "orders", "orders__line_items", "products"),
    tables=(
        TableRules(
            table="customers",
            key=("id",),
            required=("id", "updated_at"),
            not_null=("updated_at",),
            timestamps=("created_at", "updated_at", "email_marketing_consent__consent_updated_at"),
            ranges={"contact_window_start_hour": (0, 24), "contact_window_end_hour": (0, 24)},
            latitudes=("default_address__latitude",),
            longitudes=("default_address__longitude",),
            enums={
                "email_marketing_consent__state": CONSENT_STATES,
                "sms_marketing_consent__state": CONSENT_STATES,
            },
        ),
        TableRules(
            table="orders",
            key=("id",),
            required=("id", "updated_at", "total_price"),
            not_null=("updated_at",),
            timestamps=("created_at", "updated_at"),
            ranges={
                **money("subtotal_price", "total_price", "total_shipping_price"),
                "order_number": (1, 1e12),
            },
            enums={
                "financial_status": FINANCIAL_STATUSES,
                "fulfillment_status": FULFILLMENT_STATUSES,
            },
        ),
        TableRules(
            table="orders__line_items",
            key=("_dlt_parent_id", "id"),
            required=("quantity", "price"),
            ranges={
                "quantity": (0, MAX_QUANTITY),
                **money("price", high=MAX_UNIT_PRICE),
            },
        ),
        TableRules(
            table="orders__fulfillments",
            key=("_dlt_parent_id", "id"),
            timestamps=("delivered_at", "updated_at"),
            enums={"status": FULFILLMENT_STATES, "shipment_status": SHIPMENT_STATUSES},
        ),
        TableRules(
            table="orders__refunds",
            key=("_dlt_parent_id", "id"),
            timestamps=("created_at",),
        ),
        TableRules(
            table="orders__refunds__refund_line_items",
            ranges={"quantity": (0, MAX_QUANTITY), **money("subtotal")},
        ),
        TableRules(
            table="checkouts",
            key=("id",),
            required=("id", "updated_at"),
            not_null=("updated_at",),
            timestamps=("created_at", "updated_at", "completed_at"),
            ranges=money("subtotal_price", "total_price"),
        ),
        TableRules(
            table="checkouts__line_items",
            ranges={
                "quantity": (0, MAX_QUANTITY),
                **money("price", high=MAX_UNIT_PRICE),
            },
        ),
        TableRules(
            table="checkouts__shipping_lines",
            ranges=money("price", high=MAX_UNIT_PRICE),
        ),
        TableRules(
            table="products",
            key=("id",),
            required=("id", "updated_at"),
            not_null=("updated_at",),
            timestamps=("created_at", "updated_at"),
        ),
        TableRules(
            table="products__variants",
            key=("_dlt_parent_id", "id"),
            ranges=money("price", "cost", high=MAX_UNIT_PRICE),
        ),
        TableRules(
            table="marketplace_listings",
            key=("id",),
            required=("id", "updated_at"),
            not_null=("updated_at",),
            timestamps=("updated_at",),
            ranges=money("price", high=MAX_UNIT_PRICE),
        ),
    ),
)
