"""Airflow on this machine: the embedded setup (SQLite metadata, the DAGs in ``dags/``).

``omni demo`` runs the DAGs through ``airflow dags test``; ``omni airflow`` serves the UI with
``airflow standalone``. Both first prepare the metadata database, the ``warehouse`` pool and one
connection per outside system (pointing at the sandbox unless the environment says otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from orchestration import warehouse
from orchestration.connections import conn_id
from orchestration.settings import Settings

# Outside systems the DAGs reach through an Airflow connection.
SYSTEMS = ("shop", "pos", "social", "sendgrid", "loyalty", "store")


def environ(cfg: Settings) -> dict[str, str]:
    """Environment for every Airflow command started from here."""
    venv_bin = str(Path(sys.executable).parent)  # `airflow standalone` starts `airflow ...` by name
    return {
        **os.environ,
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
        "OMNI_HOME": str(cfg.omni_home),
        "AIRFLOW_HOME": str(cfg.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "180",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "60",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS": "False",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }


def _airflow(cfg: Settings, *args: str, check: bool = True, quiet: bool = True) -> int:
    executable = str(Path(sys.executable).with_name("airflow"))
    log = cfg.airflow_home / "omni-commands.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"\n$ airflow {' '.join(args)}\n")
        out.flush()
        result = subprocess.run(
            [executable, *args],
            env=environ(cfg),
            stdout=out if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
        )
    if check and result.returncode != 0:
        raise RuntimeError(f"`airflow {' '.join(args)}` failed ({result.returncode}); see {log}")
    return result.returncode


def init(cfg: Settings) -> None:
    """Metadata database, the one-slot warehouse pool, one pool per dispatch provider, and the
    connections to outside systems."""
    from orchestration.dispatch.pools import PROVIDER_POOLS

    cfg.airflow_home.mkdir(parents=True, exist_ok=True)
    warehouse.ensure_manifest(cfg)
    _airflow(cfg, "db", "migrate")
    _airflow(cfg, "pools", "set", warehouse.WAREHOUSE_POOL, "1", "DuckDB has one writer")
    for pool in PROVIDER_POOLS.values():
        _airflow(cfg, "pools", "set", pool.name, str(pool.slots), pool.description)
    for system in SYSTEMS:
        _airflow(cfg, "connections", "delete", conn_id(system), check=False)
        extra = json.dumps({"description": f"{system} API (sandbox by default)"})
        _airflow(
            cfg,
            "connections",
            "add",
            conn_id(system),
            "--conn-type",
            "http",
            "--conn-host",
            cfg.base_urls[system],
            "--conn-password",
            cfg.tokens[system],
            "--conn-extra",
            extra,
        )


def run_dag(cfg: Settings, dag_id: str) -> None:
    """Run one DAG to completion in this machine's Airflow (raises if the run failed)."""
    log = cfg.airflow_home / "omni-commands.log"
    print(f"  airflow dags test {dag_id} (log: {log})", flush=True)
    _airflow(cfg, "dags", "test", dag_id)


def standalone(cfg: Settings) -> int:
    """Serve the Airflow UI (standalone, SQLite) until Ctrl-C; stop every child on exit."""
    init(cfg)
    password_file = cfg.airflow_home / "simple_auth_manager_passwords.json.generated"
    print("Airflow UI: http://localhost:8080  (user: admin)")
    print(f"Password: in {password_file} once Airflow has started")
    executable = str(Path(sys.executable).with_name("airflow"))
    process = subprocess.Popen([executable, "standalone"], env=environ(cfg), start_new_session=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
