"""A rebuild's set-wide catalog reads never nest loops on PostgreSQL (a patch's reads may).

Why: with missing or stale statistics the planner nested loops over every campaign, creative
and line item, and a 100k rebuild's ``live_creatives`` held its transaction open for minutes.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from adtarget.catalog import live

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_session(pg_url: str) -> Session:
    from adtarget.catalog.db import make_engine, make_session_factory, migrate

    migrate(pg_url)
    return make_session_factory(make_engine(pg_url))()


def _nestloop(session: Session) -> str:
    return str(session.execute(text("SHOW enable_nestloop")).scalar_one())


@pytest.mark.parametrize("read", [live.live_rows, live.live_creatives, live.line_item_statuses])
def test_set_wide_reads_turn_nested_loops_off_for_their_transaction_only(
    pg_session: Session, read: object
) -> None:
    with pg_session as session:
        assert _nestloop(session) == "on"
        read(session)  # type: ignore[operator]
        assert _nestloop(session) == "off"
        session.rollback()  # the rebuild's session ends: the setting goes with its transaction
        assert _nestloop(session) == "on"


@pytest.mark.parametrize("read", [live.live_rows, live.live_creatives, live.line_item_statuses])
def test_a_patch_reading_a_few_ids_keeps_nested_loops(pg_session: Session, read: object) -> None:
    with pg_session as session:
        read(session, [1, 2])  # type: ignore[operator]
        assert _nestloop(session) == "on"
