"""The environment every local Airflow command gets (demo, `make airflow`, the e2e test)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration import airflow_local, settings


def test_airflow_commands_find_airflow_and_our_dags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as when make runs .venv/bin/omni directly
    cfg = settings.load()
    env = airflow_local.environ(cfg)
    first_on_path = Path(env["PATH"].split(os.pathsep)[0])
    assert (first_on_path / "airflow").exists()  # `airflow standalone` starts `airflow` by name
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(cfg.dags_dir)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False"
