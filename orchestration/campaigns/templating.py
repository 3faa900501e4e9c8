"""Render a campaign for one customer, on every channel, from the one offer.

Marketer templates are Jinja, rendered in an immutable *sandboxed* environment
(``jinja2.sandbox``): a template cannot reach Python internals (``''.__class__`` raises
``SecurityError``) nor change the data it is given. HTML is autoescaped, the ``safe`` filter
is removed and ``{% autoescape false %}`` is refused, so customer data (a first name such as
``<script>``) can never become markup. ``StrictUndefined`` makes a misspelt variable an error
instead of an empty string; :func:`check_template` catches most of those (and syntax errors)
already when a campaign file is validated.

The offer is never typed into a template: every channel reads the same ``offer`` view
(id, code, label, expiry...) built here, so email, loyalty line and store card cannot disagree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound, meta, nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

if TYPE_CHECKING:
    from orchestration.campaigns.config import Campaign

# Variables every template can use.
COMMON_NAMES = frozenset({"customer", "offer", "campaign", "preheader", "store"})
# Variables the trigger rows provide (the contract with the trigger models / dispatch).
TRIGGER_NAMES: dict[str, frozenset[str]] = {
    "abandoned_cart_nearby_stock": frozenset({"cart", "cart_items"}),
    "post_purchase_follow_up": frozenset(
        {"order", "order_items", "survey_url", "matching_products", "newsletter_url"}
    ),
    "win_back": frozenset({"survey_url", "days_inactive"}),
    "loyalty_cashback_milestone": frozenset({"milestone"}),
    "second_purchase": frozenset({"first_order", "recommended_products"}),
}
# Fields whose text must show the offer (the subject and the staff note may not).
OFFER_BEARING_FIELDS = frozenset({"html_template", "text_template", "line"})
_TEMPLATE_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.(html|txt|j2|jinja)$")

STAFF_CARD = """\
OFERTA EN TIENDA · {{ campaign.name }}
Cliente: {{ customer.first_name }} {{ customer.last_name | default('') }} \
(n.º {{ customer.customer_id }})
{% if store is defined and store %}
Tienda: {{ store.name }}{% if store.city is defined %} ({{ store.city }}){% endif +%}
{% endif %}
Oferta: {{ offer.label }} · {{ offer.valid_in_label }} · \
válida hasta el {{ offer.valid_until_text }}
Referencia de la oferta: {{ offer.id }}{% if offer.code %} · código {{ offer.code }}{% endif +%}
{% if cart_items is defined and cart_items %}
En su cesta online:
{% for item in cart_items %}
  - {{ item.quantity }} × {{ item.title }}{% if item.sku is defined %} ({{ item.sku }}){% endif +%}
{% endfor %}
{% endif %}
Nota para el equipo: {{ staff_note }}
"""


@dataclass(frozen=True)
class TemplateIssue:
    """A problem found in a template before any rendering."""

    message: str
    line: int | None = None  # line inside the template (1-based)
    allowed: str | None = None
    file: str | None = None  # template file name when the template is a file


@dataclass(frozen=True)
class RenderedContact:
    """What one customer receives from one campaign, channel by channel (None: channel off)."""

    campaign_id: str
    offer_id: str
    offer_kind: str
    offer_code: str | None
    offer_label: str
    valid_until: date
    subject: str | None
    preheader: str | None
    html: str | None
    text: str | None
    cashback_line: str | None
    staff_card: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_files(self, directory: Path) -> list[Path]:
        """Write each rendered channel as a file (email.html, email.txt, ...) for a preview."""
        directory.mkdir(parents=True, exist_ok=True)
        outputs = {
            "email.html": self.html,
            "email.txt": None if self.text is None else f"Asunto: {self.subject}\n\n{self.text}",
            "cashback_line.txt": self.cashback_line,
            "staff_card.txt": self.staff_card,
        }
        written = []
        for name, content in outputs.items():
            if content is not None:
                path = directory / name
                path.write_text(content, encoding="utf-8")
                written.append(path)
        return written


# --- formatting (also exposed as filters) ---------------------------------------------------


def format_eur(amount: float) -> str:
    """Euros the Spanish way: ``1234.5`` -> ``1.234,50 €``."""
    return f"{format_number(amount, 2)} €"


def format_percent(value: float) -> str:
    """A percentage the Spanish way: ``12.5`` -> ``12,5 %``, ``10.0`` -> ``10 %``."""
    text = f"{float(value):.2f}".rstrip("0").rstrip(".").replace(".", ",")
    return f"{text} %"


def format_number(value: float, decimals: int = 0) -> str:
    """A number the Spanish way: ``2.35`` with 1 decimal -> ``2,4``; ``1500`` -> ``1.500``."""
    text = f"{float(value):,.{decimals}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def format_date(value: date) -> str:
    """``date(2026, 12, 1)`` -> ``01/12/2026``."""
    return value.strftime("%d/%m/%Y")


# --- the environment ------------------------------------------------------------------------


class _CampaignEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with autoescaping that a template cannot switch off."""

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all(nodes.EvalContextModifier):
            raise TemplateSyntaxError(
                "autoescape cannot be switched off in campaign templates",
                node.lineno,
                name,
                filename,
            )
        return tree


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


