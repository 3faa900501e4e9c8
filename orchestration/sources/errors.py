"""What an ingest run raises (cheap to import: callers catch these without loading dlt)."""

from __future__ import annotations


class IngestError(RuntimeError):
    """An ingest run failed; the message names the source, the URL and what went wrong."""


class SourceAuthError(IngestError):
    """The API refused the credentials (401/403): fix the token, retrying will not help."""
