"""Test session setup: Airflow and OMNI_HOME point into a throwaway folder, never ~/airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="omni-tests-"))
os.environ.setdefault("OMNI_HOME", str(_SESSION_HOME / "omni"))
# pytensor's compiled C code (the predictions model) outlives the session: the first fit in an
# empty cache compiles for minutes; the checkout's git-ignored .omni/ keeps it between runs.
os.environ.setdefault(
    "OMNI_COMPILE_CACHE", str(Path(__file__).resolve().parents[1] / ".omni" / "pytensor")
)
os.environ.setdefault("AIRFLOW_HOME", str(_SESSION_HOME / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_CACHE", "False")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
