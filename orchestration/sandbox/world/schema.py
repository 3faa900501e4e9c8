"""Arrow schemas of the world tables: section 1 of ``docs/sandbox-api.md`` in code.

Every table the services read is listed here with its exact columns and types. Timestamps
are ``timestamp[us, tz=UTC]``, money is ``double`` rounded to cents, ids are ``int64`` or
strings as the contract says.

Besides its columns, every chunk the simulator produces carries two hidden columns that are
never written to a part: ``_key`` (an int64 that identifies the row's entity, used to sort a
part and to keep the latest version of a versioned entity) and ``_visible`` (microseconds
since the epoch at which the row comes into existence: ``updated_at`` or ``created_at``).
A row is written to the first part whose clock has reached ``_visible``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
KEY = "_key"
VISIBLE = "_visible"


@dataclass(frozen=True)
class TableSpec:
    """One world table: its schema and how versions of a row are handled."""

    name: str
    schema: pa.Schema
    # A versioned table may hold several rows for one `_key`; a part keeps the latest one.
    versioned: bool = False
    # Held tables are deduplicated over a whole part (their versions come from many days).
    held: bool = False


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in fields])


I64, I32, F64, STR, BOOL = pa.int64(), pa.int32(), pa.float64(), pa.string(), pa.bool_()

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "stores",
            _schema(
                ("store_id", I64),
                ("pos_location_id", STR),
                ("name", STR),
                ("city", STR),
                ("postal_code", STR),
                ("latitude", F64),
                ("longitude", F64),
                ("timezone", STR),
                ("opens_local", STR),
                ("closes_local", STR),
                ("closed_weekday", I32),
                ("created_at", TS),
            ),
        ),
        TableSpec(
            "products",
            _schema(
                ("product_id", I64),
                ("sku", STR),
                ("pos_catalog_id", STR),
                ("title", STR),
                ("category", STR),
                ("web_price", F64),
                ("store_price", F64),
                ("cost", F64),
                ("created_at", TS),
                ("updated_at", TS),
            ),
            versioned=True,
            held=True,
        ),
        TableSpec(
            "inventory_levels",
            _schema(
                ("store_id", I64),
                ("product_id", I64),
                ("quantity", I32),
                ("valid_from", TS),
            ),
        ),
        TableSpec(
            "persons",
            _schema(
                ("person_id", I64),
                ("first_name", STR),
                ("last_name", STR),
                ("email", STR),
                ("phone", STR),
                ("home_latitude", F64),
                ("home_longitude", F64),
                ("city", STR),
                ("postal_code", STR),
                ("timezone", STR),
                ("contact_window_start_hour", I32),
                ("contact_window_end_hour", I32),
                ("consent_email", BOOL),
                ("consent_sms", BOOL),
                ("has_web", BOOL),
                ("has_store", BOOL),
                ("has_social", BOOL),
                ("shop_customer_id", I64),
                ("pos_customer_id", STR),
                ("social_user_id", STR),
                ("created_at", TS),
            ),
        ),
        TableSpec(
            "shop_customers",
            _schema(
                ("shop_customer_id", I64),
                ("person_id", I64),
                ("email", STR),
                ("phone", STR),
                ("first_name", STR),
                ("last_name", STR),
                ("email_consent_state", STR),
                ("sms_consent_state", STR),
                ("address1", STR),
                ("city", STR),
                ("zip", STR),
                ("latitude", F64),
                ("longitude", F64),
                ("timezone", STR),
                ("contact_window_start_hour", I32),
                ("contact_window_end_hour", I32),
                ("created_at", TS),
                ("updated_at", TS),
            ),
            versioned=True,
            held=True,
        ),
        TableSpec(
            "pos_customers",
            _schema(
                ("pos_customer_id", STR),
                ("person_id", I64),
                ("given_name", STR),
                ("family_name", STR),
                ("email", STR),
                ("phone", STR),
                ("loyalty_account_id", STR),
                ("email_unsubscribed", BOOL),
                ("created_at", TS),
                ("updated_at", TS),
            ),
            versioned=True,
            held=True,
        ),
        TableSpec(
            "social_profiles",
            _schema(
                ("social_user_id", STR),
                ("person_id", I64),
                ("username", STR),
                ("name", STR),
                ("email", STR),
                ("phone", STR),
                ("updated_at", TS),
            ),
            versioned=True,
            held=True,
        ),
        TableSpec(
            "web_sessions",
            _schema(
                ("session_id", I64),
                ("shop_customer_id", I64),
                ("started_at", TS),
                ("page_views", I32),
                ("device", STR),
            ),
        ),
        TableSpec(
            "checkouts",
            _schema(
                ("checkout_id", I64),
                ("token", STR),
                ("shop_customer_id", I64),
                ("email", STR),
                ("created_at", TS),
                ("updated_at", TS),
                ("completed_at", TS),
                ("shipping_cost", F64),
                ("subtotal", F64),
                ("total", F64),
                ("outcome", STR),
                ("recovered_at", TS),
            ),
            versioned=True,
        ),
        TableSpec(
            "checkout_items",
            _schema(
                ("checkout_id", I64),
                ("product_id", I64),
                ("quantity", I32),
                ("unit_price", F64),
            ),
        ),
        TableSpec(
            "web_orders",
            _schema(
                ("order_id", I64),
                ("order_number", I64),
                ("shop_customer_id", I64),
                ("checkout_id", I64),
                ("created_at", TS),
                ("updated_at", TS),
                ("subtotal", F64),
                ("shipping_cost", F64),
                ("total", F64),
                ("financial_status", STR),
                ("fulfillment_status", STR),
                ("shipment_status", STR),
                ("delivered_at", TS),
                ("fulfillment_type", STR),
                ("pickup_store_id", I64),
            ),
            versioned=True,
        ),
        TableSpec(
            "web_order_items",
            _schema(
                ("order_id", I64),
                ("line_item_id", I64),
                ("product_id", I64),
                ("quantity", I32),
                ("unit_price", F64),
            ),
        ),
        TableSpec(
            "store_sales",
            _schema(
                ("pos_order_id", STR),
                ("store_id", I64),
                ("pos_customer_id", STR),
                ("created_at", TS),
                ("updated_at", TS),
                ("total", F64),
            ),
            versioned=True,
        ),
        TableSpec(
            "store_sale_items",
            _schema(
                ("pos_order_id", STR),
                ("line_uid", STR),
                ("product_id", I64),
                ("quantity", I32),
                ("unit_price", F64),
            ),
        ),
        TableSpec(
            "store_sale_discounts",
            _schema(
                ("pos_order_id", STR),
                ("discount_uid", STR),
                ("name", STR),
                ("amount", F64),
                ("credit_id", STR),
                ("offer_id", STR),
                ("loyalty_account_id", STR),
                ("created_at", TS),
            ),
        ),
        TableSpec(
            "web_order_discount_codes",
            _schema(
                ("order_id", I64),
                ("code", STR),
                ("amount", F64),
                ("type", STR),
                ("offer_id", STR),
                ("created_at", TS),
            ),
        ),
        TableSpec(
            "returns",
            _schema(
                ("return_id", STR),
                ("channel", STR),
                ("order_id", STR),
                ("product_id", I64),
                ("quantity", I32),
                ("amount", F64),
                ("created_at", TS),
            ),
        ),
        TableSpec(
            "social_activities",
            _schema(
                ("activity_id", STR),
                ("kind", STR),
                ("social_user_id", STR),
                ("post_id", STR),
                ("created_at", TS),
                ("text", STR),
                ("sentiment", STR),
                ("sentiment_score", F64),
            ),
        ),
        TableSpec(
            "marketplace_listings",
            _schema(
                ("listing_id", STR),
                ("marketplace", STR),
                ("product_id", I64),
                ("price", F64),
                ("updated_at", TS),
            ),
            versioned=True,
            held=True,
        ),
    )
}


def with_hidden(schema: pa.Schema) -> pa.Schema:
    """The schema of a chunk: the table's columns plus `_key` and `_visible`."""
    return schema.append(pa.field(KEY, I64)).append(pa.field(VISIBLE, I64))
