"""``request_store_for(settings)``: the request log's store chosen by ``request_log_store``.

Why a function of its own: the decision route's writer, ``POST /v1/forecast`` and ``adtarget
forecast`` must read and write the same store, and the PostgreSQL one imports its driver only
when chosen.
"""

from __future__ import annotations

from adtarget.decision.request_store import ParquetRequestStore, RequestStore
from adtarget.errors import InvalidValue
from adtarget.settings import Settings


def request_store_for(settings: Settings) -> RequestStore:
    """Parquet under ``data_dir/requests`` (default) or the PostgreSQL table."""
    if settings.request_log_store == "parquet":
        return ParquetRequestStore(settings.requests_dir)
    url = settings.request_log_url or settings.catalog_url
    if not url or not url.startswith(("postgres", "postgresql")):
        raise InvalidValue(
            "ADTARGET_REQUEST_LOG_STORE=postgres needs ADTARGET_REQUEST_LOG_URL (or a PostgreSQL "
            "ADTARGET_CATALOG_URL)",
            field="ADTARGET_REQUEST_LOG_URL",
        )
    from adtarget.decision.request_store_pg import PostgresRequestStore

    return PostgresRequestStore(url)
