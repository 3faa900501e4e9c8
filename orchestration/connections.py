"""Where each outside system is: an Airflow connection when one exists, else the settings.

Called inside tasks only (never while a DAG file is parsed). The token is returned to the
caller and never logged.
"""

from __future__ import annotations

from dataclasses import replace

from orchestration import settings


def conn_id(system: str) -> str:
    return f"omni_{system}"


def source_endpoint(system: str) -> tuple[str, str]:
    """(base_url, token) for ``system``: Airflow connection ``omni_<system>`` or settings."""
    cfg = settings.load()
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id(system))
    except Exception:  # not inside Airflow, or no such connection: the environment decides
        return cfg.base_urls[system], cfg.tokens[system]
    host = conn.host or ""
    if not host.startswith(("http://", "https://")):
        scheme = conn.schema or "https"
        host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    return host.rstrip("/"), conn.password or cfg.tokens[system]


def settings_with_connections(systems: tuple[str, ...]) -> settings.Settings:
    """The settings, with the endpoint and token of each of ``systems`` taken from its Airflow
    connection when one exists (what the dispatch tasks call: the channel senders read
    ``cfg.base_urls`` / ``cfg.tokens``)."""
    cfg = settings.load()
    base_urls, tokens = dict(cfg.base_urls), dict(cfg.tokens)
    for system in systems:
        base_urls[system], tokens[system] = source_endpoint(system)
    return replace(cfg, base_urls=base_urls, tokens=tokens)
