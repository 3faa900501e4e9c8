"""The POS: a Square v2 look-alike (locations, catalog, orders, inventory, customers, loyalty).

Auth by ``Authorization: Bearer``; cursor paging (response ``cursor`` until absent; ``limit``
capped: orders 500, others 100); search bodies as Square's; money as integer cents; counts and
quantities as strings. Results are ordered by ``updated_at, id`` (keyset cursors).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestration.sandbox.services.base import (
    Request,
    Response,
    Route,
    Service,
    raw_json_response,
)
from orchestration.sandbox.services.faults import (
    BAD_LATITUDE,
    BAD_TIMESTAMP,
    MISSING_ID,
    NEGATIVE,
    Damage,
)
from orchestration.sandbox.services.paging import (
    BadRequest,
    Cursor,
    parse_limit,
    parse_timestamp,
)
from orchestration.sandbox.services.world_db import Resource

LOCATIONS_SQL = """
WITH days(day_index, day_name) AS (
    VALUES (0, 'MON'), (1, 'TUE'), (2, 'WED'), (3, 'THU'), (4, 'FRI'), (5, 'SAT'), (6, 'SUN')
),
hours AS (
    SELECT s.store_id, list(json_object(
        'day_of_week', d.day_name,
        'start_local_time', CASE WHEN length(s.opens_local) = 5
            THEN s.opens_local || ':00' ELSE s.opens_local END,
        'end_local_time', CASE WHEN length(s.closes_local) = 5
            THEN s.closes_local || ':00' ELSE s.closes_local END) ORDER BY d.day_index) AS periods
    FROM w_stores AS s CROSS JOIN days AS d
    WHERE s.closed_weekday IS NULL OR d.day_index <> s.closed_weekday
    GROUP BY s.store_id
)
SELECT sec(s.created_at) AS k_ts, s.pos_location_id AS k_id, json_object(
    'id', s.pos_location_id,
    'name', s.name,
    'address', json_object(
        'address_line_1', NULL, 'locality', s.city, 'postal_code', s.postal_code,
        'country', 'ES'),
    'coordinates', json_object('latitude', s.latitude, 'longitude', s.longitude),
    'timezone', s.timezone,
    'status', 'ACTIVE',
    'business_hours', json_object('periods', json_list(hours.periods)),
    'created_at', iso(s.created_at)
)::VARCHAR AS body
FROM w_stores AS s LEFT JOIN hours USING (store_id)
"""

CATALOG_SQL = """
SELECT sec(p.updated_at) AS k_ts, p.pos_catalog_id AS k_id, json_object(
    'id', p.pos_catalog_id,
    'type', 'ITEM_VARIATION',
    'updated_at', iso(p.updated_at),
    'item_variation_data', json_object(
        'sku', p.sku, 'name', p.title,
        'price_money', json_object('amount', cents(p.store_price), 'currency', 'EUR'))
)::VARCHAR AS body
FROM w_products AS p
"""

# Returns live inside their order (and move its updated_at) so incremental loads see them.
ORDERS_SQL = """
WITH items AS (
    SELECT i.pos_order_id, list(json_object(
        'uid', i.line_uid, 'catalog_object_id', p.pos_catalog_id, 'name', p.title,
        'quantity', CAST(i.quantity AS VARCHAR),
        'base_price_money', json_object('amount', cents(i.unit_price), 'currency', 'EUR'))
        ORDER BY i.line_uid) AS line_items
    FROM w_store_sale_items AS i LEFT JOIN w_products AS p USING (product_id)
    GROUP BY i.pos_order_id
),
returned AS (
    SELECT r.order_id AS pos_order_id, max(r.created_at) AS last_return_at, list(json_object(
        'uid', r.return_id,
        'source_order_id', r.order_id,
        'return_line_items', [json_object(
            'uid', r.return_id, 'catalog_object_id', p.pos_catalog_id, 'name', p.title,
            'quantity', CAST(r.quantity AS VARCHAR),
            'base_price_money', json_object(
                'amount', cents(r.amount / nullif(r.quantity, 0)), 'currency', 'EUR'))]
        ) ORDER BY r.created_at, r.return_id) AS returns
    FROM w_returns AS r LEFT JOIN w_products AS p USING (product_id)
    WHERE r.channel = 'store'
    GROUP BY r.order_id
),
discounted AS (
    SELECT d.pos_order_id, sum(cents(d.amount)) AS discount_cents, list(json_object(
        'uid', d.discount_uid, 'name', d.name, 'type', 'FIXED_AMOUNT', 'scope', 'ORDER',
        'amount_money', json_object('amount', cents(d.amount), 'currency', 'EUR'),
        'applied_money', json_object('amount', cents(d.amount), 'currency', 'EUR'),
        'metadata', json_object('credit_id', d.credit_id, 'offer_id', d.offer_id,
            'loyalty_account_id', d.loyalty_account_id)
        ) ORDER BY d.discount_uid) AS discounts
    FROM w_store_sale_discounts AS d
    GROUP BY d.pos_order_id
),
orders AS (
    SELECT s.*, l.pos_location_id AS location_id, items.line_items, returned.returns,
        discounted.discounts, coalesce(discounted.discount_cents, 0) AS discount_cents,
        greatest(s.updated_at, returned.last_return_at) AS changed_at
    FROM w_store_sales AS s
    LEFT JOIN w_stores AS l USING (store_id)
    LEFT JOIN items USING (pos_order_id)
    LEFT JOIN returned USING (pos_order_id)
    LEFT JOIN discounted USING (pos_order_id)
)
SELECT sec(changed_at) AS k_ts, pos_order_id AS k_id, location_id, json_object(
    'id', pos_order_id,
    'location_id', location_id,
    'customer_id', pos_customer_id,
    'state', 'COMPLETED',
    'created_at', iso(created_at),
    'updated_at', iso(changed_at),
    'closed_at', iso(created_at),
    'total_money', json_object('amount', cents(total), 'currency', 'EUR'),
    'total_discount_money', json_object('amount', discount_cents, 'currency', 'EUR'),
    'line_items', json_list(line_items),
    'returns', json_list(returns),
    'discounts', json_list(discounts)
)::VARCHAR AS body
FROM orders
"""

# Current counts: the latest level per store and product.
INVENTORY_SQL = """
WITH latest AS (
    SELECT * FROM w_inventory_levels
    QUALIFY row_number() OVER (PARTITION BY store_id, product_id ORDER BY valid_from DESC) = 1
)
SELECT sec(i.valid_from) AS k_ts, l.pos_location_id || ':' || p.pos_catalog_id AS k_id,
    l.pos_location_id AS location_id, p.pos_catalog_id AS catalog_object_id, json_object(
    'catalog_object_id', p.pos_catalog_id,
    'catalog_object_type', 'ITEM_VARIATION',
    'state', 'IN_STOCK',
    'location_id', l.pos_location_id,
    'quantity', CAST(i.quantity AS VARCHAR),
    'calculated_at', iso(i.valid_from)
)::VARCHAR AS body
FROM latest AS i JOIN w_stores AS l USING (store_id) JOIN w_products AS p USING (product_id)
"""

CUSTOMERS_SQL = """
SELECT sec(c.updated_at) AS k_ts, c.pos_customer_id AS k_id, json_object(
    'id', c.pos_customer_id,
    'given_name', c.given_name,
    'family_name', c.family_name,
    'email_address', c.email,
    'phone_number', c.phone,
    'preferences', json_object('email_unsubscribed', c.email_unsubscribed),
    'created_at', iso(c.created_at),
    'updated_at', iso(c.updated_at)
)::VARCHAR AS body
FROM w_pos_customers AS c
"""

# One point per euro spent in store, no redemptions in the sandbox; a sale moves updated_at.
LOYALTY_SQL = """
WITH points AS (
    SELECT pos_customer_id, CAST(floor(sum(total)) AS BIGINT) AS points,
        max(updated_at) AS last_sale_at
    FROM w_store_sales WHERE pos_customer_id IS NOT NULL GROUP BY pos_customer_id
),
accounts AS (
    SELECT c.*, coalesce(points.points, 0) AS points,
        greatest(c.updated_at, points.last_sale_at) AS changed_at
    FROM w_pos_customers AS c LEFT JOIN points USING (pos_customer_id)
    WHERE c.loyalty_account_id IS NOT NULL
)
SELECT sec(changed_at) AS k_ts, loyalty_account_id AS k_id, json_object(
    'id', loyalty_account_id,
    'program_id', 'sandbox-loyalty-program',
    'customer_id', pos_customer_id,
    'mapping', json_object('phone_number', e164(phone)),
    'balance', points,
    'lifetime_points', points,
    'created_at', iso(created_at),
    'updated_at', iso(changed_at)
)::VARCHAR AS body
FROM accounts
"""

POS_RESOURCES = (
    Resource("pos_locations", ("stores",), LOCATIONS_SQL),
    Resource("pos_catalog", ("products",), CATALOG_SQL),
    Resource(
        "pos_orders",
        (
            "store_sales",
            "store_sale_items",
            "stores",
            "products",
            "returns",
            "store_sale_discounts",
        ),
        ORDERS_SQL,
    ),
    Resource("pos_inventory", ("inventory_levels", "stores", "products"), INVENTORY_SQL),
    Resource("pos_customers", ("pos_customers",), CUSTOMERS_SQL),
    Resource("pos_loyalty", ("pos_customers", "store_sales"), LOYALTY_SQL),
)

_ID = Damage(MISSING_ID, ("id",))
_CREATED = Damage(BAD_TIMESTAMP, ("created_at",))
_STATE = Damage("unknown_enum", ("state",), "LOST_IN_SPACE")
POS_DAMAGES = {
    "pos_locations": (_ID, Damage(BAD_LATITUDE, ("coordinates", "latitude")), _CREATED),
    "pos_catalog": (
        _ID,
        Damage(NEGATIVE, ("item_variation_data", "price_money", "amount")),
    ),
    "pos_orders": (
        _ID,
        _CREATED,
        Damage(NEGATIVE, ("line_items", 0, "quantity")),
        Damage(NEGATIVE, ("line_items", 0, "base_price_money", "amount")),
        Damage(NEGATIVE, ("total_money", "amount")),
        _STATE,
    ),
    "pos_inventory": (
        Damage(MISSING_ID, ("catalog_object_id",)),
        Damage(NEGATIVE, ("quantity",)),
        _STATE,
    ),
    "pos_customers": (_ID, _CREATED),
    "pos_loyalty": (_ID, _CREATED, Damage(NEGATIVE, ("balance",))),
}

MAX_ORDER_LOCATIONS = 10

CATEGORIES = {
    400: ("INVALID_REQUEST_ERROR", "BAD_REQUEST"),
    401: ("AUTHENTICATION_ERROR", "UNAUTHORIZED"),
    403: ("AUTHENTICATION_ERROR", "FORBIDDEN"),
    404: ("INVALID_REQUEST_ERROR", "NOT_FOUND"),
    405: ("INVALID_REQUEST_ERROR", "METHOD_NOT_ALLOWED"),
    429: ("RATE_LIMIT_ERROR", "RATE_LIMITED"),
    503: ("API_ERROR", "SERVICE_UNAVAILABLE"),
    504: ("API_ERROR", "GATEWAY_TIMEOUT"),
}


def _time_range(node: Any, name: str) -> tuple[datetime | None, datetime | None]:
    """A Square TimeRange ``{"start_at", "end_at"}`` (both optional, inclusive)."""
    if node is None:
        return None, None
    if not isinstance(node, dict):
        raise BadRequest(f"{name} must be an object with start_at / end_at")
    start, end = node.get("start_at"), node.get("end_at")
    return (
        parse_timestamp(str(start), f"{name}.start_at") if start else None,
        parse_timestamp(str(end), f"{name}.end_at") if end else None,
    )


def _dig(node: Any, *path: str) -> Any:
    for step in path:
        if not isinstance(node, dict):
            return None
        node = node.get(step)
    return node


def _id_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(f"{name} must be a list of strings")
    return value


class PosService(Service):
    name = "pos"
    resources = POS_RESOURCES
    damages = POS_DAMAGES

    def routes(self) -> list[Route]:
        return [
            Route("GET", r"/v2/locations", self._locations),
            Route("GET", r"/v2/catalog/list", self._catalog),
            Route("POST", r"/v2/orders/search", self._orders),
            Route("POST", r"/v2/inventory/counts/batch-retrieve", self._inventory),
            Route("POST", r"/v2/customers/search", self._customers),
            Route("POST", r"/v2/loyalty/accounts/search", self._loyalty),
        ]

    def error_payload(self, status: int, message: str) -> Any:
        category, code = CATEGORIES.get(status, ("API_ERROR", "INTERNAL_SERVER_ERROR"))
        if status == 401:
            message = "This request could not be authorized."
        return {"errors": [{"category": category, "code": code, "detail": message}]}

    def _page(
        self,
        request: Request,
        resource: str,
        key: str,
        cursor: Any,
        limit: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        where: tuple[str, ...] = (),
        params: tuple[Any, ...] = (),
    ) -> Response:
        after = Cursor.decode(str(cursor)).after if cursor else None
        rows, more = self.world.page(
            resource, after=after, since=since, until=until, where=where, params=params, limit=limit
        )
        text = f'{{"{key}":{self.render(resource, rows)}'
        if more:
            text += f',"cursor":"{Cursor(rows[-1].key).encode()}"'
        return raw_json_response(200, text + "}")

    def _locations(self, request: Request) -> Response:
        rows, _ = self.world.page("pos_locations", limit=100_000)
        return raw_json_response(200, f'{{"locations":{self.render("pos_locations", rows)}}}')

    def _catalog(self, request: Request) -> Response:
        types = [t.strip().upper() for t in request.query.get("types", "").split(",") if t.strip()]
        if types and "ITEM_VARIATION" not in types:
            return raw_json_response(200, '{"objects":[]}')
        limit = parse_limit(request.query.get("limit"), 100, 100)
        return self._page(request, "pos_catalog", "objects", request.query.get("cursor"), limit)

    def _orders(self, request: Request) -> Response:
        body = request.json()
        locations = _id_list(body.get("location_ids"), "location_ids")
        if len(locations) > MAX_ORDER_LOCATIONS:  # as Square: search at most 10 locations
            raise BadRequest(f"location_ids must hold at most {MAX_ORDER_LOCATIONS} ids")
        since, until = _time_range(
            _dig(body, "query", "filter", "date_time_filter", "updated_at"),
            "date_time_filter.updated_at",
        )
        where, params = _in_filter("location_id", locations)
        limit = parse_limit(body.get("limit"), 500, 500)
        return self._page(
            request, "pos_orders", "orders", body.get("cursor"), limit,
            since=since, until=until, where=where, params=params,
        )  # fmt: skip

    def _inventory(self, request: Request) -> Response:
        body = request.json()
        locations = _id_list(body.get("location_ids"), "location_ids")
        where_l, params_l = _in_filter("location_id", locations)
        where_c, params_c = _in_filter(
            "catalog_object_id", _id_list(body.get("catalog_object_ids"), "catalog_object_ids")
        )
        updated_after = body.get("updated_after")
        since = parse_timestamp(str(updated_after), "updated_after") if updated_after else None
        limit = parse_limit(body.get("limit"), 100, 100)
        return self._page(
            request, "pos_inventory", "counts", body.get("cursor"), limit,
            since=since, where=where_l + where_c, params=params_l + params_c,
        )  # fmt: skip

    def _customers(self, request: Request) -> Response:
        body = request.json()
        since, until = _time_range(_dig(body, "query", "filter", "updated_at"), "filter.updated_at")
        limit = parse_limit(body.get("limit"), 100, 100)
        return self._page(
            request, "pos_customers", "customers", body.get("cursor"), limit,
            since=since, until=until,
        )  # fmt: skip

    def _loyalty(self, request: Request) -> Response:
        body = request.json()
        limit = parse_limit(body.get("limit"), 100, 100)
        return self._page(request, "pos_loyalty", "loyalty_accounts", body.get("cursor"), limit)


def _in_filter(column: str, values: list[str]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    if not values:
        return (), ()
    return (f"{column} IN ({', '.join('?' for _ in values)})",), tuple(values)
