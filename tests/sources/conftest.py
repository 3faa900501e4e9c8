"""A small seeded world served by in-process sandbox services on free ports.

The world and the services are shared by the module (generation is the slow part); every
test gets its own ``OMNI_HOME`` (a fresh warehouse and fresh dlt state) with the source
URLs pointing at the running services, and finds the services without faults and with
zeroed request counters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sources_probe import api_counts, generate_world, point_at, reset

from orchestration.settings import Settings

NAMES = ("shop", "pos", "social")


@pytest.fixture(scope="package")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_world(tmp_path_factory.mktemp("sources") / "world", 1000, 30, 11)


@pytest.fixture(scope="package")
def urls(world_dir: Path) -> Iterator[dict[str, str]]:
    from orchestration.sandbox import services

    with services.running(world_dir, names=NAMES) as running:
        yield dict(running)


@pytest.fixture(scope="package")
def expected(urls: dict[str, str]) -> dict[str, Counter[str]]:
    """Rows per raw table a full load of each source must produce (read with plain requests)."""
    return {source: api_counts(source, urls[source]) for source in NAMES}


@pytest.fixture
def cfg(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    urls: dict[str, str],
    expected: dict[str, Counter[str]],
) -> Iterator[Settings]:
    for url in urls.values():
        reset(url)
    yield point_at(monkeypatch, tmp_path / "omni", urls)
    for url in urls.values():
        requests.delete(f"{url}/_sandbox/faults", timeout=10).raise_for_status()
