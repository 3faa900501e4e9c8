"""The web shop: a Shopify-style Admin REST API (``/admin/api/2024-07/``).

Paging follows the ``Link: <...>; rel="next"`` header (``HeaderLinkPaginator``); each
resource is incremental on ``updated_at`` through the inclusive ``updated_at_min`` filter
(dlt keeps the last ``updated_at`` in its state and drops the boundary rows it already
loaded). Child lists become child tables (``orders__line_items``...), see the contract.
"""

from __future__ import annotations

from typing import Any

import requests
from dlt.extract import DltSource
from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from dlt.sources.helpers.rest_client.paginators import HeaderLinkPaginator
from dlt.sources.rest_api import rest_api_source
from dlt.sources.rest_api.typing import EndpointResource, RESTAPIConfig

from orchestration.sources import columns

API_PREFIX = "admin/api/2024-07"
PAGE_SIZE = 250  # Shopify's maximum
INITIAL_UPDATED_AT = "1970-01-01T00:00:00+00:00"

# resource (== raw table) -> (endpoint, extra query parameters)
ENDPOINTS: dict[str, tuple[str, dict[str, str]]] = {
    "customers": ("customers.json", {}),
    "orders": ("orders.json", {"status": "any"}),
    "checkouts": ("checkouts.json", {}),
    "products": ("products.json", {}),
    "marketplace_listings": ("marketplace_listings.json", {}),
}


def _resource(name: str) -> EndpointResource:
    path, extra = ENDPOINTS[name]
    params: dict[str, Any] = {
        "limit": PAGE_SIZE,
        **extra,
        "updated_at_min": {
            "type": "incremental",
            "cursor_path": "updated_at",
            "initial_value": INITIAL_UPDATED_AT,
        },
    }
    resource: EndpointResource = {
        "name": name,
        "endpoint": {
            "path": f"{API_PREFIX}/{path}",
            "params": params,
            "data_selector": name,
            "paginator": HeaderLinkPaginator(links_next_key="next"),
        },
    }
    resource.update(columns.hints("shop", name))
    return resource


def source(base_url: str, token: str, session: requests.Session) -> DltSource:
    """The shop as a dlt source: one resource per raw table of ``raw_shop``."""
    config: RESTAPIConfig = {
        "client": {
            "base_url": base_url.rstrip("/") + "/",
            "auth": APIKeyAuth(name="X-Shopify-Access-Token", api_key=token, location="header"),
            "session": session,
        },
        "resource_defaults": {"write_disposition": "append"},
        "resources": [_resource(name) for name in ENDPOINTS],
    }
    return rest_api_source(config, name="shop")
