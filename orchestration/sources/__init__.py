"""Ingestion: dlt REST API sources for the shop, the POS and the social network.

``ingest(source)`` pulls one source incrementally into its raw dataset of the warehouse
(``raw_shop``, ``raw_pos``, ``raw_social``; tables as in ``docs/sandbox-api.md`` section 3)
and returns what it did::

    {"source": "shop", "dataset": "raw_shop", "rows": {"orders": 120, ...},
     "total_rows": 340, "load_id": "1763...", "requests": 12,
     "responses": {"200": 12}, "seconds": 1.9}

Importing this package is cheap and touches neither the network nor the warehouse: dlt
and the source configs load on the first call. Retries, backoff and timeouts live in
``orchestration.sources.http``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestration.sources.catalog import SOURCES
from orchestration.sources.errors import IngestError, SourceAuthError
from orchestration.warehouse import writes_warehouse

if TYPE_CHECKING:
    from orchestration.settings import Settings
    from orchestration.sources.http import HttpPolicy

__all__ = ["SOURCES", "IngestError", "SourceAuthError", "ingest"]


@writes_warehouse("an ingest load")
def ingest(
    source: str,
    *,
    base_url: str | None = None,
    token: str | None = None,
    cfg: Settings | None = None,
    policy: HttpPolicy | None = None,
) -> dict[str, Any]:
    """Pull ``source`` ("shop", "pos" or "social") incrementally into ``raw_<source>``.

    ``base_url`` and ``token`` default to ``cfg`` (``settings.load()``): the sandbox
    unless the environment says otherwise. Raises ``SourceAuthError`` at once on a 401/403
    and ``IngestError`` when the API still fails after the retries (both name the source
    and the URL).
    """
    from orchestration.sources import pipeline
    from orchestration.sources.http import DEFAULT_POLICY

    return pipeline.ingest(
        source, base_url=base_url, token=token, cfg=cfg, policy=policy or DEFAULT_POLICY
    )
