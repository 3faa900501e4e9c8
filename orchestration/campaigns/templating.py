"""Render a campaign for one customer, on every channel, from the one offer.

Marketer templates are Jinja, rendered in an immutable *sandboxed* environment
(``jinja2.sandbox``): a template cannot reach Python internals (``''.__class__`` raises
``SecurityError``) nor change the data it is given. HTML is autoescaped, the ``safe`` filter
is removed and ``{% autoescape false %}`` is refused, so customer data (a first name such as
``<script>``) can never become markup. ``StrictUndefined`` makes a misspelt variable an error
instead of an empty string; :func:`check_template` catches most of those (and syntax errors)
already when a campaign file is validated: unknown variables, and unknown fields of the
declared context (:data:`COMMON_FIELDS`, :data:`TRIGGER_FIELDS`: ``customer.frist_name`` ->
"unknown field 'frist_name' of customer (did you mean 'first_name'?)").

Every rendering is bounded (:mod:`orchestration.campaigns.render_limits`: time, output, loops,
sizes). :func:`render_contact` raises :class:`RenderError`, which names the campaign, the file
and line and the field, whatever went wrong; :func:`check_rendering` renders a campaign with
example data under the same bounds when its file is validated.

The offer is never typed into a template: every channel reads the same ``offer`` view
(id, code, label, expiry...) built here, so email, loyalty line and store card cannot disagree.
"""

from __future__ import annotations

import difflib
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

from orchestration.campaigns.render_limits import (
    LIMITS,
    BoundedEnvironment,
    LimitExceeded,
    RenderLimits,
    RenderTimeout,
    render_bounded,
    run_with_deadline,
)

if TYPE_CHECKING:
    from orchestration.campaigns.config import Campaign

