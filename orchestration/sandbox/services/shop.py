"""The shop: a Shopify Admin REST look-alike (``/admin/api/2024-07/``).

Auth by ``X-Shopify-Access-Token``; ``limit`` (default 50, max 250); ``Link`` header paging with
opaque ``page_info`` cursors that carry the first request's filters (as Shopify's do);
``updated_at_min`` / ``updated_at_max`` (inclusive); rows ordered by ``updated_at, id``; money
as strings. Also the bulk export (``POST bulk_operations.json`` + a JSONL download).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestration.sandbox.services.base import (
    ApiError,
    Request,
    Response,
    Route,
    Service,
    json_response,
    raw_json_response,
)
from orchestration.sandbox.services.faults import (
    BAD_LATITUDE,
    BAD_TIMESTAMP,
    MISSING_ID,
    NEGATIVE,
    UNKNOWN_ENUM,
    Damage,
    unit_hash,
)
from orchestration.sandbox.services.paging import Cursor, parse_limit, parse_timestamp
from orchestration.sandbox.services.world_db import Resource, World

API_PREFIX = r"/admin/api/(?P<version>[0-9]{4}-[0-9]{2})"
RESOURCES = ("customers", "orders", "checkouts", "products", "marketplace_listings")
FILTERS = ("updated_at_min", "updated_at_max")
UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"

CUSTOMERS_SQL = """
SELECT sec(c.updated_at) AS k_ts, c.shop_customer_id AS k_id, json_object(
    'id', c.shop_customer_id,
    'email', c.email,
    'phone', c.phone,
    'first_name', c.first_name,
    'last_name', c.last_name,
    'email_marketing_consent', json_object(
        'state', c.email_consent_state,
        'opt_in_level', 'single_opt_in',
        'consent_updated_at', CASE c.email_consent_state
            WHEN 'subscribed' THEN iso(c.created_at)
            WHEN 'unsubscribed' THEN iso(c.updated_at) END),
    'sms_marketing_consent', json_object('state', c.sms_consent_state),
    'default_address', json_object(
        'address1', c.address1, 'city', c.city, 'zip', c.zip, 'country_code', 'ES',
        'latitude', c.latitude, 'longitude', c.longitude),
    'timezone', c.timezone,
    'contact_window_start_hour', c.contact_window_start_hour,
    'contact_window_end_hour', c.contact_window_end_hour,
    'created_at', iso(c.created_at),
    'updated_at', iso(c.updated_at)
)::VARCHAR AS body
FROM w_shop_customers AS c
"""

# An order's updated_at moves with its refunds (as Shopify's does), so incremental loads see them.
ORDERS_SQL = """
WITH items AS (
    SELECT i.order_id, list(json_object(
        'id', i.line_item_id, 'product_id', i.product_id, 'sku', p.sku, 'title', p.title,
        'quantity', i.quantity, 'price', money(i.unit_price)) ORDER BY i.line_item_id) AS line_items
    FROM w_web_order_items AS i LEFT JOIN w_products AS p USING (product_id)
    GROUP BY i.order_id
),
refund_lines AS (
    SELECT r.return_id, TRY_CAST(r.order_id AS BIGINT) AS order_id, r.created_at, r.quantity,
        r.amount, min(i.line_item_id) AS line_item_id
    FROM w_returns AS r
    LEFT JOIN w_web_order_items AS i
        ON i.order_id = TRY_CAST(r.order_id AS BIGINT) AND i.product_id = r.product_id
    WHERE r.channel = 'web'
    GROUP BY ALL
),
refunds AS (
    SELECT order_id, max(created_at) AS last_refund_at, list(json_object(
        'id', return_id, 'created_at', iso(created_at),
        'refund_line_items', [json_object(
            'line_item_id', line_item_id, 'quantity', quantity, 'subtotal', money(amount))]
        ) ORDER BY created_at, return_id) AS refunds
    FROM refund_lines GROUP BY order_id
),
codes AS (
    SELECT order_id, sum(amount) AS discounts_total, list(json_object(
        'code', code, 'amount', money(amount), 'type', type) ORDER BY code) AS discount_codes
    FROM w_web_order_discount_codes GROUP BY order_id
),
orders AS (
    SELECT o.*, greatest(o.updated_at, f.last_refund_at) AS changed_at, c.email AS customer_email,
        items.line_items, f.refunds, codes.discount_codes,
        coalesce(codes.discounts_total, 0) AS discounts_total
    FROM w_web_orders AS o
    LEFT JOIN items USING (order_id)
    LEFT JOIN refunds AS f USING (order_id)
    LEFT JOIN codes USING (order_id)
    LEFT JOIN w_shop_customers AS c USING (shop_customer_id)
)
SELECT sec(changed_at) AS k_ts, order_id AS k_id, json_object(
    'id', order_id,
    'name', '#' || order_number,
    'order_number', order_number,
    'email', customer_email,
    'customer', CASE WHEN shop_customer_id IS NOT NULL THEN json_object('id', shop_customer_id) END,
    'checkout_id', checkout_id,
    'created_at', iso(created_at),
    'updated_at', iso(changed_at),
    'currency', 'EUR',
    'subtotal_price', money(subtotal),
    'total_price', money(total),
    'total_shipping_price', money(shipping_cost),
    'total_discounts', money(discounts_total),
    'discount_codes', json_list(discount_codes),
    'financial_status', financial_status,
    'fulfillment_status', fulfillment_status,
    'source_name', 'web',
    'fulfillments', to_json(CASE
        WHEN fulfillment_status IS NOT NULL OR coalesce(shipment_status, 'pending') <> 'pending'
        THEN [json_object(
            'id', order_id, 'status', 'success', 'shipment_status', shipment_status,
            'delivered_at', iso(delivered_at),
            'updated_at', iso(coalesce(delivered_at, updated_at)),
            'location_id', pickup_store_id)]
        ELSE []::JSON[] END),
    'line_items', json_list(line_items),
    'refunds', json_list(refunds)
)::VARCHAR AS body
FROM orders
"""

# Abandoned checkouts only; one recovered online later keeps its row and gets completed_at.
CHECKOUTS_SQL = """
WITH items AS (
    SELECT i.checkout_id, list(json_object(
        'product_id', i.product_id, 'sku', p.sku, 'title', p.title, 'quantity', i.quantity,
        'price', money(i.unit_price)) ORDER BY i.product_id) AS line_items
    FROM w_checkout_items AS i LEFT JOIN w_products AS p USING (product_id)
    GROUP BY i.checkout_id
),
checkouts AS (
    SELECT k.*, items.line_items,
        coalesce(k.completed_at, CASE WHEN k.outcome = 'abandoned_bought_online'
            THEN k.recovered_at END) AS completed
    FROM w_checkouts AS k LEFT JOIN items USING (checkout_id)
    WHERE coalesce(k.outcome, '') <> 'completed'
)
SELECT sec(greatest(updated_at, completed)) AS k_ts, checkout_id AS k_id, json_object(
    'id', checkout_id,
    'token', token,
    'email', email,
    'customer', CASE WHEN shop_customer_id IS NOT NULL THEN json_object('id', shop_customer_id) END,
    'created_at', iso(created_at),
    'updated_at', iso(greatest(updated_at, completed)),
    'completed_at', iso(completed),
    'abandoned_checkout_url', 'https://shop.example.com/checkouts/' || token || '/recover',
    'subtotal_price', money(subtotal),
    'total_price', money(total),
    'shipping_lines', [json_object('price', money(shipping_cost))],
    'line_items', json_list(line_items)
)::VARCHAR AS body
FROM checkouts
"""

PRODUCTS_SQL = """
SELECT sec(p.updated_at) AS k_ts, p.product_id AS k_id, json_object(
    'id', p.product_id,
    'title', p.title,
    'product_type', p.category,
    'created_at', iso(p.created_at),
    'updated_at', iso(p.updated_at),
    'variants', [json_object(
        'id', p.product_id, 'sku', p.sku, 'price', money(p.web_price), 'cost', money(p.cost))]
)::VARCHAR AS body
FROM w_products AS p
"""

LISTINGS_SQL = """
SELECT sec(m.updated_at) AS k_ts, m.listing_id AS k_id, json_object(
    'id', m.listing_id,
    'marketplace', m.marketplace,
    'sku', p.sku,
    'price', money(m.price),
    'updated_at', iso(m.updated_at)
)::VARCHAR AS body
FROM w_marketplace_listings AS m LEFT JOIN w_products AS p USING (product_id)
"""

SHOP_RESOURCES = (
    Resource("shop_customers", ("shop_customers",), CUSTOMERS_SQL),
    Resource(
        "shop_orders",
        (
            "web_orders",
            "web_order_items",
            "returns",
            "products",
            "shop_customers",
            "web_order_discount_codes",
        ),
        ORDERS_SQL,
    ),
    Resource("shop_checkouts", ("checkouts", "checkout_items", "products"), CHECKOUTS_SQL),
    Resource("shop_products", ("products",), PRODUCTS_SQL),
    Resource("shop_marketplace_listings", ("marketplace_listings", "products"), LISTINGS_SQL),
)

_ID = Damage(MISSING_ID, ("id",))
_CREATED = Damage(BAD_TIMESTAMP, ("created_at",))
SHOP_DAMAGES = {
    "shop_customers": (
        _ID,
        _CREATED,
        Damage(BAD_LATITUDE, ("default_address", "latitude")),
        Damage(UNKNOWN_ENUM, ("email_marketing_consent", "state")),
    ),
    "shop_orders": (
        _ID,
        _CREATED,
        Damage(NEGATIVE, ("line_items", 0, "price")),
        Damage(NEGATIVE, ("line_items", 0, "quantity")),
        Damage(UNKNOWN_ENUM, ("financial_status",)),
    ),
    "shop_checkouts": (
        _ID,
        _CREATED,
        Damage(NEGATIVE, ("line_items", 0, "quantity")),
        Damage(NEGATIVE, ("total_price",)),
    ),
    "shop_products": (_ID, _CREATED, Damage(NEGATIVE, ("variants", 0, "price"))),
    "shop_marketplace_listings": (_ID, Damage(NEGATIVE, ("price",))),
}


def bulk_path(world_dir: Path, resource: str) -> Path:
    return Path(world_dir) / "bulk" / f"shop_{resource}.jsonl"


def write_bulk(world: World, resource: str) -> tuple[Path, int]:
    """Write ``world/bulk/shop_<resource>.jsonl`` (the API's documents, one per line)."""
    target = bulk_path(world.world_dir, resource)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".jsonl.{id(target)}.tmp")
    count = 0
    with partial.open("w", encoding="utf-8") as out:
        for _record_id, body in world.bodies(f"shop_{resource}"):
            out.write(body)
            out.write("\n")
            count += 1
    partial.replace(target)
    return target, count


