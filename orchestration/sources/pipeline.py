"""Run one source through dlt into its ``raw_<source>`` dataset of the DuckDB warehouse.

One dlt pipeline per source (``omni_<source>``), its working state under
``$OMNI_HOME/dlt`` (never ``~/.dlt``); the incremental cursors live in that state and in
the warehouse (``raw_<source>._dlt_pipeline_state``), so a second run asks the API only
for what changed. Raw tables are append-only: every version of a record is kept and
staging picks the latest per id.

Raw columns are predictable on purpose: dlt's timestamp autodetection is switched off, so
timestamps (and money strings) stay the text the API sent; a malformed value then lands
in the same column, where the quality gate can see it, instead of a ``__v_text`` variant.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

import dlt
import requests
from dlt.extract import DltSource
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client.redaction import sanitize_url

from orchestration import settings as settings_module
from orchestration.settings import Settings
from orchestration.sources import pos, shop, social
from orchestration.sources.catalog import SOURCES
from orchestration.sources.errors import IngestError, SourceAuthError
from orchestration.sources.http import DEFAULT_POLICY, HttpPolicy, make_session

SourceBuilder = Callable[[str, str, requests.Session], DltSource]
BUILDERS: dict[str, SourceBuilder] = {
    "shop": shop.source,
    "pos": pos.source,
    "social": social.source,
}

# dlt runtime settings for the duration of a run, set here rather than in a config.toml:
# no telemetry (these machines have no internet and we send nothing out), and HTTP errors
# carry the start of the answer body so a failure explains itself.
RUNTIME_CONFIG: dict[str, Any] = {
    "runtime.dlthub_telemetry": False,
    "runtime.http_show_error_body": True,
    "runtime.http_max_error_body_length": 500,
}


# dlt reads these once per process, when its config providers start, and only from the
# environment or toml files. Off: the Airflow provider (it imports Airflow and looks up an
# Airflow Variable for every dlt setting: ~670 lookups and seconds per run; our secrets come
# from Airflow connections through orchestration.connections) and telemetry.
DLT_PROCESS_ENV: dict[str, str] = {
    "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
}


# dlt's default for DuckDB is INSERT statements: minutes for 100k rows. Parquet files
# (pyarrow) are copied in by DuckDB itself.
LOADER_FILE_FORMAT: Literal["parquet"] = "parquet"


def _find(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` in the cause/context chain of ``error``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _explain(source: str, error: BaseException, policy: HttpPolicy) -> IngestError:
    """Turn dlt's nested step failure into one readable error."""
    http_error = _find(error, requests.HTTPError)
    if isinstance(http_error, requests.HTTPError) and http_error.response is not None:
        response = http_error.response
        url = sanitize_url(response.url)
        if response.status_code in (401, 403):
            return SourceAuthError(
                f"{source}: the API refused the credentials (HTTP {response.status_code}) "
                f"at {url}. Check the {source} token (OMNI_{source.upper()}_TOKEN or the "
                "Airflow connection)."
            )
        return IngestError(
            f"{source}: HTTP {response.status_code} at {url} "
            f"(after up to {policy.max_attempts} attempts)"
        )
    network_error = _find(error, requests.RequestException)
    if isinstance(network_error, requests.RequestException):
        request = network_error.request
        url = sanitize_url(request.url) if request is not None and request.url else "?"
        return IngestError(
            f"{source}: could not get an answer from {url} after {policy.max_attempts} "
            f"attempts ({type(network_error).__name__}: {network_error})"
        )
    return IngestError(f"{source}: ingest failed: {error}")


def make_pipeline(source: str, cfg: Settings) -> dlt.Pipeline:
    """The dlt pipeline of ``source``: DuckDB warehouse, state under ``$OMNI_HOME/dlt``."""
    return dlt.pipeline(
        pipeline_name=f"omni_{source}",
        destination=dlt.destinations.duckdb(str(cfg.warehouse_path)),
        dataset_name=SOURCES[source],
        pipelines_dir=str(cfg.omni_home / "dlt"),
    )


def ingest(
    source: str,
    *,
    base_url: str | None = None,
    token: str | None = None,
    cfg: Settings | None = None,
    policy: HttpPolicy = DEFAULT_POLICY,
) -> dict[str, Any]:
    """Pull ``source`` incrementally into ``raw_<source>``; see ``orchestration.sources``."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(SOURCES)}")
    cfg = cfg or settings_module.load()
    base_url = base_url or cfg.base_urls[source]
    token = token or cfg.tokens[source]
    cfg.omni_home.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    for name, value in DLT_PROCESS_ENV.items():
        os.environ.setdefault(name, value)
    session, counter = make_session(policy)
    with dlt.config.values(RUNTIME_CONFIG):
        dlt_source = BUILDERS[source](base_url, token, session)
        # keep timestamps as the text the API sent (see the module docstring)
        dlt_source.schema.remove_type_detection("iso_timestamp")
        pipeline = make_pipeline(source, cfg)
        try:
            load_info = pipeline.run(dlt_source, loader_file_format=LOADER_FILE_FORMAT)
        except PipelineStepFailed as error:
            raise _explain(source, error, policy) from error
        finally:
            session.close()

    trace = pipeline.last_trace
    normalize_info = trace.last_normalize_info if trace is not None else None
    row_counts = dict(normalize_info.row_counts) if normalize_info is not None else {}
    rows = {table: n for table, n in sorted(row_counts.items()) if not table.startswith("_dlt")}
    return {
        "source": source,
        "dataset": SOURCES[source],
        "rows": rows,
        "total_rows": sum(rows.values()),
        "load_id": load_info.loads_ids[-1] if load_info.loads_ids else None,
        "requests": counter.sent,
        "responses": dict(sorted(counter.by_status.items())),
        "seconds": round(time.monotonic() - started, 3),
    }