# The render context, declared: a record is a dict of its fields, a list is [its item's shape],
# a plain value is None. Templates are checked against it when a campaign file is validated.
Shape = dict[str, Any] | list[Any] | None
OFFER_FIELDS = (
    "id",
    "kind",
    "value",
    "code",
    "max_reward_eur",
    "label",
    "valid_in",
    "valid_in_label",
    "validity_days",
    "valid_until",
    "valid_until_text",
)
# What every template can use (customer: marts.dim_customers as preview.contact_context reads
# it; store: marts.dim_stores, None when the customer has no store; offer: offer_view).
COMMON_FIELDS: dict[str, Shape] = {
    "customer": dict.fromkeys(("customer_id", "first_name", "last_name", "email", "city")),
    "offer": dict.fromkeys(OFFER_FIELDS),
    "campaign": dict.fromkeys(("id", "name")),
    "preheader": None,
    "store": dict.fromkeys(
        (
            "store_id",
            "name",
            "city",
            "postal_code",
            "opens_local",
            "closes_local",
            "distance_km",
        )
    ),
}
_LINE_ITEM = dict.fromkeys(("product_id", "sku", "title", "quantity", "unit_price"))
_PRODUCT = dict.fromkeys(("product_id", "sku", "title", "price"))
# What each trigger row's payload_json provides (the contract with the trigger models in
# dbt_project/models/triggers, checked by a test against their SQL).
TRIGGER_FIELDS: dict[str, dict[str, Shape]] = {
    "abandoned_cart_nearby_stock": {
        "cart": dict.fromkeys(
            (
                "checkout_id",
                "total",
                "subtotal",
                "shipping_cost",
                "abandoned_at",
                "suggested_visit_local",
            )
        ),
        "cart_items": [{**_LINE_ITEM, "category": None}],
    },
    "post_purchase_follow_up": {
        "order": dict.fromkeys(
            ("order_id", "order_number", "total", "fulfillment_type", "delivered_at")
        ),
        "order_items": [_LINE_ITEM],
        "survey_url": None,
        "matching_products": [_PRODUCT],
        "newsletter_url": None,
    },
    "win_back": {"survey_url": None, "days_inactive": None},
    "loyalty_cashback_milestone": {
        "milestone": dict.fromkeys(("kind", "threshold", "reached_value"))
    },
    "second_purchase": {
        "first_order": dict.fromkeys(("order_id", "total", "channel", "ordered_at")),
        "recommended_products": [_PRODUCT],
    },
}
# Variables every template can use.
COMMON_NAMES = frozenset(COMMON_FIELDS)
# Variables the trigger rows provide (the contract with the trigger models / dispatch).
TRIGGER_NAMES: dict[str, frozenset[str]] = {
    trigger: frozenset(fields) for trigger, fields in TRIGGER_FIELDS.items()
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


class RenderError(TemplateError):
    """A template failed for one contact (or for the example data, at validation).

    ``str()`` reads ``campaign <id>: <file>:<line>: <field>: <reason>``: the campaign file
    and line for an inline template, the template file and line for a file in
    ``campaigns/templates/``. Never a traceback.
    """

    def __init__(
        self,
        reason: str,
        *,
        campaign_id: str,
        field: tuple[str, ...],
        template_file: str | None,
        template_line: int | None,
        campaign_file: Path | None,
        templates_dir: Path,
        is_limit: bool = False,
    ) -> None:
        self.reason = reason
        self.campaign_id = campaign_id
        self.field = field
        self.template_file = template_file
        self.template_line = template_line
        self.campaign_file = campaign_file
        self.templates_dir = templates_dir
        self.is_limit = is_limit
        super().__init__(self._text())

    @property
    def file(self) -> Path | None:
        """The file to open: the template file, else the campaign file."""
        if self.template_file is not None:
            return self.templates_dir / self.template_file
        return self.campaign_file

    @property
    def line(self) -> int | None:
        """The line in :attr:`file` (an inline template's line counted in the campaign file)."""
        if self.template_file is not None or self.campaign_file is None:
            return self.template_line
        from orchestration.campaigns.loader import template_line_in_file

        return template_line_in_file(self.campaign_file, self.field, self.template_line)

    def _text(self) -> str:
        file = self.file
        where = "" if file is None else f"{_shown_path(file)}:{self.line or 1}: "
        return f"campaign {self.campaign_id}: {where}{'.'.join(self.field)}: {self.reason}"


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


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


class _Undefined(StrictUndefined):
    """StrictUndefined that names a record's missing field the way validation does."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        owner, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint is None and isinstance(owner, _Record) and isinstance(name, str):
            return owner._unknown_field(name)
        return str(super()._undefined_message)


@functools.lru_cache(maxsize=16)
def environment(templates_dir: Path, html: bool) -> ImmutableSandboxedEnvironment:
    """The sandboxed, bounded environment for HTML (autoescaped) or plain text, one per
    templates dir (:class:`~orchestration.campaigns.render_limits.BoundedEnvironment`)."""
    env = BoundedEnvironment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=html,
        undefined=_Undefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        records=(_Record,),
    )
    env.filters["eur"] = format_eur
    env.filters["percent"] = format_percent
    env.filters["number"] = format_number
    env.filters["date_es"] = format_date
    env.guard_filters()
    return env


def is_template_file(source: str) -> bool:
    """A template value naming a file in campaigns/templates/ rather than inline Jinja."""
    return bool(_TEMPLATE_FILE.match(source)) and ".." not in source.split("/")


def context_names(trigger_type: str) -> frozenset[str]:
    """Top-level variables a template of this trigger type may use."""
    return COMMON_NAMES | TRIGGER_NAMES.get(trigger_type, frozenset())


def context_fields(trigger_type: str) -> dict[str, Shape]:
    """The declared shape of every variable a template of this trigger type may use."""
    return {**COMMON_FIELDS, **TRIGGER_FIELDS.get(trigger_type, {})}


def check_template(
    source: str,
    *,
    templates_dir: Path,
    html: bool,
    allowed_names: frozenset[str],
    must_show_offer: bool = False,
    fields: Mapping[str, Shape] | None = None,
) -> list[TemplateIssue]:
    """Compile a template (inline or file) and check the variables it uses, and the fields
    of the declared records it reads when ``fields`` is given; no rendering."""
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
    _check_tree(env, text, file_name, allowed_names, issues, used, seen=set(), fields=fields)
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
    fields: Mapping[str, Shape] | None = None,
) -> None:
    """Compile ``text``, record unknown variables and fields, then follow
    extends/include/import."""
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
    if fields is not None:
        issues.extend(_field_issues(tree, fields, file_name))
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
        _check_tree(env, child, referenced, allowed_names, issues, used, seen, fields)


# Filters that keep their input's shape, and those that pick one item of a list.
_SAME_SHAPE_FILTERS = frozenset(
    {"sort", "reverse", "list", "unique", "select", "reject", "selectattr", "rejectattr"}
)
_ITEM_FILTERS = frozenset({"first", "last", "random"})


def _field_issues(
    tree: nodes.Template, fields: Mapping[str, Shape], file_name: str | None
) -> list[TemplateIssue]:
    """``customer.frist_name``, ``item.titel`` in ``{% for item in cart_items %}``...: every
    field read from a declared record that the record does not have."""
    loop_targets = {
        id(name) for loop in tree.find_all(nodes.For) for name in loop.target.find_all(nodes.Name)
    } | {id(loop.target) for loop in tree.find_all(nodes.For)}
    rebound = {
        name.name
        for name in tree.find_all(nodes.Name)
        if name.ctx in ("store", "param") and id(name) not in loop_targets
    }
    for node in tree.find_all((nodes.Import, nodes.FromImport)):
        if isinstance(node, nodes.Import):
            rebound.add(node.target)
        elif isinstance(node, nodes.FromImport):
            rebound.update(alias if isinstance(alias, str) else alias[1] for alias in node.names)
    scope: dict[str, tuple[str, Shape]] = {
        name: (name, shape) for name, shape in fields.items() if name not in rebound
    }
    issues: list[TemplateIssue] = []
    reported: set[tuple[str, str]] = set()

    def visit(node: nodes.Node, scope: dict[str, tuple[str, Shape]]) -> None:
        if isinstance(node, nodes.For):
            visit(node.iter, scope)
            inner = dict(scope)
            inner.pop("loop", None)
            label, shape = _shape_of(node.iter, scope)
            targets = (
                [node.target]
                if isinstance(node.target, nodes.Name)
                else list(node.target.find_all(nodes.Name))
            )
            for target in targets:
                inner.pop(target.name, None)
            if isinstance(node.target, nodes.Name) and isinstance(shape, list) and shape:
                inner[node.target.name] = (f"an item of {label}", shape[0])
            for child in node.body:
                visit(child, inner)
            if node.test is not None:
                visit(node.test, inner)
            for child in node.else_:
                visit(child, scope)
            return
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            label, shape = _shape_of(node.node, scope)
            name = node.attr if isinstance(node, nodes.Getattr) else _constant(node.arg)
            if (
                isinstance(shape, dict)
                and isinstance(name, str)
                and not name.startswith("_")
                and name not in shape
                and (label, name) not in reported
            ):
                reported.add((label, name))
                issues.append(
                    TemplateIssue(
                        _unknown_field(name, label, shape),
                        line=node.lineno,
                        file=file_name,
                        allowed=f"fields of {label}: " + ", ".join(shape),
                    )
                )
        for child in node.iter_child_nodes():
            visit(child, scope)

    visit(tree, scope)
    return issues


def _shape_of(node: nodes.Node | None, scope: Mapping[str, tuple[str, Shape]]) -> tuple[str, Shape]:
    """(how to call it, declared shape) of an expression; shape None when not a declared
    record or list."""
    if isinstance(node, nodes.Name):
        return scope.get(node.name, (node.name, None))
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.EnvironmentAttribute):
        return _shape_of(node.args[0], scope)  # the loop counter around a for loop's list
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        label, shape = _shape_of(node.node, scope)
        name = node.attr if isinstance(node, nodes.Getattr) else _constant(node.arg)
        if isinstance(shape, dict) and isinstance(name, str):
            return f"{label}.{name}", shape.get(name)
        if isinstance(shape, list) and shape and isinstance(name, int):
            return f"an item of {label}", shape[0]
        return label, None
    if isinstance(node, nodes.Filter) and node.node is not None:
        label, shape = _shape_of(node.node, scope)
        if node.name in _SAME_SHAPE_FILTERS:
            return label, shape
        if node.name in _ITEM_FILTERS and isinstance(shape, list) and shape:
            return f"an item of {label}", shape[0]
    return "", None


def _unknown_field(name: str, label: str, shape: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(shape), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown field '{name}' of {label}{hint}"


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

    __slots__ = ("_data", "_label")

    def __init__(self, data: Mapping[str, Any], label: str = "a record") -> None:
        object.__setattr__(
            self,
            "_data",
            {key: _wrap(value, f"{label}.{key}") for key, value in data.items()},
        )
        object.__setattr__(self, "_label", label)

    def _unknown_field(self, name: str) -> str:
        """The message for a field this record does not have (private: templates cannot call
        it, and no data key can be shadowed by a public method)."""
        return _unknown_field(name, self._label, self._data)

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


def _wrap(value: Any, label: str = "a record") -> Any:
    if isinstance(value, Mapping) and not isinstance(value, _Record):
        return _Record(value, label)
    if isinstance(value, list | tuple):
        return [_wrap(item, f"an item of {label}") for item in value]
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


# (campaign, field, template) -> renderings that ran out of time in this process
_TIMEOUTS: dict[tuple[str, tuple[str, ...], str], int] = {}
# After this many, the template is not run again in this process (each try costs the limit).
TIMEOUTS_BEFORE_SKIPPING = 3


def render_contact(
    campaign: Campaign,
    customer: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    today: date | None = None,
    templates_dir: Path | None = None,
    limits: RenderLimits = LIMITS,
) -> RenderedContact:
    """Render every enabled channel of ``campaign`` for one customer, within ``limits``.

    ``customer`` needs at least ``customer_id`` and ``first_name`` (the store card uses them);
    ``extra`` carries the trigger's data (``store``, ``cart_items``... see ``TRIGGER_NAMES``).
    ``today`` is the send date the offer's expiry counts from (default: today).
    Raises :class:`RenderError` (campaign, file, line, field and reason; the Jinja error is
    its ``__cause__``) when a template fails or goes over a limit: that contact only.
    A template that ran out of time ``TIMEOUTS_BEFORE_SKIPPING`` times in this process is not
    run again (the error says so), so a runaway template costs its campaign seconds, not hours.
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & {"customer", "offer", "campaign", "preheader", "staff_note"})
    if clash:
        raise ValueError(f"extra may not override {', '.join(clash)}")
    directory = _templates_dir(campaign, templates_dir)
    offer = offer_view(campaign, today or date.today())
    context: dict[str, Any] = {
        **{key: _wrap(value, key) for key, value in extra.items()},
        "customer": _Record(customer, "customer"),
        "offer": _Record(offer, "offer"),
        "campaign": _Record({"id": campaign.id, "name": campaign.name}, "campaign"),
    }
    current: list[tuple[tuple[str, ...], str]] = []

    def failure(
        reason: str, field: tuple[str, ...], source: str, error: BaseException
    ) -> RenderError:
        template_file, line = _template_position(error, directory)
        if template_file is None and is_template_file(source):
            template_file = source
        return RenderError(
            reason,
            campaign_id=campaign.id,
            field=field,
            template_file=template_file,
            template_line=line,
            campaign_file=campaign.source_path,
            templates_dir=directory,
            is_limit=isinstance(error, LimitExceeded),
        )

    def render(field: tuple[str, ...], source: str, html: bool = False, **more: Any) -> str:
        key = (campaign.id, field, source)
        if _TIMEOUTS.get(key, 0) >= TIMEOUTS_BEFORE_SKIPPING:
            raise RenderError(
                f"not rendered: this template ran longer than {limits.seconds:g} s "
                f"{TIMEOUTS_BEFORE_SKIPPING} times in this run; fix it and validate the file",
                campaign_id=campaign.id,
                field=field,
                template_file=source if is_template_file(source) else None,
                template_line=None,
                campaign_file=campaign.source_path,
                templates_dir=directory,
                is_limit=True,
            )
        current.append((field, source))
        try:
            template = _compiled(directory, html, source)
            return render_bounded(template, {**context, **more}, limits)
        except TemplateError as error:
            raise failure(str(error.message or error), field, source, error) from error
        except Exception as error:  # a data or template error (TypeError...): this contact only
            raise failure(f"{type(error).__name__}: {error}", field, source, error) from error

    def render_all() -> RenderedContact:
        channels = campaign.channels
        subject = preheader = html_body = text_body = cashback_line = staff_card = None
        if channels.email is not None and channels.email.enabled:
            email = channels.email
            base = ("channels", "email")
            # one line: no header injection
            subject = " ".join(render((*base, "subject"), email.subject).split())
            preheader = (
                " ".join(render((*base, "preheader"), email.preheader).split())
                if email.preheader
                else ""
            )
            html_body = render(
                (*base, "html_template"), email.html_template, html=True, preheader=preheader
            )
            text_body = render((*base, "text_template"), email.text_template, preheader=preheader)
        if channels.loyalty_cashback is not None and channels.loyalty_cashback.enabled:
            line = channels.loyalty_cashback.line
            cashback_line = " ".join(render(("channels", "loyalty_cashback", "line"), line).split())
        if channels.in_store is not None and channels.in_store.enabled:
            field = ("channels", "in_store", "staff_note")
            note = " ".join(render(field, channels.in_store.staff_note).split())
            staff_card = render(field, STAFF_CARD, staff_note=note)
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

    try:
        return run_with_deadline(limits.seconds, render_all)
    except RenderTimeout as timeout:
        field, source = current[-1] if current else (("channels",), "")
        key = (campaign.id, field, source)
        _TIMEOUTS[key] = _TIMEOUTS.get(key, 0) + 1
        raise failure(str(timeout), field, source, timeout) from timeout


