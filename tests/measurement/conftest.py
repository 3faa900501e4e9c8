"""Fixtures of the measurement tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration import settings


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> settings.Settings:
    """Settings with a private, existing OMNI_HOME (no warehouse in it yet)."""
    monkeypatch.setenv("OMNI_HOME", str(tmp_path / "omni"))
    loaded = settings.load()
    loaded.omni_home.mkdir(parents=True)
    return loaded
