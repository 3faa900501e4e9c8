"""The point of sale: a Square-v2-style API.

Searches are POSTs with a JSON body that carries both the filter and the page ``cursor``
(``JSONResponseCursorPaginator(cursor_path="cursor", cursor_body_path="cursor")``); the
incremental value goes into the body through dlt's ``{incremental.start_value}``
placeholder. Per resource:

- ``locations``: ``GET /v2/locations`` (one page, a handful of rows): replaced each run.
- ``catalog_objects``: ``GET /v2/catalog/list`` (cursor in the query string). The list has
  no time filter, so every page is read and dlt keeps only rows past the last ``updated_at``.
- ``orders``: ``POST /v2/orders/search`` needs ``location_ids`` (Square: 1 to 10 per
  search), so it is a small ``@dlt.resource`` that lists the locations first; filtered on
  ``updated_at`` in the body.
- ``inventory_counts``: ``POST .../counts/batch-retrieve``, filtered by ``updated_after``
  on ``calculated_at``.
- ``customers``: ``POST /v2/customers/search``, filtered on ``updated_at`` in the body.
- ``loyalty_accounts``: ``POST /v2/loyalty/accounts/search`` has no time filter: every
  page is read, dlt keeps rows past the last ``updated_at``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
import requests
from dlt.extract import DltResource, DltSource
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import (
    JSONResponseCursorPaginator,
    SinglePagePaginator,
)
from dlt.sources.rest_api import rest_api_source
from dlt.sources.rest_api.typing import EndpointResource, IncrementalConfig, RESTAPIConfig

from orchestration.sources import columns

INITIAL_UPDATED_AT = "1970-01-01T00:00:00+00:00"
ORDERS_PAGE_SIZE = 500  # Square's cap for order searches
PAGE_SIZE = 100  # Square's cap for the other searches
LOCATIONS_PER_SEARCH = 10  # Square accepts 1 to 10 location ids per order search


def _body_cursor() -> JSONResponseCursorPaginator:
    return JSONResponseCursorPaginator(cursor_path="cursor", cursor_body_path="cursor")


def _incremental(cursor_path: str) -> IncrementalConfig:
    return {"cursor_path": cursor_path, "initial_value": INITIAL_UPDATED_AT}


def _resources() -> list[EndpointResource]:
    """Fresh configs each time: dlt keeps state in paginator instances."""
    return [
        {
            "name": "locations",
            "write_disposition": "replace",
            **columns.hints("pos", "locations"),
            "endpoint": {
                "path": "v2/locations",
                "data_selector": "locations",
                "paginator": SinglePagePaginator(),
            },
        },
        {
            "name": "catalog_objects",
            "endpoint": {
                "path": "v2/catalog/list",
                "params": {"types": "ITEM_VARIATION"},
                "data_selector": "objects",
                "paginator": JSONResponseCursorPaginator(
                    cursor_path="cursor", cursor_param="cursor"
                ),
                "incremental": _incremental("updated_at"),
            },
        },
        {
            "name": "inventory_counts",
            "endpoint": {
                "path": "v2/inventory/counts/batch-retrieve",
                "method": "POST",
                "json": {"updated_after": "{incremental.start_value}", "limit": PAGE_SIZE},
                "data_selector": "counts",
                "paginator": _body_cursor(),
                "incremental": _incremental("calculated_at"),
            },
        },
        {
            "name": "customers",
            **columns.hints("pos", "customers"),
            "endpoint": {
                "path": "v2/customers/search",
                "method": "POST",
                "json": {
                    "limit": PAGE_SIZE,
                    "query": {
                        "filter": {"updated_at": {"start_at": "{incremental.start_value}"}},
                        "sort": {"field": "UPDATED_AT", "order": "ASC"},
                    },
                },
                "data_selector": "customers",
                "paginator": _body_cursor(),
                "incremental": _incremental("updated_at"),
            },
        },
        {
            "name": "loyalty_accounts",
            "endpoint": {
                "path": "v2/loyalty/accounts/search",
                "method": "POST",
                "json": {"limit": PAGE_SIZE},
                "data_selector": "loyalty_accounts",
                "paginator": _body_cursor(),
                "incremental": _incremental("updated_at"),
            },
        },
    ]


def _orders(client: RESTClient) -> DltResource:
    """Order searches over every location, ``LOCATIONS_PER_SEARCH`` ids at a time."""

    @dlt.resource(
        name="orders", write_disposition="append", columns=columns.table_columns("pos", "orders")
    )
    def orders(
        updated_at: dlt.sources.incremental[str] = dlt.sources.incremental(
            "updated_at", initial_value=INITIAL_UPDATED_AT
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        location_ids = [
            location["id"]
            for page in client.paginate(
                "v2/locations", data_selector="locations", paginator=SinglePagePaginator()
            )
            for location in page
            if location.get("id")
        ]
        for start in range(0, len(location_ids), LOCATIONS_PER_SEARCH):
            body = {
                "location_ids": location_ids[start : start + LOCATIONS_PER_SEARCH],
                "limit": ORDERS_PAGE_SIZE,
                "query": {
                    "filter": {
                        "date_time_filter": {"updated_at": {"start_at": updated_at.start_value}}
                    },
                    "sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"},
                },
            }
            yield from client.paginate(
                "v2/orders/search",
                method="POST",
                json=body,
                data_selector="orders",
                paginator=_body_cursor(),
            )

    return orders


def source(base_url: str, token: str, session: requests.Session) -> DltSource:
    """The POS as a dlt source: one resource per raw table of ``raw_pos``."""
    base_url = base_url.rstrip("/") + "/"
    auth = BearerTokenAuth(token=token)
    config: RESTAPIConfig = {
        "client": {"base_url": base_url, "auth": auth, "session": session},
        "resource_defaults": {"write_disposition": "append"},
        "resources": [
            *_resources(),
            _orders(RESTClient(base_url=base_url, auth=auth, session=session)),
        ],
    }
    return rest_api_source(config, name="pos")
