"""How the connectors talk HTTP: timeouts, retries and backoff, in one place.

Every source gets a ``requests`` session built by dlt's retrying ``Client``: 429 and 5xx
answers and dropped connections/timeouts are retried with exponential backoff; a 429's
``Retry-After`` header is honoured (capped by ``max_retry_delay_s``). 4xx other than 429
(a 401 above all) is not retried: a wrong token must fail at once, not after a minute of
backoff. The numbers below are set in code on purpose (no ``config.toml`` to hunt for).

The session also counts what it sends (every attempt, retries included), so an ingest run
can report how many requests it made.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import requests
from dlt.sources.helpers.requests import Client
from requests.adapters import HTTPAdapter


@dataclass(frozen=True)
class HttpPolicy:
    """Timeouts and retry policy shared by all sources.

    With the defaults a request is tried 6 times; the waits between attempts grow
    0.5, 1, 2, 4, 8 s (at most ``max_retry_delay_s``), or follow ``Retry-After`` on a 429.
    """

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = 6
    backoff_factor: float = 0.5
    max_retry_delay_s: float = 10.0
    retry_statuses: tuple[int, ...] = (429, 500, 502, 503, 504)
    max_connections: int = 4


DEFAULT_POLICY = HttpPolicy()


class CountingAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that counts every request it sends, by answer status."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent = 0
        self.by_status: Counter[str] = Counter()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent += 1
        try:
            response = super().send(request, **kwargs)
        except requests.RequestException as error:
            self.by_status[type(error).__name__] += 1
            raise
        self.by_status[str(response.status_code)] += 1
        return response


def make_session(policy: HttpPolicy = DEFAULT_POLICY) -> tuple[requests.Session, CountingAdapter]:
    """A retrying session (dlt ``Client``) that does not raise on status by itself.

    ``RESTClient`` raises on error statuses through its own response hook, after the retries.
    Returns the session and its counting adapter.
    """
    client = Client(
        request_timeout=(policy.connect_timeout_s, policy.read_timeout_s),
        max_connections=policy.max_connections,
        raise_for_status=False,
        status_codes=policy.retry_statuses,
        request_max_attempts=policy.max_attempts,
        request_backoff_factor=policy.backoff_factor,
        request_max_retry_delay=policy.max_retry_delay_s,
        respect_retry_after_header=True,
    )
    session = client.session
    adapter = CountingAdapter(pool_maxsize=policy.max_connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter
