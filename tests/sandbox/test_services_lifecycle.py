"""``omni sandbox up`` / ``down``: one real background process on temporary ports."""

from __future__ import annotations

import socket
from datetime import date
from pathlib import Path

import pytest
import requests

from orchestration import settings
from orchestration.sandbox import services

NAMES = tuple(services.SERVICES)  # every registered service, each on a free port


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> settings.Settings:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path / "omni"))
    for name in NAMES:
        monkeypatch.setenv(f"OMNI_{name.upper()}_URL", f"http://127.0.0.1:{free_port()}")
    return settings.load()


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_without_a_world_says_how_to_make_one(cfg: settings.Settings) -> None:
    with pytest.raises(FileNotFoundError, match="omni sandbox generate"):
        services.up(cfg)
    assert services.down(cfg) == {"status": "not running"}


def test_up_down_run_one_background_process(cfg: settings.Settings) -> None:
    from orchestration.sandbox import world

    world.generate(cfg.world_dir, 300, 7, 1, end_date=date(2026, 11, 1))
    started = services.up(cfg)
    try:
        pid = started["pid"]
        assert started["status"] == "started"
        assert started["urls"] == {name: cfg.base_urls[name] for name in NAMES}
        assert (cfg.sandbox_dir / "services.pid").read_text().strip() == str(pid)
        for name, url in started["urls"].items():
            health = requests.get(f"{url}/_sandbox/health", timeout=10).json()
            assert health["service"] == name
        assert services.up(cfg)["status"] == "already running"
        assert services.up(cfg)["pid"] == pid

        world.advance(cfg.world_dir, 1)
        services.reload_if_running(cfg)
        health = requests.get(f"{cfg.base_urls['pos']}/_sandbox/health", timeout=10).json()
        assert health["world"]["parts"] == 2
    finally:
        stopped = services.down(cfg)
    assert stopped == {"status": "stopped", "pid": pid}
    assert not _pid_alive(pid)
    assert not (cfg.sandbox_dir / "services.pid").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{cfg.base_urls['shop']}/_sandbox/health", timeout=2)
    assert services.down(cfg) == {"status": "not running"}
    services.reload_if_running(cfg)  # nothing running: a no-op
    assert "serving" in (cfg.sandbox_dir / "services.log").read_text()


def test_up_fails_clearly_when_a_port_is_taken(cfg: settings.Settings) -> None:
    from orchestration.sandbox import world

    world.generate(cfg.world_dir, 300, 3, 2, end_date=date(2026, 11, 1))
    port = int(cfg.base_urls["social"].rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(RuntimeError, match="exited during start-up"):
            services.up(cfg)
    assert not (cfg.sandbox_dir / "services.pid").exists()
