"""Campaigns that marketers own: YAML files validated by pydantic, rendered by sandboxed Jinja.

from orchestration.campaigns import load_all, render_contact
campaigns, errors = load_all(settings.load().campaigns_dir)
"""

from typing import Any

from orchestration.campaigns.config import TRIGGER_TYPES, Campaign
from orchestration.campaigns.loader import (
    CampaignError,
    CampaignLoadError,
    format_report,
    load_all,
    load_campaign,
)
from orchestration.campaigns.templating import (
    RenderedContact,
    RenderError,
    example_context,
    render_contact,
)


def export_schema() -> dict[str, Any]:
    """The campaign JSON Schema (see :mod:`orchestration.campaigns.schema`)."""
    from orchestration.campaigns.schema import export_schema as export

    return export()


__all__ = [
    "TRIGGER_TYPES",
    "Campaign",
    "CampaignError",
    "CampaignLoadError",
    "RenderError",
    "RenderedContact",
    "example_context",
    "export_schema",
    "format_report",
    "load_all",
    "load_campaign",
    "render_contact",
]
