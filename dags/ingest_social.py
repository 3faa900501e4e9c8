"""Ingest the brand's social accounts (Graph API style).

Resources: comments, mentions, direct messages, shared contact details.
Pulls incrementally (cursor on update time) with dlt into `raw_social` in the warehouse and
publishes the `raw_social` asset. Base URL and token come from the Airflow connection
`omni_social` when it exists, else from the environment (default: the sandbox).
"""

from orchestration.dag_factory import ingest_dag

dag = ingest_dag("social", __doc__)