class ShopService(Service):
    name = "shop"
    resources = SHOP_RESOURCES
    damages = SHOP_DAMAGES

    def routes(self) -> list[Route]:
        names = "|".join(RESOURCES)
        return [
            Route("GET", rf"{API_PREFIX}/(?P<resource>{names})\.json", self._list),
            Route("GET", rf"{API_PREFIX}/(?P<resource>{names})/count\.json", self._count),
            Route("POST", rf"{API_PREFIX}/bulk_operations\.json", self._bulk_operation),
            Route("GET", r"/bulk/shop_(?P<resource>[a-z_]+)\.jsonl", self._bulk_file, api=False),
        ]

    def is_authorized(self, request: Request) -> bool:
        return request.headers.get("x-shopify-access-token") == self.token

    def error_payload(self, status: int, message: str) -> Any:
        if status == 401:
            return {"errors": UNAUTHORIZED}
        if status == 429:
            return {
                "errors": "Exceeded the rate limit for api client. "
                "Reduce request rates to resume uninterrupted service."
            }
        if status == 404:
            return {"errors": "Not Found"}
        if status >= 500:
            return {"errors": "Internal Server Error"}
        return {"errors": message}

    def _filters(self, request: Request) -> tuple[Cursor | None, dict[str, Any]]:
        page_info = request.query.get("page_info")
        if page_info:
            # Like Shopify, a page_info carries the filters; other filters are ignored.
            cursor = Cursor.decode(page_info)
            return cursor, cursor.filters
        return None, {name: request.query[name] for name in FILTERS if request.query.get(name)}

    def _list(self, request: Request) -> Response:
        assert request.match is not None
        resource = request.match["resource"]
        limit = parse_limit(request.query.get("limit"), 50, 250)
        cursor, filters = self._filters(request)
        since = filters.get("updated_at_min")
        until = filters.get("updated_at_max")
        rows, more = self.world.page(
            f"shop_{resource}",
            after=cursor.after if cursor else None,
            since=parse_timestamp(since, "updated_at_min") if since else None,
            until=parse_timestamp(until, "updated_at_max") if until else None,
            limit=limit,
        )
        headers = {}
        if more:
            token = Cursor(rows[-1].key, filters).encode()
            url = f"{request.base_url}{request.path}?limit={limit}&page_info={token}"
            headers["Link"] = f'<{url}>; rel="next"'
        text = f'{{"{resource}":{self.render(f"shop_{resource}", rows)}}}'
        return raw_json_response(200, text, headers)

    def _count(self, request: Request) -> Response:
        assert request.match is not None
        since = request.query.get("updated_at_min")
        until = request.query.get("updated_at_max")
        where, params = [], []
        if since:
            where.append("k_ts >= ?")
            params.append(parse_timestamp(since, "updated_at_min"))
        if until:
            where.append("k_ts <= ?")
            params.append(parse_timestamp(until, "updated_at_max"))
        count = self.world.count(f"shop_{request.match['resource']}", where, params)
        return json_response(200, {"count": count})

    def _bulk_operation(self, request: Request) -> Response:
        resource = request.json().get("resource")
        if resource not in RESOURCES:
            raise ApiError(400, f"resource must be one of {list(RESOURCES)}, got {resource!r}")
        path, count = write_bulk(self.world, resource)
        operation = {
            "id": f"gid://shopify/BulkOperation/{int(unit_hash(resource, count) * 10**9)}",
            "status": "COMPLETED",
            "resource": resource,
            "url": f"{request.base_url}/bulk/{path.name}",
            "object_count": count,
        }
        return json_response(200, {"bulk_operation": operation})

    def _bulk_file(self, request: Request) -> Response:
        assert request.match is not None
        resource = request.match["resource"]
        path = bulk_path(self.world.world_dir, resource)
        if resource not in RESOURCES or not path.exists():
            raise ApiError(404, "Not Found")
        return Response(200, b"", content_type="application/jsonl", file=path)