def _template_position(error: BaseException, templates_dir: Path) -> tuple[str | None, int | None]:
    """(template file in ``templates_dir`` or None for an inline template, line) where
    ``error`` was raised: the innermost template frame of its traceback (or its cause's)."""
    if isinstance(error, TemplateSyntaxError):
        return _template_name(error.filename, templates_dir), error.lineno
    found: tuple[str | None, int | None] = (None, None)
    for exception in (error, error.__cause__):
        traceback = exception.__traceback__ if exception is not None else None
        while traceback is not None:
            namespace = traceback.tb_frame.f_globals
            template = namespace.get("__jinja_template__")
            if template is not None:  # compiled template code: map the Python line back
                line = template.get_corresponding_lineno(traceback.tb_lineno)
                found = (_template_name(template.filename, templates_dir), line)
            elif "__jinja_exception__" in namespace:  # a frame Jinja rewrote: a template line
                filename = traceback.tb_frame.f_code.co_filename
                found = (_template_name(filename, templates_dir), traceback.tb_lineno)
            traceback = traceback.tb_next
    return found


def _template_name(filename: str | None, templates_dir: Path) -> str | None:
    if filename is None or filename == "<template>":
        return None
    try:
        return str(Path(filename).resolve().relative_to(templates_dir.resolve()))
    except ValueError:
        return Path(filename).name


