"""Campaign files check: every broken campaign file, as this file's one Airflow import error.

This file defines no DAG. When a campaign file in ``campaigns/`` is broken, importing it
raises one error listing every problem (file, line, field, what is allowed), which Airflow
shows among the DAG import errors; the broken campaign has no ``campaign_<id>`` DAG and every
other campaign keeps its own. When all files are valid, it does nothing.
"""

from orchestration import settings
from orchestration.campaign_dags import raise_for_broken_files

raise_for_broken_files(settings.load().campaigns_dir)
