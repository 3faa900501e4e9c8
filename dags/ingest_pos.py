"""Ingest the stores' point of sale (Square style).

Resources: locations, catalog, store orders, inventory counts, customers, loyalty accounts.
Pulls incrementally (cursor on update time) with dlt into `raw_pos` in the warehouse and
publishes the `raw_pos` asset. Base URL and token come from the Airflow connection
`omni_pos` when it exists, else from the environment (default: the sandbox).
"""

from orchestration.dag_factory import ingest_dag

dag = ingest_dag("pos", __doc__)