@functools.lru_cache(maxsize=16)
def environment(templates_dir: Path, html: bool) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment for HTML (autoescaped) or plain text, one per templates dir."""
    env = _CampaignEnvironment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_none_as_empty,
    )
    del env.filters["safe"]  # no way to mark customer data as markup
    env.filters["eur"] = format_eur
    env.filters["percent"] = format_percent
    env.filters["number"] = format_number
    env.filters["date_es"] = format_date
    return env


def is_template_file(source: str) -> bool:
    """A template value naming a file in campaigns/templates/ rather than inline Jinja."""
    return bool(_TEMPLATE_FILE.match(source)) and ".." not in source.split("/")


def context_names(trigger_type: str) -> frozenset[str]:
    """Top-level variables a template of this trigger type may use."""
    return COMMON_NAMES | TRIGGER_NAMES.get(trigger_type, frozenset())


def check_template(
    source: str,
    *,
    templates_dir: Path,
    html: bool,
    allowed_names: frozenset[str],
    must_show_offer: bool = False,
) -> list[TemplateIssue]:
    """Compile a template (inline or file) and check the variables it uses; no rendering."""
    env = environment(templates_dir, html)
    file_name = source if is_template_file(source) else None
    if file_name is not None:
        try:
            text, _, _ = env.loader.get_source(env, file_name)  # type: ignore[union-attr]
        except TemplateNotFound:
            return [
                TemplateIssue(
                    f"template file {file_name} not found",
                    allowed=f"a file in {templates_dir} ({_list_files(templates_dir)})",
                )
            ]
    else:
        text = source
    issues: list[TemplateIssue] = []
    used: set[str] = set()
    _check_tree(env, text, file_name, allowed_names, issues, used, seen=set())
    if must_show_offer and not issues and "offer" not in used:
        issues.append(
            TemplateIssue(
                "this template never shows the offer",
                allowed="{{ offer.label }}, and {{ offer.code }} when the offer has a code",
                file=file_name,
            )
        )
    return issues


def _check_tree(
    env: ImmutableSandboxedEnvironment,
    text: str,
    file_name: str | None,
    allowed_names: frozenset[str],
    issues: list[TemplateIssue],
    used: set[str],
    seen: set[str],
) -> None:
    """Compile ``text``, record unknown variables, then follow extends/include/import."""
    try:
        tree = env.parse(text)
        env.compile(tree)  # unknown filters and tests fail here
    except TemplateSyntaxError as error:
        if "filter" in str(error.message):
            allowed = "filters: " + ", ".join(sorted(env.filters))
        else:
            allowed = (
                "Jinja: {{ variable }}, {% if condition %}...{% endif %}, "
                "{% for item in list %}...{% endfor %}"
            )
        issues.append(
            TemplateIssue(
                f"template error: {error.message}",
                line=error.lineno,
                file=file_name,
                allowed=allowed,
            )
        )
        return
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            attribute: object = node.attr
        elif isinstance(node, nodes.Getitem):
            attribute = _constant(node.arg)
        else:
            continue
        if isinstance(attribute, str) and attribute.startswith("_"):
            issues.append(
                TemplateIssue(
                    f"'{attribute}' is private: templates cannot reach Python internals",
                    line=node.lineno,
                    file=file_name,
                    allowed="the fields of customer, offer, campaign and the trigger data",
                )
            )
            break  # one is enough: ''.__class__.__mro__ is one mistake, not two
    names = meta.find_undeclared_variables(tree)
    used.update(names)
    known = allowed_names | frozenset(env.globals)
    for name in sorted(names - known):
        line = next((node.lineno for node in tree.find_all(nodes.Name) if node.name == name), None)
        issues.append(
            TemplateIssue(
                f"unknown variable '{name}'",
                line=line,
                file=file_name,
                allowed=", ".join(sorted(allowed_names)),
            )
        )
    for referenced in meta.find_referenced_templates(tree):
        if referenced is None or referenced in seen:
            continue
        seen.add(referenced)
        try:
            child, _, _ = env.loader.get_source(env, referenced)  # type: ignore[union-attr]
        except TemplateNotFound:
            issues.append(
                TemplateIssue(
                    f"template file {referenced} not found",
                    file=file_name,
                    allowed=f"a file in campaigns/templates/ ({_list_files(env)})",
                )
            )
            continue
        _check_tree(env, child, referenced, allowed_names, issues, used, seen)


def _constant(node: nodes.Node) -> object:
    return node.value if isinstance(node, nodes.Const) else None


def _list_files(where: Path | ImmutableSandboxedEnvironment) -> str:
    if isinstance(where, Path):
        directory = where
    else:
        loader = where.loader
        assert isinstance(loader, FileSystemLoader)
        directory = Path(loader.searchpath[0])
    names = sorted(path.name for path in directory.glob("*") if path.is_file())
    return ", ".join(names) or "none yet"


# --- rendering ------------------------------------------------------------------------------


class _Record:
    """Read-only view of a dict for templates: ``customer.first_name`` is always the key,
    never a dict method (``cart.items`` would otherwise be ``dict.items``). Not a Mapping on
    purpose: it has no public methods a key could collide with."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", {key: _wrap(value) for key, value in data.items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"Record({self._data!r})"


def _wrap(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, _Record):
        return _Record(value)
    if isinstance(value, list | tuple):
        return [_wrap(item) for item in value]
    return value


def offer_view(campaign: Campaign, today: date) -> dict[str, Any]:
    """The offer as every channel shows it: one label, one code, one expiry date."""
    from orchestration.campaigns.config import (
        CashbackAmountOffer,
        CashbackPercentOffer,
        DiscountCodeOffer,
    )

    offer = campaign.offer
    value = getattr(offer, "value", None)
    code = getattr(offer, "code", None)
    max_reward = getattr(offer, "max_reward_eur", None)
    if isinstance(offer, CashbackPercentOffer):
        label = f"{format_percent(offer.value)} de cashback"
        if offer.max_reward_eur is not None:
            label += f" (hasta {format_eur(offer.max_reward_eur)})"
    elif isinstance(offer, CashbackAmountOffer):
        label = f"{format_eur(offer.value)} de cashback"
    elif isinstance(offer, DiscountCodeOffer):
        label = f"{format_percent(offer.value)} de descuento con el código {offer.code}"
    else:
        label = "envío gratis" + (f" con el código {code}" if code else "")
    valid_until = today + timedelta(days=offer.validity_days)
    return {
        "id": offer.id,
        "kind": offer.kind,
        "value": value,
        "code": code,
        "max_reward_eur": max_reward,
        "label": label,
        "valid_in": offer.valid_in,
        "valid_in_label": "solo en tiendas"
        if offer.valid_in == "store_only"
        else "en tienda y online",
        "validity_days": offer.validity_days,
        "valid_until": valid_until,
        "valid_until_text": format_date(valid_until),
    }


def _compiled(templates_dir: Path, html: bool, source: str) -> Any:
    """A compiled template. Files go through Jinja's own cache, which notices edits."""
    env = environment(templates_dir, html)
    if is_template_file(source):
        return env.get_template(source)
    return _compiled_inline(templates_dir, html, source)


@functools.lru_cache(maxsize=512)
def _compiled_inline(templates_dir: Path, html: bool, source: str) -> Any:
    return environment(templates_dir, html).from_string(source)


def _templates_dir(campaign: Campaign, templates_dir: Path | None) -> Path:
    if templates_dir is not None:
        return templates_dir
    if campaign.source_path is not None:
        return campaign.source_path.parent / "templates"
    from orchestration import settings

    return settings.load().campaigns_dir / "templates"


def render_contact(
    campaign: Campaign,
    customer: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    today: date | None = None,
    templates_dir: Path | None = None,
) -> RenderedContact:
    """Render every enabled channel of ``campaign`` for one customer.

    ``customer`` needs at least ``customer_id`` and ``first_name`` (the store card uses them);
    ``extra`` carries the trigger's data (``store``, ``cart_items``... see ``TRIGGER_NAMES``).
    ``today`` is the send date the offer's expiry counts from (default: today).
    Raises ``jinja2.TemplateError`` (``UndefinedError``, ``SecurityError``...) on a bad template.
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & {"customer", "offer", "campaign", "preheader", "staff_note"})
    if clash:
        raise ValueError(f"extra may not override {', '.join(clash)}")
    directory = _templates_dir(campaign, templates_dir)
    offer = offer_view(campaign, today or date.today())
    context: dict[str, Any] = {
        **{key: _wrap(value) for key, value in extra.items()},
        "customer": _Record(customer),
        "offer": _Record(offer),
        "campaign": _Record({"id": campaign.id, "name": campaign.name}),
    }

    def render(source: str, html: bool = False, **more: Any) -> str:
        return str(_compiled(directory, html, source).render({**context, **more}))

    channels = campaign.channels
    subject = preheader = html_body = text_body = cashback_line = staff_card = None
    if channels.email is not None and channels.email.enabled:
        email = channels.email
        subject = " ".join(render(email.subject).split())  # one line: no header injection
        preheader = " ".join(render(email.preheader).split()) if email.preheader else ""
        html_body = render(email.html_template, html=True, preheader=preheader)
        text_body = render(email.text_template, preheader=preheader)
    if channels.loyalty_cashback is not None and channels.loyalty_cashback.enabled:
        cashback_line = " ".join(render(channels.loyalty_cashback.line).split())
    if channels.in_store is not None and channels.in_store.enabled:
        note = " ".join(render(channels.in_store.staff_note).split())
        staff_card = render(STAFF_CARD, staff_note=note)
    return RenderedContact(
        campaign_id=campaign.id,
        offer_id=offer["id"],
        offer_kind=offer["kind"],
        offer_code=offer["code"],
        offer_label=offer["label"],
        valid_until=offer["valid_until"],
        subject=subject,
        preheader=preheader,
        html=html_body,
        text=text_body,
        cashback_line=cashback_line,
        staff_card=staff_card,
    )


def example_context(trigger_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A realistic (customer, extra) pair for a trigger type: for previews without data, tests
    and documentation of what the trigger rows must provide."""
    customer = {
        "customer_id": "C000123",
        "first_name": "Lucía",
        "last_name": "Martín",
        "email": "lucia.martin@example.com",
        "city": "Valencia",
    }
    store = {
        "store_id": 7,
        "name": "Omni Valencia Centro",
        "city": "Valencia",
        "postal_code": "46002",
        "opens_local": "10:00",
        "closes_local": "21:00",
        "distance_km": 2.4,
    }
    product = {
        "product_id": 501,
        "sku": "ZAP-0501",
        "title": "Omni Zapatillas running negro",
        "price": 59.9,
    }
    extras: dict[str, dict[str, Any]] = {
        "abandoned_cart_nearby_stock": {
            "cart": {"checkout_id": 98765, "total": 64.85, "shipping_cost": 4.95},
            "cart_items": [{**product, "quantity": 1, "unit_price": 59.9}],
        },
        "post_purchase_follow_up": {
            "order": {"order_id": "1001", "order_number": 1001, "total": 59.9},
            "order_items": [{**product, "quantity": 1, "unit_price": 59.9}],
            "survey_url": "https://encuestas.example.com/s/1001",
            "matching_products": [
                {"product_id": 502, "sku": "CAL-0502", "title": "Calcetines técnicos", "price": 9.9}
            ],
            "newsletter_url": "https://tienda.example.com/newsletter",
        },
        "win_back": {
            "survey_url": "https://encuestas.example.com/s/adios",
            "days_inactive": 120,
        },
        "loyalty_cashback_milestone": {
            "milestone": {"kind": "spend", "threshold": 300.0, "reached_value": 312.4}
        },
        "second_purchase": {
            "first_order": {"order_id": "1001", "total": 59.9, "channel": "web"},
            "recommended_products": [product],
        },
    }
    return customer, {"store": store, **extras.get(trigger_type, {})}


__all__ = [
    "COMMON_NAMES",
    "TRIGGER_NAMES",
    "RenderedContact",
    "TemplateError",
    "TemplateIssue",
    "check_template",
    "context_names",
    "example_context",
    "format_date",
    "format_eur",
    "format_number",
    "format_percent",
    "offer_view",
    "render_contact",
]
