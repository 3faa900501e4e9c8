"""The one place that reads the environment.

Every path and endpoint the pipeline uses is derived here. Defaults point at the
embedded setup: run-time state under ``OMNI_HOME`` (``.omni/`` in the checkout),
the DuckDB warehouse file, and the sandbox services on loopback. Production is the
same code with other values (environment variables or Airflow connections).
Secrets are read here and never logged: ``Settings.__repr__`` hides them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORTS = {
    "shop": 8701,
    "pos": 8702,
    "social": 8703,
    "sendgrid": 8704,
    "loyalty": 8705,
    "store": 8706,
}
# The sandbox accepts these placeholder tokens; they open nothing outside this machine.
SANDBOX_TOKENS = {
    "shop": "sandbox-shop-token",
    "pos": "sandbox-pos-token",
    "social": "sandbox-social-token",
    "sendgrid": "sandbox-sendgrid-key",
    "loyalty": "sandbox-loyalty-token",
    "store": "sandbox-store-token",
}


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Settings:
    omni_home: Path
    base_urls: dict[str, str]
    tokens: dict[str, str] = field(repr=False)
    dbt_target: str
    # Where `omni sandbox up` listens: loopback, except inside docker-compose's sandbox container.
    sandbox_listen_host: str = SANDBOX_HOST
    # The dispatch ledger (SQLAlchemy URL; may hold a password, so not in repr): a SQLite file
    # under OMNI_HOME unless OMNI_LEDGER_URL.
    ledger_url: str = field(default="", repr=False)
    # The SendGrid unsubscribe group (ASM) of marketing email (OMNI_SENDGRID_ASM_GROUP_ID).
    sendgrid_asm_group_id: int = 1
    # Dispatch retries: a contact the provider refuses for now (5xx, 429, unreachable) is retried
    # with backoff (at most `dispatch_max_backoff_seconds` apart) across runs for this long after
    # its first refusal, then dead-lettered (OMNI_DISPATCH_RETRY_HORIZON_HOURS,
    # OMNI_DISPATCH_MAX_BACKOFF_SECONDS).
    dispatch_retry_horizon_hours: float = 24.0
    dispatch_max_backoff_seconds: float = 300.0
    # An email whose request got no answer waits this long before SendGrid's Email Activity is
    # asked whether it arrived (longer than any request can still be in flight, and than the
    # activity feed's delay): OMNI_DISPATCH_UNKNOWN_SETTLE_SECONDS.
    dispatch_unknown_settle_seconds: float = 600.0
    # How long a warehouse reader or writer waits for the lock (OMNI_WAREHOUSE_LOCK_WAIT, s).
    warehouse_lock_wait_seconds: float = 1800.0
    # Where pytensor keeps the C code it compiles for the prediction model
    # (OMNI_COMPILE_CACHE; default OMNI_HOME/pytensor). The first fit compiles for minutes.
    compile_cache: str = ""

    @property
    def world_dir(self) -> Path:
        """The simulated retail world (parquet tables) the sandbox serves."""
        return self.omni_home / "world"

    @property
    def sandbox_dir(self) -> Path:
        """Sandbox run state: pid file, logs, fault settings."""
        return self.omni_home / "sandbox"

    @property
    def warehouse_path(self) -> Path:
        return self.omni_home / "warehouse.duckdb"

    @property
    def airflow_home(self) -> Path:
        return self.omni_home / "airflow"

    @property
    def quality_dir(self) -> Path:
        """Great Expectations validation summaries."""
        return self.omni_home / "quality"

    @property
    def compile_cache_dir(self) -> Path:
        """pytensor's compile cache (the predictions step; see docs/decisions.md)."""
        return Path(self.compile_cache) if self.compile_cache else self.omni_home / "pytensor"

    @property
    def dbt_project_dir(self) -> Path:
        return REPO_ROOT / "dbt_project"

    @property
    def dags_dir(self) -> Path:
        return REPO_ROOT / "dags"

    @property
    def campaigns_dir(self) -> Path:
        return Path(_env("OMNI_CAMPAIGNS_DIR", str(REPO_ROOT / "campaigns")))


def load() -> Settings:
    """Read the settings from the environment (cheap; call it where you need it)."""
    omni_home = Path(_env("OMNI_HOME", str(REPO_ROOT / ".omni"))).resolve()
    base_urls = {
        name: _env(f"OMNI_{name.upper()}_URL", f"http://{SANDBOX_HOST}:{port}")
        for name, port in SANDBOX_PORTS.items()
    }
    tokens = {
        name: _env(f"OMNI_{name.upper()}_TOKEN", default)
        for name, default in SANDBOX_TOKENS.items()
    }
    return Settings(
        omni_home=omni_home,
        base_urls=base_urls,
        tokens=tokens,
        dbt_target=_env("OMNI_DBT_TARGET", "duckdb"),
        sandbox_listen_host=_env("OMNI_SANDBOX_LISTEN_HOST", SANDBOX_HOST),
        ledger_url=_env("OMNI_LEDGER_URL", f"sqlite:///{omni_home / 'ledger.sqlite'}"),
        sendgrid_asm_group_id=int(_env("OMNI_SENDGRID_ASM_GROUP_ID", "1")),
        dispatch_retry_horizon_hours=float(_env("OMNI_DISPATCH_RETRY_HORIZON_HOURS", "24")),
        dispatch_max_backoff_seconds=float(_env("OMNI_DISPATCH_MAX_BACKOFF_SECONDS", "300")),
        dispatch_unknown_settle_seconds=float(_env("OMNI_DISPATCH_UNKNOWN_SETTLE_SECONDS", "600")),
        warehouse_lock_wait_seconds=float(_env("OMNI_WAREHOUSE_LOCK_WAIT", "1800")),
        compile_cache=_env("OMNI_COMPILE_CACHE", ""),
    )
