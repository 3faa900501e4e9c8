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
