"""The social network: a Graph-API-style service (``/v19.0/``).

Paging follows ``paging.next`` in the body (``JSONLinkPaginator``). Each edge is
incremental on ``updated_time`` (``2026-11-01T10:00:00+0000``): dlt keeps the last value
and the request carries it as ``since`` in unix seconds (inclusive; the rows of that same
second that were already loaded are dropped by dlt's boundary de-duplication).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests
from dlt.extract import DltSource
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONLinkPaginator
from dlt.sources.rest_api import rest_api_source
from dlt.sources.rest_api.typing import EndpointResource, RESTAPIConfig

from orchestration.sources import columns

API_PREFIX = "v19.0"
PAGE_SIZE = 100  # Graph's maximum
INITIAL_UPDATED_TIME = "1970-01-01T00:00:00+0000"

# resource (== raw table) -> edge
EDGES: dict[str, str] = {
    "comments": "me/comments",
    "mentions": "me/mentions",
    "messages": "me/messages",
    "contacts": "me/contacts",
}


def to_unix_seconds(updated_time: Any) -> int | None:
    """``2026-11-01T10:00:00+0000`` (Graph's format) -> unix seconds, for ``since``."""
    if updated_time is None:
        return None
    return int(datetime.strptime(str(updated_time), "%Y-%m-%dT%H:%M:%S%z").timestamp())


def _resource(name: str) -> EndpointResource:
    resource: EndpointResource = {
        "name": name,
        "endpoint": {
            "path": f"{API_PREFIX}/{EDGES[name]}",
            "params": {
                "limit": PAGE_SIZE,
                "since": {
                    "type": "incremental",
                    "cursor_path": "updated_time",
                    "initial_value": INITIAL_UPDATED_TIME,
                    "convert": to_unix_seconds,
                },
            },
            "data_selector": "data",
            "paginator": JSONLinkPaginator(next_url_path="paging.next"),
        },
    }
    resource.update(columns.hints("social", name))
    return resource


def source(base_url: str, token: str, session: requests.Session) -> DltSource:
    """The social network as a dlt source: one resource per raw table of ``raw_social``."""
    config: RESTAPIConfig = {
        "client": {
            "base_url": base_url.rstrip("/") + "/",
            "auth": BearerTokenAuth(token=token),
            "session": session,
        },
        "resource_defaults": {"write_disposition": "append"},
        "resources": [_resource(name) for name in EDGES],
    }
    return rest_api_source(config, name="social")
