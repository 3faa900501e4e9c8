"""One Airflow pool per provider: how many dispatch tasks may call it at once.

The campaign DAGs run one mapped task per channel worker; every worker of a channel takes a
slot of its provider's pool, so however many campaigns run at the same time, SendGrid, the
loyalty API and the store API see at most this many concurrent callers (their rate limits are
per account, not per campaign). ``omni airflow`` / ``make demo`` create the pools; a production
Airflow sets the same names to what its contracts allow.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestration.dispatch.states import Channel


@dataclass(frozen=True)
class ProviderPool:
    name: str
    slots: int
    description: str


PROVIDER_POOLS: dict[Channel, ProviderPool] = {
    Channel.EMAIL: ProviderPool("sendgrid", 2, "SendGrid Mail Send: concurrent dispatch workers"),
    Channel.LOYALTY_CASHBACK: ProviderPool(
        "loyalty_api", 2, "Loyalty API cashback credits: concurrent dispatch workers"
    ),
    Channel.IN_STORE: ProviderPool("store_api", 1, "Store API offer upserts: one writer"),
}

__all__ = ["PROVIDER_POOLS", "ProviderPool"]
