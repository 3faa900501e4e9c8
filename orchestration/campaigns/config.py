"""The campaign file format: pydantic models, the one place a campaign is validated.

A campaign is one YAML file in ``campaigns/`` (see ``campaigns/README.md``). These models
define every field; ``extra="forbid"`` everywhere turns a typo into an error instead of a
silently ignored setting. Rules that span several fields (an end date after the start date,
a cashback offer needs the loyalty channel, templates that compile and only use known
variables) live in :meth:`Campaign._check_rules` and report the exact field they concern, so
the loader can point at the line in the YAML file. The JSON Schema for editors is exported
from these models (:mod:`orchestration.campaigns.schema`).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from orchestration.campaigns import templating
from orchestration.campaigns.vocabulary import LifecycleStage, Segment, ValueBand

SLUG_PATTERN = r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
CODE_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{2,29}$"

Slug = Annotated[
    str,
    StringConstraints(pattern=SLUG_PATTERN, max_length=60),
    Field(json_schema_extra={"examples": ["spring_sale"]}),
]
Email = Annotated[
    str,
    StringConstraints(pattern=EMAIL_PATTERN, max_length=254),
    Field(json_schema_extra={"format": "email"}),
]
# Upper bounds: a typo (an extra zero, 1.0e+300) is an error, not a campaign that can spend
# without limit. Shipped campaigns use budgets of 2,000-3,000 EUR and rewards of 10-30 EUR.
MAX_BUDGET_EUR = 1_000_000
MAX_REWARD_EUR = 1_000
MAX_CART_VALUE_EUR = 10_000
MAX_SPEND_THRESHOLD_EUR = 100_000
MAX_TEMPLATE_CHARS = 100_000

Template = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TEMPLATE_CHARS),
    Field(
        description=(
            "Jinja text, or the name of a file in campaigns/templates/ (a single word "
            "ending in .html, .txt, .j2 or .jinja)."
        )
    ),
]


def _whole_cents(value: float) -> float:
    # Checked here rather than with multiple_of=0.01, which editors' JSON Schema validators
    # evaluate in binary floating point (4.95 would be flagged).
    if round(value, 2) != value:
        raise PydanticCustomError(
            "campaign_rule",
            "{value} has more than two decimals",
            {"value": value, "allowed": "euros with at most two decimals, e.g. 4.95"},
        )
    return value


# Euros with cents, bounded above (in the annotation, so editors' JSON Schema has the maximum).
BudgetEur = Annotated[float, Field(gt=0, le=MAX_BUDGET_EUR), AfterValidator(_whole_cents)]
RewardEur = Annotated[float, Field(gt=0, le=MAX_REWARD_EUR), AfterValidator(_whole_cents)]

# How people read the patterns above; used in error messages.
PATTERN_HELP = {
    SLUG_PATTERN: "lowercase letters, digits and single underscores, starting with a letter",
    EMAIL_PATTERN: "an email address such as name@example.com",
    CODE_PATTERN: "3-30 capital letters, digits, '-' or '_' (e.g. VUELVE10)",
}


class _Model(BaseModel):
    """Base of every campaign model: unknown fields are errors, whitespace is trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- triggers -------------------------------------------------------------------------------


class AbandonedCartNearbyStock(_Model):
    """An abandoned online cart whose items are in stock in a store near the customer's home."""

    type: Literal["abandoned_cart_nearby_stock"]
    radius_km: float = Field(gt=0, le=100, description="Maximum distance home-store, in km.")
    min_cart_value: float = Field(
        ge=0, le=MAX_CART_VALUE_EUR, description="Minimum cart value in euros."
    )
    abandoned_after_minutes: int = Field(
        ge=15, le=10_080, description="Minutes without checkout before a cart counts as abandoned."
    )
    max_cart_age_days: int = Field(
        ge=1, le=30, description="Older carts are ignored (the customer has moved on)."
    )