def check_rendering(
    campaign: Campaign, templates_dir: Path, limits: RenderLimits = LIMITS
) -> RenderError | None:
    """Render ``campaign`` with its trigger's example data (:func:`example_context`) within
    ``limits``; the error, or None when every channel renders. Campaign validation calls it,
    so a template that loops for ever or prints gigabytes is refused before it runs."""
    customer, extra = example_context(campaign.trigger.type)
    try:
        render_contact(
            campaign,
            customer,
            extra,
            today=campaign.start_date,
            templates_dir=templates_dir,
            limits=limits,
        )
    except RenderError as error:
        return error
    return None


def limits_in_words(limits: RenderLimits = LIMITS) -> str:
    """The bounds as a marketer reads them (the 'allowed' of a validation error)."""
    return (
        f"a template that renders within {limits.seconds:g} s, prints at most "
        f"{limits.output_chars:,} characters, loops at most {limits.loop_iterations:,} times "
        f"and builds no text or list over {limits.value_chars:,} characters"
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
    line = {key: product[key] for key in ("product_id", "sku", "title")}
    line.update({"quantity": 1, "unit_price": 59.9})
    extras: dict[str, dict[str, Any]] = {
        "abandoned_cart_nearby_stock": {
            "cart": {
                "checkout_id": 98765,
                "total": 64.85,
                "subtotal": 59.9,
                "shipping_cost": 4.95,
                "abandoned_at": "2026-11-21T19:42:00",
                "suggested_visit_local": "2026-11-22T18:00:00",
            },
            "cart_items": [{**line, "category": "calzado"}],
        },
        "post_purchase_follow_up": {
            "order": {
                "order_id": "web:1001",
                "order_number": "1001",
                "total": 59.9,
                "fulfillment_type": "shipping",
                "delivered_at": "2026-11-18T12:30:00",
            },
            "order_items": [line],
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
            "first_order": {
                "order_id": "web:1001",
                "total": 59.9,
                "channel": "web",
                "ordered_at": "2026-10-02T10:15:00",
            },
            "recommended_products": [product],
        },
    }
    return customer, {"store": store, **extras.get(trigger_type, {})}


__all__ = [
    "COMMON_FIELDS",
    "COMMON_NAMES",
    "TRIGGER_FIELDS",
    "TRIGGER_NAMES",
    "RenderError",
    "RenderedContact",
    "TemplateError",
    "TemplateIssue",
    "check_rendering",
    "check_template",
    "context_fields",
    "context_names",
    "example_context",
    "format_date",
    "format_eur",
    "format_number",
    "format_percent",
    "offer_view",
    "render_contact",
]
