"""Social: a Graph API look-alike (``/v19.0/me/...``).

Auth by ``access_token`` query parameter or ``Authorization: Bearer``; ``limit`` (default 25,
max 100); ``after`` cursors with ``paging.next`` until the last page; ``since`` / ``until``
(unix seconds, inclusive) on ``updated_time``; timestamps with ``+0000`` like Graph.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from orchestration.sandbox.services.base import (
    Request,
    Response,
    Route,
    Service,
    raw_json_response,
)
from orchestration.sandbox.services.faults import BAD_TIMESTAMP, MISSING_ID, UNKNOWN_ENUM, Damage
from orchestration.sandbox.services.paging import Cursor, parse_limit, parse_unix_or_iso
from orchestration.sandbox.services.world_db import Resource

# Graph objects: comments, mentions and messages are never edited, so updated = created.
ACTIVITIES_SQL = """
SELECT sec(a.created_at) AS k_ts, a.activity_id AS k_id, a.kind, json_object(
    'id', a.activity_id,
    'created_time', graph_time(a.created_at),
    'updated_time', graph_time(a.created_at),
    'from', json_object('id', a.social_user_id, 'username', p.username),
    'message', a.text,
    'post_id', a.post_id,
    'sentiment', a.sentiment,
    'sentiment_score', a.sentiment_score
)::VARCHAR AS body
FROM w_social_activities AS a LEFT JOIN w_social_profiles AS p USING (social_user_id)
"""

CONTACTS_SQL = """
SELECT sec(p.updated_at) AS k_ts, p.social_user_id AS k_id, json_object(
    'id', p.social_user_id,
    'username', p.username,
    'name', p.name,
    'email', p.email,
    'phone', p.phone,
    'updated_time', graph_time(p.updated_at)
)::VARCHAR AS body
FROM w_social_profiles AS p
WHERE p.email IS NOT NULL OR p.phone IS NOT NULL
"""

SOCIAL_RESOURCES = (
    Resource("social_activities", ("social_activities", "social_profiles"), ACTIVITIES_SQL),
    Resource("social_contacts", ("social_profiles",), CONTACTS_SQL),
)

_ID = Damage(MISSING_ID, ("id",))
SOCIAL_DAMAGES = {
    "social_activities": (
        _ID,
        Damage(BAD_TIMESTAMP, ("created_time",)),
        Damage(UNKNOWN_ENUM, ("sentiment",)),
    ),
    "social_contacts": (_ID,),
}

# Edge name -> (resource, activity kind or None).
EDGES = {
    "comments": ("social_activities", "comment"),
    "mentions": ("social_activities", "mention"),
    "messages": ("social_activities", "message"),
    "contacts": ("social_contacts", None),
}

ERRORS = {
    401: (190, "Invalid OAuth access token - Cannot parse access token"),
    429: (4, "(#4) Application request limit reached"),
    400: (100, "(#100) Invalid parameter"),
    404: (803, "(#803) Some of the aliases you requested do not exist"),
}


class SocialService(Service):
    name = "social"
    resources = SOCIAL_RESOURCES
    damages = SOCIAL_DAMAGES

    def routes(self) -> list[Route]:
        edges = "|".join(EDGES)
        return [Route("GET", rf"/v(?P<version>[0-9.]+)/me/(?P<edge>{edges})", self._edge)]

    def is_authorized(self, request: Request) -> bool:
        token = request.query.get("access_token")
        if token is None:
            header = request.headers.get("authorization", "")
            token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        return token == self.token

    def error_payload(self, status: int, message: str) -> Any:
        code, text = ERRORS.get(status, (2, "An unexpected error has occurred. Please retry."))
        if status == 400:
            text = f"(#100) {message}"
        return {
            "error": {
                "message": text,
                "type": "OAuthException",
                "code": code,
                "is_transient": status == 429 or status >= 500,
                "fbtrace_id": "sandbox",
            }
        }

    def _edge(self, request: Request) -> Response:
        assert request.match is not None
        resource, kind = EDGES[request.match["edge"]]
        query = request.query
        limit = parse_limit(query.get("limit"), 25, 100)
        since = parse_unix_or_iso(query["since"], "since") if query.get("since") else None
        until = parse_unix_or_iso(query["until"], "until") if query.get("until") else None
        after = Cursor.decode(query["after"]).after if query.get("after") else None
        where, params = (("kind = ?",), (kind,)) if kind else ((), ())
        rows, more = self.world.page(
            resource, after=after, since=since, until=until, where=where, params=params, limit=limit
        )
        text = f'{{"data":{self.render(resource, rows)}'
        if rows:
            first, last = Cursor(rows[0].key).encode(), Cursor(rows[-1].key).encode()
            text += f',"paging":{{"cursors":{{"before":"{first}","after":"{last}"}}'
            if more:
                following = {k: v for k, v in query.items() if k not in {"after", "before"}}
                following["limit"] = str(limit)
                following["after"] = last
                url = f"{request.base_url}{request.path}?{urlencode(following)}"
                text += f',"next":{json.dumps(url)}'
            text += "}"
        return raw_json_response(200, text + "}")
