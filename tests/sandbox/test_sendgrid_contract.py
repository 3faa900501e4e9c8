"""SendGrid's v3 Mail Send contract, rule by rule, in the validator the sandbox service uses.

Each case breaks one documented rule of a request that is valid as it is (the shape our email
sender builds) and expects exactly the errors of that rule: a rule that is removed or loosened
fails its case; a rule that grows too strict fails the valid base or a boundary case.
Sources: SendGrid's Mail Send errors and limitations pages (docs/sandbox-api.md lists them).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from orchestration.sandbox.services.sendgrid import validate

NOW = time.time()
GROUPS = frozenset({7})


def valid() -> dict[str, Any]:
    """A request as the email sender makes it: per-personalization subject, custom args,
    send_at and unsubscribe headers; text then HTML; unique categories; a known ASM group."""
    return {
        "from": {"email": "ofertas@omni-moda.example", "name": "Omni Moda"},
        "subject": "Tu cesta te espera",
        "personalizations": [
            {
                "to": [{"email": f"cliente{n}@example.com"}],
                "subject": "Tu cesta te espera",
                "custom_args": {"dispatch_id": f"d{n}", "campaign_id": "c", "customer_id": "1"},
                "headers": {"List-Unsubscribe": "<mailto:baja@omni-moda.example>"},
                "send_at": int(NOW) + 3600,
            }
            for n in range(2)
        ],
        "content": [
            {"type": "text/plain", "value": "Hola"},
            {"type": "text/html", "value": "<p>Hola</p>"},
        ],
        "categories": ["omni", "abandoned_cart_nearby_store", "abandoned_cart_nearby_stock"],
        "asm": {"group_id": 7},
    }


Change = Callable[[dict[str, Any]], None]


def person(body: dict[str, Any], index: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = body["personalizations"][index]
    return found


def recipients(count: int) -> list[dict[str, str]]:
    return [{"email": f"r{n}@example.com"} for n in range(count)]


# (what is broken, the change, the fields of the errors expected)
BROKEN: list[tuple[str, Change, set[str]]] = [
    ("no sender", lambda b: b.pop("from"), {"from.email"}),
    ("a bad sender", lambda b: b.update({"from": {"email": "nope"}}), {"from.email"}),
    (
        "a non-ASCII sender address",
        lambda b: b.update({"from": {"email": "josé@omni-moda.example"}}),
        {"from.email"},
    ),
    ("a bad reply-to", lambda b: b.update({"reply_to": {"email": "x"}}), {"reply_to.email"}),
    ("no personalizations", lambda b: b.pop("personalizations"), {"personalizations"}),
    ("zero personalizations", lambda b: b.update(personalizations=[]), {"personalizations"}),
    (
        "1,001 personalizations",
        lambda b: b.update(
            personalizations=[{"to": [r], "subject": "s"} for r in recipients(1001)]
        ),
        {"personalizations"},
    ),
    (
        "1,002 recipients in 2 personalizations",
        lambda b: b.update(
            personalizations=[
                {"to": recipients(1)[:1], "bcc": recipients(501)[1:], "subject": "s"},
                {"to": [{"email": "x@example.com"}], "cc": recipients(501)[1:], "subject": "s"},
            ]
        ),
        {"personalizations"},
    ),
    (
        "a personalization that is no object",
        lambda b: b.update(personalizations=["x"]),
        {"personalizations.0"},
    ),
    ("no to", lambda b: person(b).pop("to"), {"personalizations.0.to"}),
    ("an empty to", lambda b: person(b).update(to=[]), {"personalizations.0.to"}),
    (
        "a bad to address",
        lambda b: person(b).update(to=[{"email": "ana@@example"}]),
        {"personalizations.0.to.0.email"},
    ),
    (
        "a recipient name with a comma",
        lambda b: person(b)["to"][0].update(name="García, Ana"),
        {"personalizations.0.to.0.name"},
    ),
    ("an empty cc", lambda b: person(b).update(cc=[]), {"personalizations.0.cc"}),
    (
        "a bad bcc address",
        lambda b: person(b).update(bcc=[{"email": "b c@x.com"}]),
        {"personalizations.0.bcc.0.email"},
    ),
    (
        "the same address twice in one personalization",
        lambda b: person(b).update(cc=[{"email": "CLIENTE0@example.com"}]),
        {"personalizations.0"},
    ),
    ("no subject anywhere", lambda b: [b.pop("subject"), person(b).pop("subject")], {"subject"}),
    ("an empty subject", lambda b: b.update(subject=" "), {"subject"}),
    (
        "an empty personalization subject",
        lambda b: person(b).update(subject=""),
        {"personalizations.0.subject"},
    ),
    ("a template_id that is no string", lambda b: b.update(template_id=5), {"template_id"}),
    ("no content", lambda b: b.pop("content"), {"content"}),
    ("an empty content", lambda b: b.update(content=[]), {"content"}),
    ("a content block without type", lambda b: b["content"][1].pop("type"), {"content.1.type"}),
    (
        "a content type with ';'",
        lambda b: b["content"][1].update(type="text/html; charset=utf-8"),
        {"content.1.type"},
    ),
    ("an empty content value", lambda b: b["content"][0].update(value=""), {"content.0.value"}),
    ("HTML before text", lambda b: b["content"].reverse(), {"content"}),
    (
        "text/plain twice",
        lambda b: b["content"].insert(1, {"type": "text/plain", "value": "x"}),
        {"content"},
    ),
    (
        "a custom arg that is no string",
        lambda b: person(b)["custom_args"].update(customer_id=1),
        {"personalizations.0.custom_args"},
    ),
    (
        "custom args of 10,000 bytes",
        lambda b: person(b)["custom_args"].update(big="x" * 9_935),  # exactly 10,000 bytes
        {"personalizations.0.custom_args"},
    ),
    (
        "request custom args that make an email's 10,000 bytes",
        lambda b: b.update(custom_args={"big": "x" * 9_950}),  # 9,960 alone, 10,015 merged
        {"personalizations.0.custom_args", "personalizations.1.custom_args"},
    ),
    ("a send_at that is no unix time", lambda b: b.update(send_at="tomorrow"), {"send_at"}),
    (
        "a send_at more than 72 h ahead",
        lambda b: person(b).update(send_at=int(NOW) + 72 * 3600 + 60),
        {"personalizations.0.send_at"},
    ),
    (
        "a category twice (campaign id == trigger type)",
        lambda b: b.update(
            categories=["omni", "post_purchase_follow_up", "post_purchase_follow_up"]
        ),
        {"categories"},
    ),
    ("11 categories", lambda b: b.update(categories=[f"c{n}" for n in range(11)]), {"categories"}),
    ("a category of 256 characters", lambda b: b.update(categories=["x" * 256]), {"categories"}),
    ("an empty category", lambda b: b.update(categories=[""]), {"categories"}),
    (
        "an ASM group that is no integer",
        lambda b: b.update(asm={"group_id": "7"}),
        {"asm.group_id"},
    ),
    ("an ASM group the account lacks", lambda b: b.update(asm={"group_id": 8}), {"asm.group_id"}),
    (
        "26 groups to display",
        lambda b: b["asm"].update(groups_to_display=[7] * 26),
        {"asm.groups_to_display"},
    ),
    (
        "a group to display the account lacks",
        lambda b: b["asm"].update(groups_to_display=[7, 9]),
        {"asm.groups_to_display"},
    ),
    ("a reserved header", lambda b: b.update(headers={"Subject": "x"}), {"headers.Subject"}),
    (
        "a reserved personalization header",
        lambda b: person(b)["headers"].update(To="x"),
        {"personalizations.0.headers.To"},
    ),
    ("a header that is no string", lambda b: b.update(headers={"X-A": 1}), {"headers"}),
]


def test_the_valid_base_is_valid() -> None:
    assert validate(valid(), NOW, GROUPS) == []


@pytest.mark.parametrize(("broken", "change", "fields"), BROKEN, ids=[c[0] for c in BROKEN])
def test_each_rule_rejects_what_it_must(broken: str, change: Change, fields: set[str]) -> None:
    body = valid()
    change(body)
    errors = validate(body, NOW, GROUPS)
    assert {error["field"] for error in errors} == fields, errors
    for error in errors:
        assert set(error) == {"message", "field", "help"}
        assert error["message"] and error["help"].startswith("http")


# (what is at its limit, the change): each is still valid
LIMITS: list[tuple[str, Change]] = [
    (
        "1,000 personalizations",
        lambda b: b.update(
            personalizations=[{"to": [r], "subject": "s"} for r in recipients(1000)]
        ),
    ),
    (
        "1,000 recipients in 2 personalizations",
        lambda b: b.update(
            personalizations=[
                {"to": recipients(1), "bcc": recipients(500)[1:], "subject": "s"},
                {"to": [{"email": "x@example.com"}], "cc": recipients(500)[1:], "subject": "s"},
            ]
        ),
    ),
    ("the same address in two personalizations", lambda b: person(b, 1).update(to=person(b)["to"])),
    (
        "custom args of 9,999 bytes",
        lambda b: person(b)["custom_args"].update(big="x" * 9_934),
    ),
    ("send_at exactly 72 h ahead", lambda b: person(b).update(send_at=int(NOW) + 72 * 3600)),
    (
        "10 categories of 255 characters",
        lambda b: b.update(categories=[f"{n}" * 255 for n in range(10)]),
    ),
    ("only HTML", lambda b: b.update(content=[{"type": "text/html", "value": "<p>x</p>"}])),
    (
        "text, HTML, then another type",
        lambda b: b["content"].append({"type": "text/calendar", "value": "x"}),
    ),
    (
        "a template instead of subject and content",
        lambda b: [
            b.pop("subject"),
            b.pop("content"),
            [item.pop("subject") for item in b["personalizations"]],
            b.update(template_id="d-1"),
        ],
    ),
    ("no ASM, no categories", lambda b: [b.pop("asm"), b.pop("categories")]),
]


@pytest.mark.parametrize(("limit", "change"), LIMITS, ids=[c[0] for c in LIMITS])
def test_what_is_at_a_limit_is_still_valid(limit: str, change: Change) -> None:
    body = valid()
    change(body)
    assert validate(body, NOW, GROUPS) == []


def test_without_known_groups_any_integer_group_is_accepted() -> None:
    body = valid()
    body["asm"] = {"group_id": 12345}
    assert validate(body, NOW, None) == []
    assert validate(copy.deepcopy(body), NOW, GROUPS)[0]["field"] == "asm.group_id"