class PostPurchaseFollowUp(_Model):
    """An order delivered (or picked up in store) N days ago."""

    type: Literal["post_purchase_follow_up"]
    days_after_delivery: int = Field(ge=0, le=90, description="Days after delivery or pickup.")
    include_survey: bool = Field(default=True, description="Ask how the purchase went.")
    include_matching_products: bool = Field(
        default=True, description="Show products that go with what was bought."
    )
    invite_to_newsletter: bool = Field(
        default=True, description="Invite customers not subscribed to the newsletter."
    )


class WinBack(_Model):
    """A customer entering the recovery (inactive) lifecycle stage."""

    type: Literal["win_back"]
    include_survey: bool = Field(default=True, description='Ask "why did you leave?".')


class LoyaltyCashbackMilestone(_Model):
    """A customer reaching a spend or purchase-count milestone. Set exactly one threshold."""

    type: Literal["loyalty_cashback_milestone"]
    spend_threshold: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SPEND_THRESHOLD_EUR,
        description="Cumulative spend in euros that earns the reward.",
    )
    order_count_threshold: int | None = Field(
        default=None, ge=2, le=1_000, description="Number of purchases that earns the reward."
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> LoyaltyCashbackMilestone:
        if (self.spend_threshold is None) == (self.order_count_threshold is None):
            raise PydanticCustomError(
                "campaign_rule",
                "set exactly one of spend_threshold or order_count_threshold",
                {"allowed": "spend_threshold: <euros> or order_count_threshold: <purchases>"},
            )
        return self


class SecondPurchase(_Model):
    """A customer in the experimentation stage (one purchase) who has not bought again."""

    type: Literal["second_purchase"]
    days_since_first_purchase: int = Field(
        ge=1, le=365, description="Days after the first purchase to send the reason to return."
    )


Trigger = Annotated[
    AbandonedCartNearbyStock
    | PostPurchaseFollowUp
    | WinBack
    | LoyaltyCashbackMilestone
    | SecondPurchase,
    Field(discriminator="type", description="What starts the campaign for a customer."),
]
TRIGGER_TYPES: tuple[str, ...] = (
    "abandoned_cart_nearby_stock",
    "post_purchase_follow_up",
    "win_back",
    "loyalty_cashback_milestone",
    "second_purchase",
)


# --- audience -------------------------------------------------------------------------------


class Audience(_Model):
    """Who may receive the campaign. An empty list means no filter on that attribute."""

    lifecycle_stages: list[LifecycleStage] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list, description="RFM segments.")
    value_bands: list[ValueBand] = Field(default_factory=list)
    min_p_alive: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Only customers the predictive model gives at least this probability of still "
            "being a customer (p_alive, 0-1). Customers without a prediction are left out."
        ),
    )
    max_p_alive: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Only customers with at most this p_alive, e.g. a win-back for customers the "
            "model says are slipping, not for those buying anyway. Customers without a "
            "prediction are left out."
        ),
    )


# --- offer ----------------------------------------------------------------------------------

ValidIn = Literal["store_only", "everywhere"]


class _OfferBase(_Model):
    id: Slug = Field(description="The offer's id, the same on every channel and in reporting.")
    valid_in: ValidIn = Field(description="store_only: redeemable only in physical stores.")
    validity_days: int = Field(ge=1, le=365, description="Days the offer is valid after sending.")
    budget_cap_eur: BudgetEur = Field(description="Maximum total cost of the offer, in euros.")


class CashbackPercentOffer(_OfferBase):
    """Cashback credited to the loyalty account: a percentage of the next purchase."""

    kind: Literal["cashback_percent"]
    value: float = Field(gt=0, le=100, description="Percent of the purchase paid back.")
    max_reward_eur: RewardEur | None = Field(
        default=None, description="Cap on the cashback one customer can earn, in euros."
    )


class CashbackAmountOffer(_OfferBase):
    """A fixed cashback amount credited to the loyalty account."""

    kind: Literal["cashback_amount"]
    value: RewardEur = Field(description="Cashback in euros.")


