"""Starting and stopping the sandbox services.

``up`` runs every service in ONE detached background process (``python -m
orchestration.sandbox.services``) that shares one loaded world; ``down`` stops it by its pid
file; ``running`` serves in threads of the calling process on free ports, for tests.
Services listen on 127.0.0.1 only, on the ports of ``Settings.base_urls``; a service whose
URL is not on loopback (production points elsewhere) is not served.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestration import settings as settings_module
from orchestration.sandbox.services.base import SandboxServer, Service
from orchestration.sandbox.services.registry import SERVICES
from orchestration.sandbox.services.shop import RESOURCES as SHOP_RESOURCE_NAMES
from orchestration.sandbox.services.shop import SHOP_RESOURCES, write_bulk
from orchestration.sandbox.services.world_db import World, WorldNotFound

log = logging.getLogger(__name__)

LISTEN_HOST = "127.0.0.1"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MODULE = "orchestration.sandbox.services"
START_TIMEOUT_SECONDS = 600.0  # loading a 100,000-customer world takes a while


def local_urls(cfg: settings_module.Settings) -> dict[str, str]:
    """The registered services whose configured URL is on loopback (the ones we serve)."""
    urls = {}
    for name in SERVICES:
        url = cfg.base_urls.get(name)
        if url and urlsplit(url).hostname in LOOPBACK:
            urls[name] = url.rstrip("/")
    return urls


def _port(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"sandbox URL {url!r} has no port")
    return port


def build(world_dir: Path, names: Iterable[str], tokens: dict[str, str]) -> list[Service]:
    """Load the world once for the named services and create them (not yet serving)."""
    classes = [SERVICES[name] for name in names]
    world = World(world_dir, [resource for cls in classes for resource in cls.resources])
    world.load()
    return [cls(world, tokens[cls.name]) for cls in classes]


def _start(servers: Sequence[SandboxServer]) -> list[threading.Thread]:
    threads = []
    for server in servers:
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sandbox-{server.service.name}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads


def _stop(servers: Sequence[SandboxServer]) -> None:
    for server in servers:
        server.shutdown()
        server.server_close()
    if servers:
        servers[0].service.world.close()


@contextlib.contextmanager
def running(
    world_dir: Path, names: Sequence[str] = tuple(settings_module.SANDBOX_PORTS)
) -> Iterator[dict[str, str]]:
    """Serve the named services (default: all) in threads on free ports; yields
    ``{name: base_url}``."""
    services = build(Path(world_dir), names, settings_module.load().tokens)
    servers = [SandboxServer((LISTEN_HOST, 0), service) for service in services]
    _start(servers)
    try:
        yield {server.service.name: server.url for server in servers}
    finally:
        _stop(servers)


def serve(cfg: settings_module.Settings, world_dir: Path | None = None) -> None:
    """Serve every local service on its configured port until SIGTERM / Ctrl-C."""
    urls = local_urls(cfg)
    services = build(world_dir or cfg.world_dir, urls, cfg.tokens)
    host = cfg.sandbox_listen_host
    servers = [SandboxServer((host, _port(urls[s.name])), s) for s in services]
    _start(servers)
    log.info("serving %s", {server.service.name: server.url for server in servers})
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(servers)
        log.info("stopped")


# -- the background process ---------------------------------------------------------------
def _pid_file(cfg: settings_module.Settings) -> Path:
    return cfg.sandbox_dir / "services.pid"


def _read_pid(cfg: settings_module.Settings) -> int | None:
    try:
        return int(_pid_file(cfg).read_text().strip())
    except (OSError, ValueError):
        return None


def _is_ours(pid: int) -> bool:
    """The pid is alive (not a zombie) and runs the services module (pids get reused)."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that already exited
            return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    foreground = "sandbox up" in cmdline and "--foreground" in cmdline
    # Right after exec some kernels show an empty command line: trust the pid file then.
    return state != "Z" and (MODULE in cmdline or foreground or not cmdline.strip())


