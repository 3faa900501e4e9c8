"""docker-compose.yml stays valid and runs commands that exist."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest
import yaml

from orchestration.cli import build_parser
from orchestration.settings import REPO_ROOT, SANDBOX_PORTS

COMPOSE = REPO_ROOT / "docker-compose.yml"


def _services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_omni_commands_in_compose_parse() -> None:
    parser = build_parser()
    commands = [
        service["command"]
        for service in _services().values()
        if "omni" in service.get("command", "")
    ]
    assert commands
    for command in commands:
        for part in command.replace(";", "\n").replace('"', "").splitlines():
            words = shlex.split(part.strip())
            if "omni" in words:
                parser.parse_args(words[words.index("omni") + 1 :])


def test_airflow_services_mirror_the_local_setup() -> None:
    services = _services()
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        for system, port in SANDBOX_PORTS.items():
            assert env[f"OMNI_{system.upper()}_URL"].endswith(f"sandbox:{port}}}"), system
    assert services["sandbox"]["environment"]["OMNI_SANDBOX_LISTEN_HOST"] == "0.0.0.0"
    first, last = min(SANDBOX_PORTS.values()), max(SANDBOX_PORTS.values())
    assert services["sandbox"]["ports"] == [f"{first}-{last}:{first}-{last}"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_validates() -> None:
    env = {**os.environ, "POSTGRES_PASSWORD": "only-for-validation"}
    subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "--quiet"], check=True, env=env)
