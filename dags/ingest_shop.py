"""Ingest the web shop (Shopify Admin REST style).

Resources: customers, orders, abandoned checkouts, products, marketplace prices.
Pulls incrementally (cursor on update time) with dlt into `raw_shop` in the warehouse and
publishes the `raw_shop` asset. Base URL and token come from the Airflow connection
`omni_shop` when it exists, else from the environment (default: the sandbox).
"""

from orchestration.dag_factory import ingest_dag

dag = ingest_dag("shop", __doc__)
