"""`python -m orchestration.campaigns`: validate exits non-zero on any error; preview renders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestration.campaigns.__main__ import main


def test_validate_exit_codes(
    shipped_copy: Path, variant: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--dir", str(shipped_copy), "validate"]) == 0
    assert "5 valid campaign(s)" in capsys.readouterr().out
    variant("broken", ("status: active", "status: live"))
    assert main(["--dir", str(shipped_copy), "validate"]) == 1
    err = capsys.readouterr().err
    assert "broken.yml:" in err and "status: 'live' is not one of the allowed values" in err


def test_preview_writes_every_channel(shipped_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    code = main(
        ["--dir", str(shipped_copy), "preview", "abandoned_cart_nearby_store", "--out", str(out)]
    )
    assert code == 0
    assert sorted(path.name for path in out.iterdir()) == [
        "cashback_line.txt",
        "email.html",
        "email.txt",
        "staff_card.txt",
    ]


def test_preview_of_unknown_campaign_fails(shipped_copy: Path) -> None:
    assert main(["--dir", str(shipped_copy), "preview", "nope"]) == 1
