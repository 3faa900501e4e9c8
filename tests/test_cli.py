"""The `omni` command: errors are one readable line and a non-zero exit, not a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestration import cli
from orchestration.settings import REPO_ROOT


def test_ingest_reports_a_refused_token_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration.sandbox import services, world

    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    world.generate(tmp_path / "world", 50, 3, 1)
    with services.running(tmp_path / "world", names=("social",)) as urls:
        monkeypatch.setenv("OMNI_SOCIAL_URL", urls["social"])
        monkeypatch.setenv("OMNI_SOCIAL_TOKEN", "not-the-token")
        assert cli.main(["ingest", "social"]) == 1
    error = capsys.readouterr().err
    assert "ingest social failed" in error and "401" in error
    assert "not-the-token" not in error


def test_campaigns_validate_exits_1_on_a_broken_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    campaigns = tmp_path / "campaigns"
    shutil.copytree(REPO_ROOT / "campaigns", campaigns)
    monkeypatch.setenv("OMNI_CAMPAIGNS_DIR", str(campaigns))
    assert cli.main(["campaigns", "validate"]) == 0
    broken = campaigns / "win_back_recovery.yml"
    broken.write_text(broken.read_text().replace("status: active", "status: sometimes"))
    assert cli.main(["campaigns", "validate"]) == 1
    error = capsys.readouterr().err
    assert "win_back_recovery.yml" in error and "status" in error
