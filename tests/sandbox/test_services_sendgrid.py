"""The sandbox SendGrid through real HTTP: the SDK sends, validation errors, events, faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Asm,
    Category,
    CustomArg,
    Header,
    Mail,
    Personalization,
    SendAt,
    To,
)

from orchestration.sandbox import services
from orchestration.settings import SANDBOX_TOKENS

KEY = SANDBOX_TOKENS["sendgrid"]
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def sendgrid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    monkeypatch.setenv("OMNI_SENDGRID_ASM_GROUP_ID", "42")  # the account's unsubscribe group
    with services.running(tmp_path / "world", names=("sendgrid",)) as urls:
        yield urls["sendgrid"]


def payload(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": {"email": "shop@example.com", "name": "Shop"},
        "subject": "Your cart misses you",
        "content": [{"type": "text/html", "value": "<p>Hi</p>"}],
        "personalizations": [
            {"to": [{"email": "ana@example.com"}], "custom_args": {"dispatch_id": "d-1"}}
        ],
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


def post(base: str, body: dict[str, Any], headers: dict[str, str] = HEADERS) -> requests.Response:
    return requests.post(f"{base}/v3/mail/send", json=body, headers=headers, timeout=10)


def test_sdk_send_is_accepted_stored_and_produces_unique_events(sendgrid: str) -> None:
    client = SendGridAPIClient(KEY, host=sendgrid)
    mail = Mail(
        from_email="shop@example.com",
        subject="One offer for you",
        html_content="<p>5 EUR off</p>",
    )
    emails = ["ana@example.com", "bounce.me@example.com", "luis@example.org"]
    for number, email in enumerate(emails):
        person = Personalization()
        person.add_to(To(email))
        person.add_custom_arg(CustomArg("dispatch_id", f"sdk-{number}"))
        person.add_custom_arg(CustomArg("campaign_id", "cart_recovery"))
        mail.add_personalization(person)
    mail.category = Category("cart_recovery")
    mail.asm = Asm(42)
    mail.send_at = SendAt(int(time.time()) + 3600)
    mail.header = Header("List-Unsubscribe", "<mailto:unsub@example.com>")
    answer = client.send(mail)
    assert answer.status_code == 202
    message_id = answer.headers["X-Message-Id"]
    assert message_id

    found = requests.get(f"{sendgrid}/_sandbox/messages", params={"dispatch_id": "sdk-1"}).json()
    assert found["count"] == 1
    message = found["messages"][0]
    assert message["message_id"] == message_id
    assert [r["email"] for r in message["matching_recipients"]] == ["bounce.me@example.com"]
    assert message["request"]["asm"] == {"group_id": 42}
    assert message["request"]["headers"] == {"List-Unsubscribe": "<mailto:unsub@example.com>"}
    assert len(message["recipients"]) == 3

    events = requests.get(f"{sendgrid}/_sandbox/events").json()["events"]
    assert len({event["sg_event_id"] for event in events}) == len(events)
    by_email: dict[str, set[str]] = {}
    for event in events:
        assert event["sg_message_id"].startswith(message_id)
        assert event["campaign_id"] == "cart_recovery"
        assert event["category"] == ["cart_recovery"]
        by_email.setdefault(event["email"], set()).add(event["event"])
    assert by_email["bounce.me@example.com"] == {"processed", "bounce"}
    assert {"processed", "delivered"} <= by_email["ana@example.com"]
    assert "bounce" not in by_email["ana@example.com"]
    assert [e["dispatch_id"] for e in events if e["email"] == "luis@example.org"][0] == "sdk-2"


def test_events_are_seeded_and_cover_every_kind(sendgrid: str) -> None:
    people = [
        {"to": [{"email": f"p{n}@example.com"}], "custom_args": {"dispatch_id": f"e-{n}"}}
        for n in range(400)
    ] + [{"to": [{"email": "unsub.x@example.com"}]}, {"to": [{"email": "spam.y@example.com"}]}]
    assert post(sendgrid, payload(personalizations=people)).status_code == 202
    first = requests.get(f"{sendgrid}/_sandbox/events").json()["events"]
    kinds = {event["event"] for event in first}
    assert {"processed", "delivered", "open", "click", "bounce"} <= kinds
    assert {"unsubscribe", "spamreport"} <= kinds
    delivered = sum(event["event"] == "delivered" for event in first)
    assert delivered > 0.9 * 402  # most are delivered
    assert post(sendgrid, payload(personalizations=people)).status_code == 202
    events = requests.get(f"{sendgrid}/_sandbox/events", params={"after": len(first)}).json()
    again = events["events"]
    assert events["next_after"] == 2 * len(first)
    outcome = sorted((e["email"], e["event"]) for e in first)
    assert sorted((e["email"], e["event"]) for e in again) == outcome  # same seed, same fate
    bounces = requests.get(f"{sendgrid}/_sandbox/events", params={"event": "bounce"}).json()
    assert {e["event"] for e in bounces["events"]} == {"bounce"}
    later = requests.get(f"{sendgrid}/_sandbox/events", params={"since": int(time.time()) + 7200})
    assert all(event["timestamp"] >= int(time.time()) + 7000 for event in later.json()["events"])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"from": None}, "from.email"),
        ({"from": {"email": "not an address"}}, "from.email"),
        ({"personalizations": None}, "personalizations"),
        ({"personalizations": []}, "personalizations"),
        (
            {"personalizations": [{"to": [{"email": f"a{n}@x.com"}]} for n in range(1001)]},
            "personalizations",
        ),
        (
            {"personalizations": [{"to": [{"email": "ana@@example"}]}]},
            "personalizations.0.to.0.email",
        ),
        (
            {"personalizations": [{"to": [{"email": "a@x.com"}], "cc": [{"email": "b c@x.com"}]}]},
            "personalizations.0.cc.0.email",
        ),
        (
            {"personalizations": [{"to": [{"email": "a@x.com"}], "bcc": [{"email": "nobody"}]}]},
            "personalizations.0.bcc.0.email",
        ),
        ({"subject": None}, "subject"),
        ({"content": None}, "content"),
        ({"send_at": "tomorrow"}, "send_at"),
        ({"asm": {"group_id": "unsub"}}, "asm.group_id"),
        ({"asm": {"group_id": 41}}, "asm.group_id"),  # not one of the account's groups
        ({"categories": ["omni", "win_back", "win_back"]}, "categories"),
    ],
)
def test_invalid_payloads_get_sendgrid_style_400(
    sendgrid: str, changes: dict[str, Any], field: str
) -> None:
    answer = post(sendgrid, payload(**changes))
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert field in [error["field"] for error in errors]
    for error in errors:
        assert set(error) == {"message", "field", "help"} and error["message"]
    assert requests.get(f"{sendgrid}/_sandbox/messages").json()["count"] == 0


def test_template_needs_neither_subject_nor_content(sendgrid: str) -> None:
    answer = post(sendgrid, payload(subject=None, content=None, template_id="d-123"))
    assert answer.status_code == 202


def test_sdk_surfaces_the_error_text(sendgrid: str) -> None:
    client = SendGridAPIClient(KEY, host=sendgrid)
    with pytest.raises(HTTPError) as raised:
        client.send(payload(personalizations=[]))
    assert raised.value.status_code == 400
    assert "personalizations" in raised.value.body.decode()


def test_rate_limit_and_injected_faults(sendgrid: str) -> None:
    faults = f"{sendgrid}/_sandbox/faults"
    requests.post(faults, json={"rate_limit_per_second": 0.5}, timeout=10).raise_for_status()
    assert post(sendgrid, payload()).status_code == 202
    limited = post(sendgrid, payload())
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert int(limited.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert limited.json()["errors"][0]["message"] == "too many requests"
    requests.post(faults, json={"rate_limit_per_second": 0, "error_rate": 1.0, "error_status": 503})
    assert post(sendgrid, payload()).status_code == 503
    requests.delete(faults, timeout=10)
    assert post(sendgrid, payload()).status_code == 202
    assert requests.get(f"{sendgrid}/_sandbox/messages").json()["count"] == 2


def test_auth_is_required(sendgrid: str) -> None:
    assert post(sendgrid, payload(), headers={}).status_code == 401
    wrong = post(sendgrid, payload(), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "errors" in wrong.json()


def test_messages_survive_a_restart_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    world_dir = tmp_path / "world"
    with services.running(world_dir, names=("sendgrid",)) as urls:
        assert post(urls["sendgrid"], payload()).status_code == 202
    assert (tmp_path / "sandbox" / "sendgrid_messages.jsonl").exists()
    with services.running(world_dir, names=("sendgrid",)) as urls:
        base = urls["sendgrid"]
        found = requests.get(f"{base}/_sandbox/messages", params={"dispatch_id": "d-1"}).json()
        assert found["count"] == 1
        assert requests.get(f"{base}/_sandbox/events").json()["count"] >= 2
        requests.delete(f"{base}/_sandbox/state", timeout=10).raise_for_status()
        assert requests.get(f"{base}/_sandbox/messages").json()["count"] == 0


def test_sendgrid_sandbox_mode_validates_but_keeps_nothing(sendgrid: str) -> None:
    body = payload(mail_settings={"sandbox_mode": {"enable": True}})
    assert post(sendgrid, body).status_code == 200
    assert post(sendgrid, {**body, "from": {}}).status_code == 400
    assert requests.get(f"{sendgrid}/_sandbox/messages").json()["count"] == 0


def test_every_request_body_is_remembered_with_its_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    world_dir = tmp_path / "world"  # the configured world: journals in OMNI_HOME/sandbox
    with services.running(world_dir, names=("sendgrid",)) as urls:
        base = urls["sendgrid"]
        assert post(base, payload()).status_code == 202
        assert post(base, payload(subject=None)).status_code == 400
        broken = requests.post(
            f"{base}/v3/mail/send", data=b"{not json", headers=HEADERS, timeout=10
        )
        assert broken.status_code == 400
        assert post(base, payload(), headers={}).status_code == 401  # never reached the handler
        received = requests.get(f"{base}/_sandbox/requests", timeout=10).json()
    assert received["count"] == 3
    assert [item["status"] for item in received["requests"]] == [202, 400, 400]
    assert received["requests"][0]["body"] == payload()
    assert received["requests"][2]["body"] == "{not json"
    with services.running(world_dir, names=("sendgrid",)) as urls:  # kept across a restart
        again = requests.get(f"{urls['sendgrid']}/_sandbox/requests", timeout=10).json()
        assert again["count"] == 3
        requests.delete(f"{urls['sendgrid']}/_sandbox/state", timeout=10).raise_for_status()
        assert requests.get(f"{urls['sendgrid']}/_sandbox/requests").json()["count"] == 0


def activity(base: str, query: str, **params: Any) -> requests.Response:
    return requests.get(
        f"{base}/v3/messages",
        params={"query": query, **params},
        headers=HEADERS,
        timeout=10,
    )


def test_email_activity_finds_a_message_by_its_custom_arg(sendgrid: str) -> None:
    people = [
        {"to": [{"email": f"p{n}@example.com"}], "custom_args": {"dispatch_id": f"a-{n}"}}
        for n in range(3)
    ]
    assert post(sendgrid, payload(personalizations=people)).status_code == 202
    found = activity(sendgrid, "unique_args['dispatch_id']=\"a-1\"")
    assert found.status_code == 200
    (message,) = found.json()["messages"]
    assert message["to_email"] == "p1@example.com"
    assert message["from_email"] == "shop@example.com"
    assert message["subject"] == "Your cart misses you"
    assert message["status"] in {"processed", "delivered"}  # as its events have happened
    assert set(message) == {
        "from_email", "msg_id", "subject", "to_email", "status", "opens_count",
        "clicks_count", "last_event_time",
    }  # fmt: skip
    stored = requests.get(f"{sendgrid}/_sandbox/messages", params={"dispatch_id": "a-1"}).json()
    assert message["msg_id"].split(".")[0] == stored["messages"][0]["message_id"]
    assert activity(sendgrid, "unique_args['dispatch_id']=\"nobody\"").json()["messages"] == []
    both = activity(
        sendgrid, "unique_args['dispatch_id']=\"a-0\" OR unique_args['dispatch_id']=\"a-2\""
    ).json()["messages"]
    assert sorted(item["to_email"] for item in both) == ["p0@example.com", "p2@example.com"]
    narrowed = activity(sendgrid, 'to_email="p2@example.com" AND status!="not_delivered"')
    assert [item["to_email"] for item in narrowed.json()["messages"]] == ["p2@example.com"]
    assert len(activity(sendgrid, "", limit=2).json()["messages"]) == 2
    time.sleep(2.1)  # the first delivered events (1-31 s after acceptance) have happened
    statuses = {item["status"] for item in activity(sendgrid, "", limit=10).json()["messages"]}
    assert statuses <= {"processed", "delivered", "not_delivered"}


@pytest.mark.parametrize(
    ("query", "params"),
    [
        ('bad_field="x"', {}),
        ("to_email=x", {}),
        ('to_email="a" AND subject="b" OR status="c"', {}),
        ("", {"limit": 0}),
        ("", {"limit": 1001}),
    ],
)
def test_email_activity_refuses_what_it_cannot_read(
    sendgrid: str, query: str, params: dict[str, Any]
) -> None:
    answer = activity(sendgrid, query, **params)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["message"]


def test_email_activity_needs_the_key(sendgrid: str) -> None:
    answer = requests.get(f"{sendgrid}/v3/messages", params={"query": ""}, timeout=10)
    assert answer.status_code == 401
