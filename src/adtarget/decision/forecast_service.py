"""``forecast_line_item``: one call from a forecast body to the answer (route and CLI share it).

Why here and not in the route: the CLI runs the same forecast without a server, on an engine it
builds the same way (``DecisionEngine.from_settings``), so both answer alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from adtarget.catalog.service import ad_format_names
from adtarget.decision.engine import DecisionEngine
from adtarget.decision.forecast import Progress, flight_of, forecast
from adtarget.decision.models import LiveLineItem
from adtarget.decision.proposal import build_proposal
from adtarget.decision.request_store import RequestStore


def proposal_of(
    body: Any, *, session: Session, hidden: frozenset[str] = frozenset()
) -> LiveLineItem:
    """The line item ``body`` describes (validated: errors name the field of ``body``).

    ``hidden``: segments the caller may not see; the proposal's rule is compiled without them.
    """
    proposal = build_proposal(
        body, session=session, known_formats=ad_format_names(session=session), hidden=hidden
    )
    flight_of(proposal, datetime.now(UTC))  # a flight that is over: 422 before a job starts
    return proposal


def forecast_proposal(
    proposal: LiveLineItem,
    *,
    engine: DecisionEngine,
    store: RequestStore,
    lookback_days: int,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Forecast ``proposal`` against the engine's live line items (as they are when it runs)."""
    answer = forecast(
        proposal=proposal,
        live=engine.index_holder.current().flat(),
        store=store,
        profiles=engine.profiles,
        spend=engine.spend,
        lookback_days=lookback_days,
        now=now,
        progress=progress,
    )
    answer["line_item_id"] = proposal.id
    return answer


def forecast_line_item(
    body: Any,
    *,
    session: Session,
    engine: DecisionEngine,
    store: RequestStore,
    lookback_days: int,
    now: datetime | None = None,
    progress: Progress | None = None,
    hidden: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Forecast the line item ``body`` describes against the engine's live line items.

    ``hidden``: segments the caller may not see; the proposal's rule is compiled without them.

    Raises:
        InvalidValue / NotFound: naming the field of ``body`` that is wrong.
    """
    proposal = proposal_of(body, session=session, hidden=hidden)
    return forecast_proposal(
        proposal,
        engine=engine,
        store=store,
        lookback_days=lookback_days,
        now=now,
        progress=progress,
    )
