"""The sandbox inbox shows what a recipient of each accepted email would see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from orchestration import settings
from orchestration.sandbox import services
from orchestration.sandbox.services.inbox import messages, write_inbox
from orchestration.settings import SANDBOX_TOKENS

HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKENS['sendgrid']}"}


@pytest.fixture
def sendgrid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))  # the configured world: a journal is kept
    with services.running(tmp_path / "world", names=("sendgrid",)) as urls:
        yield urls["sendgrid"]


def test_each_recipient_gets_a_page_with_its_substitutions(sendgrid: str) -> None:
    body = {
        "from": {"email": "hola@omni.example", "name": "Omni"},
        "subject": "default",
        "content": [{"type": "text/html", "value": "<p>Hola -name-, tu código <b>-code-</b></p>"}],
        "categories": ["omni", "cart"],
        "asm": {"group_id": 1},
        "personalizations": [
            {
                "to": [{"email": "ana@example.com"}],
                "subject": "Ana, <tu cesta>",
                "substitutions": {"-name-": "Ana", "-code-": "CESTA-1"},
                "custom_args": {"dispatch_id": "d-ana", "campaign_id": "cart"},
            },
            {
                "to": [{"email": "luis@example.org"}],
                "substitutions": {"-name-": "Luis", "-code-": "CESTA-2"},
                "custom_args": {"dispatch_id": "d-luis", "campaign_id": "cart"},
            },
        ],
    }
    answer = requests.post(f"{sendgrid}/v3/mail/send", json=body, headers=HEADERS, timeout=10)
    assert answer.status_code == 202
    cfg = settings.load()
    assert len(messages(cfg)) == 1

    index = write_inbox(cfg)

    pages = sorted(path.name for path in index.parent.glob("d-*.html"))
    assert pages == ["d-ana-ana_example.com.html", "d-luis-luis_example.org.html"]
    ana = (index.parent / pages[0]).read_text()
    assert "Hola Ana, tu código &lt;b&gt;CESTA-1" in ana  # the body, escaped into srcdoc
    assert "Ana, &lt;tu cesta&gt;" in ana  # the personalization's subject, escaped
    assert "CESTA-2" not in ana and "-name-" not in ana
    luis = (index.parent / pages[1]).read_text()
    assert "Hola Luis" in luis and ">default<" in luis  # no own subject: the message's
    listing = index.read_text()
    assert "2 emails accepted" in listing and pages[0] in listing and pages[1] in listing


def test_an_empty_journal_gives_an_empty_inbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    index = write_inbox(settings.load())
    assert "0 emails accepted" in index.read_text()


def test_the_inbox_command_writes_the_pages(
    sendgrid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration import cli

    body = {
        "from": {"email": "hola@omni.example"},
        "subject": "Hola",
        "content": [{"type": "text/html", "value": "<p>Hola</p>"}],
        "personalizations": [{"to": [{"email": "ana@example.com"}]}],
    }
    answer = requests.post(f"{sendgrid}/v3/mail/send", json=body, headers=HEADERS, timeout=10)
    assert answer.status_code == 202
    assert cli.main(["sandbox", "inbox"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("file://") and printed.endswith("inbox/index.html")
    index = Path(printed.removeprefix("file://"))
    assert "ana@example.com" in index.read_text(encoding="utf-8")