class DiscountCodeOffer(_OfferBase):
    """A discount code: a percentage off the purchase."""

    kind: Literal["discount_code"]
    value: float = Field(gt=0, le=100, description="Percent off.")
    code: Annotated[str, StringConstraints(pattern=CODE_PATTERN)] = Field(
        description="The code the customer types online or shows at the till."
    )


class FreeShippingOffer(_OfferBase):
    """Free shipping on the next online order (so it cannot be store_only)."""

    kind: Literal["free_shipping"]
    valid_in: Literal["everywhere"] = Field(description="Free shipping is an online benefit.")
    code: Annotated[str, StringConstraints(pattern=CODE_PATTERN)] | None = Field(
        default=None, description="Optional code to type at checkout."
    )


Offer = Annotated[
    CashbackPercentOffer | CashbackAmountOffer | DiscountCodeOffer | FreeShippingOffer,
    Field(discriminator="kind", description="The one offer, identical on every channel."),
]
CASHBACK_KINDS = frozenset({"cashback_percent", "cashback_amount"})


# --- channels -------------------------------------------------------------------------------


class EmailChannel(_Model):
    """The email: subject, preheader, HTML and plain-text bodies."""

    enabled: bool = True
    sender: Email = Field(description="From address.")
    sender_name: str = Field(min_length=1, max_length=100, description="From name, e.g. the brand.")
    subject: Template
    preheader: Template | None = Field(
        default=None, description="Preview text shown after the subject in the inbox."
    )
    html_template: Template
    text_template: Template


class LoyaltyCashbackChannel(_Model):
    """The cashback credit in the loyalty programme, with the line the customer sees."""

    enabled: bool = True
    line: Template = Field(description="One line shown in the loyalty app / account.")


class InStoreChannel(_Model):
    """The offer honoured in store, with a note for the store staff."""

    enabled: bool = True
    staff_note: Template = Field(description="What staff should say or do.")


class Channels(_Model):
    """The channels the campaign uses; at least one must be enabled."""

    email: EmailChannel | None = None
    loyalty_cashback: LoyaltyCashbackChannel | None = None
    in_store: InStoreChannel | None = None


# --- re-entry -------------------------------------------------------------------------------


class OncePerTrigger(_Model):
    """Contact once for every new trigger occurrence (each abandoned cart, each order)."""

    rule: Literal["once_per_trigger"]


class OnceEver(_Model):
    """Contact a customer at most once for this campaign."""

    rule: Literal["once_ever"]


class Cooldown(_Model):
    """Contact again only after a number of days since the last contact."""

    rule: Literal["cooldown"]
    cooldown_days: int = Field(ge=1, le=365)


ReEntry = Annotated[
    OncePerTrigger | OnceEver | Cooldown,
    Field(discriminator="rule", description="When a customer may enter the campaign again."),
]


# --- measurement ----------------------------------------------------------------------------


class Measurement(_Model):
    """How the campaign's effect is measured (dbt models in ``dbt_project/models/measurement``)."""

    attribution_window_days: int = Field(
        default=14,
        ge=1,
        le=90,
        description=(
            "An order (web or store) counts as a conversion when it comes within this many "
            "days after the contact, or after the day a held-out customer would have been "
            "contacted."
        ),
    )


# --- the campaign ---------------------------------------------------------------------------


