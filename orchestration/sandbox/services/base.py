"""What every sandbox service shares: routing, auth, faults, stats, the HTTP server.

A service is a :class:`Service` subclass that declares its name, its world resources (SQL that
shapes records as the real API does), how a request authenticates, how its errors look, and
its routes. The request pipeline is the same for all of them::

    latency -> auth (401) -> rate limit (429 + Retry-After) -> injected error -> handler

and every request outside ``/_sandbox/`` is counted per path and status. Adding a service
(SendGrid, loyalty, store API) is one more module with one more subclass.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from orchestration.sandbox.services.faults import Damage, Faults
from orchestration.sandbox.services.paging import BadRequest
from orchestration.sandbox.services.world_db import Resource, Row, World

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    base_url: str
    match: re.Match[str] | None = None

    def json(self) -> dict[str, Any]:
        """The JSON object body (an empty body is ``{}``); 400 when it is not an object."""
        if not self.body.strip():
            return {}
        try:
            payload = json.loads(self.body)
        except ValueError as error:
            raise BadRequest(f"body is not valid JSON: {error}") from error
        if not isinstance(payload, dict):
            raise BadRequest("body must be a JSON object")
        return payload


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_TYPE
    file: Path | None = None  # streamed instead of ``body`` when set (bulk downloads)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), headers or {})


def raw_json_response(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    """A response whose JSON text was assembled from pre-rendered documents."""
    return Response(status, text.encode(), headers or {})


def json_body(request: Request) -> dict[str, Any]:
    """The JSON object body of a write API request (415 unless its ``Content-Type`` is
    ``application/json``)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "the body must be JSON (Content-Type: application/json)")
    return request.json()