def _health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url}/_sandbox/health", timeout=timeout) as answer:
            payload = json.loads(answer.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return payload if isinstance(payload, dict) else None


def _all_healthy(urls: dict[str, str], world_dir: Path) -> bool:
    for name, url in urls.items():
        health = _health(url)
        if not health or health.get("service") != name:
            return False
        if health.get("world_dir") != str(world_dir):
            return False
    return True


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def up(cfg: settings_module.Settings, foreground: bool = False) -> dict[str, Any]:
    """Start the services (idempotent); returns the pid, base URLs and log path."""
    urls = local_urls(cfg)
    log_path = cfg.sandbox_dir / "services.log"
    if not (cfg.world_dir / "world.json").exists():
        raise WorldNotFound(f"no world at {cfg.world_dir}: run `omni sandbox generate` first")
    cfg.sandbox_dir.mkdir(parents=True, exist_ok=True)
    pid = _read_pid(cfg)
    if pid is not None and _is_ours(pid):
        _wait_healthy(cfg, lambda: _is_ours(pid), urls, log_path)
        return {"status": "already running", "pid": pid, "urls": urls, "log": str(log_path)}
    if foreground:
        _pid_file(cfg).write_text(str(os.getpid()))
        try:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
            serve(cfg)
        finally:
            _pid_file(cfg).unlink(missing_ok=True)
        return {"status": "stopped", "urls": urls}
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", MODULE, "--world", str(cfg.world_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(settings_module.REPO_ROOT),
        )
    _pid_file(cfg).write_text(str(process.pid))
    try:
        _wait_healthy(cfg, lambda: process.poll() is None, urls, log_path)
    except Exception:
        down(cfg)
        raise
    return {"status": "started", "pid": process.pid, "urls": urls, "log": str(log_path)}


def _wait_healthy(
    cfg: settings_module.Settings, alive: Callable[[], bool], urls: dict[str, str], log_path: Path
) -> None:
    """Wait until every service answers its health check for our world (or the process died)."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _all_healthy(urls, cfg.world_dir):
        if not alive():
            raise RuntimeError(
                f"sandbox services exited during start-up; {log_path} ends with:\n"
                + _log_tail(log_path)
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"sandbox services not healthy after {START_TIMEOUT_SECONDS}s")
        time.sleep(0.2)


def down(cfg: settings_module.Settings) -> dict[str, Any]:
    """Stop the background services (fine if they are not running)."""
    pid = _read_pid(cfg)
    pid_file = _pid_file(cfg)
    if pid is None or not _is_ours(pid):
        pid_file.unlink(missing_ok=True)
        return {"status": "not running"}
    if pid == os.getpid():
        return {"status": "running in the foreground here", "pid": pid}
    group = pid if os.getpgid(pid) == pid else None
    _signal(pid, group, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _is_ours(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _is_ours(pid):
        _signal(pid, group, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return {"status": "stopped", "pid": pid}


def _signal(pid: int, group: int | None, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group is not None:
            os.killpg(group, signum)
        else:
            os.kill(pid, signum)


def reload_if_running(cfg: settings_module.Settings) -> None:
    """Ask the running services to re-read the world (after ``world.advance``)."""
    pid = _read_pid(cfg)
    if pid is None or not _is_ours(pid):
        return
    for url in local_urls(cfg).values():
        request = urllib.request.Request(f"{url}/_sandbox/reload", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=START_TIMEOUT_SECONDS) as answer:
            answer.read()


def export_bulk(world_dir: Path) -> dict[str, Any]:
    """Write ``world/bulk/shop_<resource>.jsonl`` for every shop resource (no faults)."""
    world = World(Path(world_dir), SHOP_RESOURCES)
    world.load()
    try:
        exported = {}
        for resource in SHOP_RESOURCE_NAMES:
            path, count = write_bulk(world, resource)
            exported[resource] = {"path": str(path), "object_count": count}
        return exported
    finally:
        world.close()
