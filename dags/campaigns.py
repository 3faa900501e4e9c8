"""One Airflow DAG per campaign file: ``campaign_<id>``, generated from ``campaigns/``.

Each valid campaign file becomes a DAG scheduled on the warehouse asset: check the status,
check the audience with Great Expectations, hand the treated contacts to dispatch (see
:mod:`orchestration.campaign_dags`; each DAG's own doc shows its campaign). A broken file gets
no DAG here and is reported by ``campaign_files_check.py`` as that file's one import error.
Parsing reads the YAML files only: no database, no connection.
"""

from orchestration import settings
from orchestration.campaign_dags import campaign_dags

globals().update({dag.dag_id: dag for dag in campaign_dags(settings.load().campaigns_dir)})