class Campaign(_Model):
    """One campaign: a trigger, an audience, one offer and the channels that carry it."""

    model_config = ConfigDict(title="Campaign")

    id: Slug = Field(description="Equals the file name without .yml; also the DAG id suffix.")
    name: str = Field(min_length=1, max_length=120)
    owner: Email = Field(description="The marketer responsible for the campaign.")
    description: str = Field(min_length=1, max_length=2_000)
    status: Literal["draft", "active", "paused"] = Field(
        description="Only active campaigns send; draft and paused send nothing."
    )
    start_date: date
    end_date: date = Field(description="Last day of the campaign; after start_date.")
    trigger: Trigger
    audience: Audience = Field(default_factory=Audience)
    offer: Offer
    channels: Channels
    holdout_percent: float = Field(
        ge=0, le=50, description="Share of the audience kept as a control group (no contact)."
    )
    priority: int = Field(
        ge=0,
        le=100,
        description="When several campaigns want the same customer the same day, the highest wins.",
    )
    re_entry: ReEntry
    transactional: bool = Field(
        default=False, description="Service message: exempt from the frequency cap."
    )
    frequency_cap_override: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="Contacts per rolling 7 days for this campaign instead of the global cap.",
    )
    measurement: Measurement = Field(
        default_factory=Measurement, description="How the campaign's lift and ROI are measured."
    )

    _source_path: Path | None = PrivateAttr(default=None)

    @property
    def source_path(self) -> Path | None:
        """The YAML file this campaign was loaded from (None when built in code)."""
        return self._source_path

    @property
    def enabled_channels(self) -> list[str]:
        """Names of the enabled channels, in a fixed order: email, loyalty_cashback, in_store."""
        names = ("email", "loyalty_cashback", "in_store")
        return [name for name in names if _enabled(getattr(self.channels, name))]

    def is_live(self, on: date) -> bool:
        """True when the campaign is active and ``on`` is within its dates (both included)."""
        return self.status == "active" and self.start_date <= on <= self.end_date

    def to_record(self) -> dict[str, Any]:
        """A flat row for the warehouse's campaign config table (one row per campaign)."""
        trigger = self.trigger.model_dump(exclude={"type"})
        offer = self.offer
        return {
            "campaign_id": self.id,
            "name": self.name,
            "owner": self.owner,
            "status": self.status,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "trigger_type": self.trigger.type,
            "trigger_params": trigger,
            "lifecycle_stages": [str(stage) for stage in self.audience.lifecycle_stages],
            "segments": [str(segment) for segment in self.audience.segments],
            "value_bands": [str(band) for band in self.audience.value_bands],
            "min_p_alive": self.audience.min_p_alive,
            "max_p_alive": self.audience.max_p_alive,
            "offer_id": offer.id,
            "offer_kind": offer.kind,
            "offer_value": getattr(offer, "value", None),
            "offer_code": getattr(offer, "code", None),
            "offer_valid_in": offer.valid_in,
            "offer_validity_days": offer.validity_days,
            "offer_max_reward_eur": getattr(offer, "max_reward_eur", None),
            "budget_cap_eur": offer.budget_cap_eur,
            "channels": self.enabled_channels,
            "holdout_percent": self.holdout_percent,
            "priority": self.priority,
            "re_entry_rule": self.re_entry.rule,
            "cooldown_days": getattr(self.re_entry, "cooldown_days", None),
            "transactional": self.transactional,
            "frequency_cap_override": self.frequency_cap_override,
            "attribution_window_days": self.measurement.attribution_window_days,
        }

    @model_validator(mode="after")
    def _check_rules(self, info: ValidationInfo) -> Campaign:
        """Rules across fields; each problem names its own field (several reported at once)."""
        problems: list[InitErrorDetails] = []

        def problem(loc: tuple[str, ...], message: str, value: Any, **ctx: Any) -> None:
            error = PydanticCustomError("campaign_rule", message, ctx or None)
            problems.append(InitErrorDetails(type=error, loc=loc, input=value))

        if self.end_date <= self.start_date:
            problem(
                ("end_date",),
                "end_date {end} must be after start_date {start}",
                self.end_date,
                end=str(self.end_date),
                start=str(self.start_date),
                allowed=f"a date after {self.start_date}",
            )
        audience = self.audience
        if (
            audience.min_p_alive is not None
            and audience.max_p_alive is not None
            and audience.min_p_alive > audience.max_p_alive
        ):
            problem(
                ("audience", "max_p_alive"),
                "max_p_alive {high} is below min_p_alive {low}: nobody could qualify",
                audience.max_p_alive,
                high=audience.max_p_alive,
                low=audience.min_p_alive,
                allowed=f"a probability from {audience.min_p_alive} to 1",
            )
        if self.transactional and self.frequency_cap_override is not None:
            problem(
                ("frequency_cap_override",),
                "a transactional campaign is exempt from the frequency cap; remove the override",
                self.frequency_cap_override,
                allowed="no frequency_cap_override when transactional is true",
            )
        channels = self.channels
        if not self.enabled_channels:
            problem(
                ("channels",),
                "no channel is enabled",
                None,
                allowed="at least one of email, loyalty_cashback, in_store",
            )
        is_cashback = self.offer.kind in CASHBACK_KINDS
        if is_cashback and not _enabled(channels.loyalty_cashback):
            problem(
                ("channels", "loyalty_cashback"),
                "a {kind} offer is credited through the loyalty programme; "
                "enable channels.loyalty_cashback",
                None,
                kind=self.offer.kind,
                allowed="channels.loyalty_cashback with enabled: true and a line",
            )
        if not is_cashback and _enabled(channels.loyalty_cashback):
            problem(
                ("channels", "loyalty_cashback"),
                "the loyalty_cashback channel needs a cashback offer, not {kind}",
                None,
                kind=self.offer.kind,
                allowed="offer.kind cashback_percent or cashback_amount",
            )
        if self.offer.kind == "free_shipping" and _enabled(channels.in_store):
            problem(
                ("channels", "in_store"),
                "free shipping cannot be honoured in a store",
                None,
                allowed="email only for a free_shipping offer",
            )
        templates_dir = _templates_dir(info)
        for loc, source, html in self._templates():
            for issue in templating.check_template(
                source,
                templates_dir=templates_dir,
                html=html,
                allowed_names=templating.context_names(self.trigger.type),
                must_show_offer=loc[-1] in templating.OFFER_BEARING_FIELDS,
                fields=templating.context_fields(self.trigger.type),
            ):
                problem(
                    loc,
                    "{detail}",
                    source,
                    detail=issue.message,
                    allowed=issue.allowed,
                    template_line=issue.line,
                    template_file=issue.file,
                )
        if not problems:  # every template compiles: render them with example data, bounded
            failed = templating.check_rendering(self, templates_dir)
            if failed is not None:
                problem(
                    failed.field,
                    "{detail}",
                    None,
                    detail=f"with example data: {failed.reason}",
                    allowed=templating.limits_in_words() if failed.is_limit else None,
                    template_line=failed.template_line,
                    template_file=failed.template_file,
                )
        if problems:
            raise ValidationError.from_exception_data("Campaign", problems)
        return self

    def _templates(self) -> list[tuple[tuple[str, ...], str, bool]]:
        """(field path, template, is HTML) for every template of every enabled channel."""
        found: list[tuple[tuple[str, ...], str, bool]] = []
        email = self.channels.email
        if email is not None and email.enabled:
            for field in ("subject", "preheader", "html_template", "text_template"):
                source = getattr(email, field)
                if source is not None:
                    found.append((("channels", "email", field), source, field == "html_template"))
        loyalty = self.channels.loyalty_cashback
        if loyalty is not None and loyalty.enabled:
            found.append((("channels", "loyalty_cashback", "line"), loyalty.line, False))
        in_store = self.channels.in_store
        if in_store is not None and in_store.enabled:
            found.append((("channels", "in_store", "staff_note"), in_store.staff_note, False))
        return found


def _enabled(channel: EmailChannel | LoyaltyCashbackChannel | InStoreChannel | None) -> bool:
    return channel is not None and channel.enabled


def _templates_dir(info: ValidationInfo) -> Path:
    """Where template files live: from the validation context, else the repository default."""
    context = info.context or {}
    if context.get("templates_dir") is not None:
        return Path(context["templates_dir"])
    from orchestration import settings

    return settings.load().campaigns_dir / "templates"
