"""The sandbox inbox: every email the sandbox SendGrid accepted, as HTML pages to open.

A real SendGrid delivers to real inboxes; the sandbox keeps each accepted request in
``$OMNI_HOME/sandbox/sendgrid_messages.jsonl``. :func:`write_inbox` turns that journal into what
a recipient would see: one page per recipient (the personalization's subject, the HTML body
with its ``substitutions`` applied, as SendGrid does) behind a header showing the envelope
(from, to, send time, categories, custom args, unsubscribe group and headers), plus an
``index.html`` listing them. The body is shown in a sandboxed ``iframe`` (``srcdoc``), so its
own styles and links stay inside it.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration.settings import Settings

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def messages(cfg: Settings) -> list[dict[str, Any]]:
    """The accepted messages of the sandbox SendGrid (its journal), oldest first."""
    path = cfg.sandbox_dir / "sendgrid_messages.jsonl"
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue  # a torn last line: the service skips it too
    return found


def _content(request: dict[str, Any], kind: str) -> str | None:
    for part in request.get("content") or []:
        if part.get("type") == kind:
            return str(part.get("value", ""))
    return None


def _substituted(text: str, substitutions: dict[str, Any]) -> str:
    for key, value in substitutions.items():
        text = text.replace(str(key), str(value))
    return text


def _when(unix: Any) -> str:
    if unix in (None, ""):
        return "now"
    return datetime.fromtimestamp(int(unix), UTC).strftime("%Y-%m-%d %H:%M UTC")


def _page(message: dict[str, Any], personalization: dict[str, Any], email: str) -> str:
    request = message["request"]
    substitutions = personalization.get("substitutions") or {}
    subject = _substituted(
        str(personalization.get("subject") or request.get("subject") or ""), substitutions
    )
    body = _content(request, "text/html")
    if body is None:
        body = f"<pre>{html.escape(_content(request, 'text/plain') or '')}</pre>"
    body = _substituted(body, substitutions)
    sender = request.get("from") or {}
    custom_args = {
        **(request.get("custom_args") or {}),
        **(personalization.get("custom_args") or {}),
    }
    envelope = [
        ("From", f"{sender.get('name', '')} <{sender.get('email', '')}>"),
        ("To", email),
        ("Subject", subject),
        ("Send at", _when(personalization.get("send_at") or request.get("send_at"))),
        ("Accepted", _when(message.get("accepted_at"))),
        ("Message id", message.get("message_id", "")),
        ("Categories", ", ".join(request.get("categories") or [])),
        ("Unsubscribe group", str((request.get("asm") or {}).get("group_id", ""))),
        ("Headers", json.dumps(request.get("headers") or {}, ensure_ascii=False)),
        ("Custom args", json.dumps(custom_args, ensure_ascii=False)),
    ]
    rows = "\n".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"
        for name, value in envelope
    )
    return f"""<!doctype html>
<html lang="es"><head><meta charset="utf-8"><title>{html.escape(subject)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}
table{{border-collapse:collapse;margin-bottom:1rem;font-size:.9rem}}
th{{text-align:left;padding:.2rem .8rem .2rem 0;color:#555;vertical-align:top}}
iframe{{width:100%;height:70vh;border:1px solid #ccc}}</style></head>
<body><p><a href="index.html">&larr; sandbox inbox</a></p>
<table>{rows}</table>
<iframe sandbox title="message body" srcdoc="{html.escape(body, quote=True)}"></iframe>
</body></html>
"""


def write_inbox(cfg: Settings, directory: Path | None = None) -> Path:
    """Write one page per accepted recipient and an ``index.html``; return the index path.

    Rewrites the folder's pages from the journal each time (idempotent).
    """
    target = directory or cfg.sandbox_dir / "inbox"
    target.mkdir(parents=True, exist_ok=True)
    entries = []
    for message in messages(cfg):
        request = message.get("request") or {}
        for number, personalization in enumerate(request.get("personalizations") or []):
            for recipient in personalization.get("to") or []:
                email = str(recipient.get("email", ""))
                args = {
                    **(request.get("custom_args") or {}),
                    **(personalization.get("custom_args") or {}),
                }
                key = args.get("dispatch_id") or f"{message['message_id']}-{number}"
                name = _UNSAFE.sub("_", f"{key}-{email}")[:150] + ".html"
                (target / name).write_text(_page(message, personalization, email), "utf-8")
                subject = _substituted(
                    str(personalization.get("subject") or request.get("subject") or ""),
                    personalization.get("substitutions") or {},
                )
                entries.append((message.get("accepted_at", 0), name, email, subject, args))
    rows = "\n".join(
        f"<tr><td>{html.escape(_when(accepted))}</td><td>{html.escape(email)}</td>"
        f'<td><a href="{html.escape(name)}">{html.escape(subject)}</a></td>'
        f"<td>{html.escape(str(args.get('campaign_id', '')))}</td></tr>"
        for accepted, name, email, subject, args in sorted(entries, key=lambda e: e[:2])
    )
    index = target / "index.html"
    index.write_text(
        f"""<!doctype html>
<html lang="es"><head><meta charset="utf-8"><title>Sandbox inbox</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem}}td,th{{padding:.2rem .6rem;
text-align:left}}</style></head><body>
<h1>Sandbox inbox: {len(entries):,} emails accepted by the sandbox SendGrid</h1>
<table><tr><th>Accepted</th><th>To</th><th>Subject</th><th>Campaign</th></tr>
{rows}
</table></body></html>
""",
        "utf-8",
    )
    return index


__all__ = ["messages", "write_inbox"]
