"""Fixtures for campaign tests: a private copy of the shipped campaigns to break on purpose."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestration.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "campaigns"
HEADLINE = "abandoned_cart_nearby_store"


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    """An empty campaigns folder with the shipped templates (template files resolve)."""
    directory = tmp_path / "campaigns"
    directory.mkdir()
    shutil.copytree(SHIPPED / "templates", directory / "templates")
    return directory


@pytest.fixture
def shipped_copy(campaign_dir: Path) -> Path:
    """A copy of every shipped campaign file, with templates."""
    for path in SHIPPED.glob("*.yml"):
        shutil.copy(path, campaign_dir / path.name)
    return campaign_dir


Variant = Callable[..., Path]


@pytest.fixture
def variant(campaign_dir: Path) -> Variant:
    """Write a copy of a shipped campaign under a new id with text replacements applied.

    Every replacement must match, so a test cannot pass because its mistake was never made.
    """

    def write(
        new_id: str, *replacements: tuple[str, str], source: str = HEADLINE, suffix: str = ".yml"
    ) -> Path:
        text = (SHIPPED / f"{source}.yml").read_text(encoding="utf-8")
        for old, new in replacements:
            assert old in text, f"{old!r} not in {source}.yml"
            text = text.replace(old, new, 1)
        text = text.replace(f"id: {source}\n", f"id: {new_id}\n", 1)
        # offer ids are unique across files: give each variant its own
        text = text.replace("\n  id: ", f"\n  id: {new_id}_", 1)
        path = campaign_dir / f"{new_id}{suffix}"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _line_of(path: Path, marker: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} not in {path}")


@pytest.fixture
def line_of() -> Callable[[Path, str], int]:
    """1-based number of the first line of a file containing a marker (expected error lines
    are read from the broken file, never typed into the test)."""
    return _line_of
