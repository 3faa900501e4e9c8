"""Every Airflow asset of the pipeline, in one place.

DAGs are chained by these assets: each ``ingest_<source>`` DAG produces its raw asset,
``warehouse_build`` is scheduled on all three and produces ``WAREHOUSE``; campaign and
measurement DAGs (later) are scheduled on ``WAREHOUSE``.
"""

from __future__ import annotations

from airflow.sdk import Asset

RAW = {
    source: Asset(name=f"raw_{source}", uri=f"omni://warehouse/raw_{source}", group="raw")
    for source in ("shop", "pos", "social")
}
WAREHOUSE = Asset(name="warehouse_marts", uri="omni://warehouse/marts", group="warehouse")