class ApiError(Exception):
    """An error answered with the service's own error body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    """``method`` + full-match ``pattern`` on the path; ``api`` routes get auth and faults."""

    method: str
    pattern: str
    handler: Handler
    api: bool = True

    def match(self, path: str) -> re.Match[str] | None:
        return re.fullmatch(self.pattern, path)


class Stats:
    """Request counts per path and status (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}

    def record(self, path: str, status: int) -> None:
        with self._lock:
            per_status = self._counts.setdefault(path, {})
            per_status[str(status)] = per_status.get(str(status), 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            paths = {path: dict(counts) for path, counts in sorted(self._counts.items())}
        by_status: dict[str, int] = {}
        for counts in paths.values():
            for status, number in counts.items():
                by_status[status] = by_status.get(status, 0) + number
        return {"total": sum(by_status.values()), "by_status": by_status, "paths": paths}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class Service:
    """Base class of a sandbox service; subclasses fill in the class attributes and hooks."""

    name: ClassVar[str]
    resources: ClassVar[tuple[Resource, ...]] = ()
    # How records of each resource may be malformed (first entry: the fallback).
    damages: ClassVar[dict[str, tuple[Damage, ...]]] = {}

    def __init__(self, world: World, token: str) -> None:
        self.world = world
        self.token = token
        self.faults = Faults()
        self.stats = Stats()
        self._routes: list[Route] = self.sandbox_routes() + self.routes()

    # -- hooks -----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        """The API routes of this service."""
        return []

    def is_authorized(self, request: Request) -> bool:
        """``Authorization: Bearer <token>``; a service whose real API differs overrides this."""
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def error_payload(self, status: int, message: str) -> Any:
        """The JSON body of an error, shaped like the real API's."""
        return {"error": message}

    # -- the pipeline ------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        response = self._respond(request)
        if not request.path.startswith("/_sandbox/"):
            self.stats.record(request.path, response.status)
        return response

    def _respond(self, request: Request) -> Response:
        route, allowed = self._route(request)
        if route is None:
            status = 405 if allowed else 404
            message = "Method Not Allowed" if allowed else "Not Found"
            return self.error(status, message)
        try:
            if route.api:
                config = self.faults.config
                if config.latency_ms > 0:
                    time.sleep(config.latency_ms / 1000)
                if not self.is_authorized(request):
                    return self.error(401, "unauthorized")
                wait = self.faults.retry_after()
                if wait:
                    return self.error(429, "rate limited", {"Retry-After": str(wait)})
                injected = self.faults.injected_error()
                if injected is not None:
                    return self.error(injected, "injected fault")
            return route.handler(request)
        except BadRequest as error:
            return self.bad_request(error)
        except ApiError as error:
            return self.error(error.status, error.message, error.headers)
        except Exception:  # a bug in a handler: answer like a real API would, and log it
            log.exception("%s %s failed", request.method, request.path)
            return self.error(500, "internal error")

    def _route(self, request: Request) -> tuple[Route | None, bool]:
        allowed = False
        for route in self._routes:
            match = route.match(request.path)
            if match is None:
                continue
            if route.method == request.method:
                request.match = match
                return route, True
            allowed = True
        return None, allowed

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return json_response(status, self.error_payload(status, message), headers)

    def bad_request(self, error: BadRequest) -> Response:
        """The 400 of a rejected request (a service whose errors name the field overrides it)."""
        return self.error(400, str(error))

    # -- helpers for subclasses ---------------------------------------------------------------
    def render(self, resource: str, rows: Sequence[Row]) -> str:
        """A JSON array of the rows' documents, some damaged when malformed records are on."""
        damages = self.damages.get(resource, ())
        if self.faults.config.malformed_rate <= 0 or not damages:
            return "[" + ",".join(row.body for row in rows) + "]"
        parts = []
        for row in rows:
            stamp = row.key.updated_at.isoformat()
            damaged = self.faults.malform(resource, row.key.record_id, stamp, row.body, damages)
            parts.append(damaged if damaged is not None else row.body)
        return "[" + ",".join(parts) + "]"

    # -- the control plane --------------------------------------------------------------------
    def sandbox_routes(self) -> list[Route]:
        return [
            Route("GET", "/_sandbox/health", self._health, api=False),
            Route("GET", "/_sandbox/stats", self._stats, api=False),
            Route("DELETE", "/_sandbox/stats", self._reset_stats, api=False),
            Route("GET", "/_sandbox/faults", self._get_faults, api=False),
            Route("POST", "/_sandbox/faults", self._set_faults, api=False),
            Route("DELETE", "/_sandbox/faults", self._reset_faults, api=False),
            Route("POST", "/_sandbox/reload", self._reload, api=False),
        ]

    def _health(self, request: Request) -> Response:
        return json_response(200, {"status": "ok", "service": self.name, **self.world.info})

    def _stats(self, request: Request) -> Response:
        return json_response(200, {"service": self.name, **self.stats.snapshot()})

    def _reset_stats(self, request: Request) -> Response:
        self.stats.reset()
        return json_response(200, {"service": self.name, **self.stats.snapshot()})

    def _get_faults(self, request: Request) -> Response:
        return json_response(200, {"faults": self.faults.config.as_dict()})

    def _set_faults(self, request: Request) -> Response:
        config = self.faults.update(request.json())
        return json_response(200, {"faults": config.as_dict()})

    def _reset_faults(self, request: Request) -> Response:
        return json_response(200, {"faults": self.faults.reset().as_dict()})

    def _reload(self, request: Request) -> Response:
        reloaded = self.world.load()
        return json_response(200, {"reloaded": reloaded, **self.world.info})


class _HttpHandler(BaseHTTPRequestHandler):
    """Turns raw HTTP into :class:`Request` for the server's service (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers must not wait for a delayed ACK (40 ms)
    server: SandboxServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = {key: values[0] for key, values in parse_qs(split.query, True).items()}
        host = self.headers.get("Host") or self.server.url.removeprefix("http://")
        request = Request(
            method=self.command,
            path=split.path,
            query=query,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
            base_url=f"http://{host}",
        )
        response = self.server.service.handle(request)
        if response.file is None:
            self._send(response, len(response.body))
            self.wfile.write(response.body)
            return
        with response.file.open("rb") as source:  # open first: the file may be replaced
            self._send(response, os.fstat(source.fileno()).st_size)
            shutil.copyfileobj(source, self.wfile, 1 << 20)

    def _send(self, response: Response, size: int) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(size))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the stats endpoint counts requests; errors are logged by the service."""


class SandboxServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one service."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        self.service = service
        super().__init__(address, _HttpHandler)

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]!s}:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away before its answer (a timeout, a killed dispatcher) is not
        the service's error: say it in one line instead of a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.info("%s: client %s went away: %s", self.service.name, client_address, error)
            return
        super().handle_error(request, client_address)
