"""The steps of the ``measurement`` DAG (``dags/measurement.py`` only wires them).

Each step takes optional settings (the DAG passes none: each reads the environment, and the
provider endpoint comes from the Airflow connection when there is one) and returns what the
task log should show.
"""

from __future__ import annotations

import logging
from typing import Any

from orchestration import settings, warehouse
from orchestration.settings import Settings

log = logging.getLogger(__name__)

# `dbt build` of what the measurement needs rebuilt after the ledger is loaded: the contact
# history facts (dispatch) and everything measured from them (measurement).
DBT_SELECT = ("path:models/dispatch", "path:models/measurement")


def busy_campaign_dags(task_instance: Any, cfg: Settings | None = None) -> list[str]:
    """The ``campaign_<id>`` DAGs (one per valid campaign file) with a run queued or running.

    ``task_instance`` is the running task's ``ti`` (its ``get_dr_count`` asks the Airflow API
    server; tasks have no database access of their own).
    """
    from orchestration.campaign_dags import DAG_PREFIX
    from orchestration.campaigns import load_all

    campaigns, _ = load_all((cfg or settings.load()).campaigns_dir)
    busy = []
    for campaign in campaigns:
        dag_id = f"{DAG_PREFIX}{campaign.id}"
        if task_instance.get_dr_count(dag_id=dag_id, states=["queued", "running"]):
            busy.append(dag_id)
    if busy:
        log.info("Waiting for campaign runs to finish: %s", ", ".join(busy))
    return busy


def poll_email_events(cfg: Settings | None = None) -> dict[str, Any]:
    """SendGrid events into the ledger database; unknown email contacts reconciled."""
    from orchestration.dispatch import Ledger
    from orchestration.dispatch.email_events import poll_email_events as poll

    if cfg is None:
        from orchestration.connections import settings_with_connections

        cfg = settings_with_connections(("sendgrid",))
    with Ledger.from_settings(cfg) as ledger:
        return poll(ledger, cfg)


def load_dispatch(cfg: Settings | None = None) -> dict[str, int]:
    """The ledger's contacts, holdouts and email events into the warehouse schema dispatch."""
    from orchestration.dispatch.warehouse_load import load_dispatch as load

    return load(cfg or settings.load())


def build_measurement(cfg: Settings | None = None) -> None:
    """``dbt build`` of the dispatch and measurement models, with their tests."""
    warehouse.dbt(cfg or settings.load(), "build", "--select", *DBT_SELECT)


def write_report(cfg: Settings | None = None) -> str:
    """Write the HTML report; returns its path."""
    from orchestration.measurement.report import write_report as write

    path = write(cfg or settings.load())
    log.info("Measurement report: %s", path)
    return str(path)
