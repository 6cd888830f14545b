"""The schema itself refuses bad rows, even when a caller bypasses the services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from adtarget.catalog.db import make_session_factory
from adtarget.catalog.tables import Advertiser, Campaign, CommandLog, LineItem

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _campaign(adv_id: int, **kw: object) -> Campaign:
    values: dict[str, object] = {
        "advertiser_id": adv_id,
        "name": "c",
        "budget_total": Decimal("10"),
        "start": T0,
        "end": T0 + timedelta(days=1),
    }
    values.update(kw)
    return Campaign(**values)


@pytest.mark.parametrize(
    "bad",
    [
        {"budget_total": Decimal("-1")},
        {"budget_daily": Decimal("11")},
        {"end": T0 - timedelta(days=1)},
        {"status": "running"},
        {"currency": "EURO"},
        {"frequency_cap_count": 3},
        {"advertiser_id": 999_999},
    ],
)
def test_database_constraints_refuse(session: Session, bad: dict[str, object]) -> None:
    adv = Advertiser(name="a")
    session.add(adv)
    session.flush()
    session.add(_campaign(adv.id, **bad))
    with pytest.raises((IntegrityError, DataError)):  # PostgreSQL refuses "EURO" as too long
        session.flush()


def test_line_item_priority_range_is_a_constraint(session: Session) -> None:
    adv = Advertiser(name="a")
    session.add(adv)
    session.flush()
    camp = _campaign(adv.id)
    session.add(camp)
    session.flush()
    session.add(LineItem(campaign_id=camp.id, name="li", bid_cpm=Decimal("1"), priority=17))
    with pytest.raises(IntegrityError):
        session.flush()


def test_versions_bump_and_times_stay_utc(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with factory() as s:
        adv = Advertiser(name="a")
        s.add(adv)
        s.flush()
        plus2 = timezone(timedelta(hours=2))
        s.add(_campaign(adv.id, start=datetime(2026, 3, 1, 2, tzinfo=plus2)))
        s.commit()
        first_update = adv.updated_at
        adv.name = "b"
        s.commit()
        assert adv.version == 2
        assert adv.updated_at >= first_update
    with factory() as s:
        camp = s.scalars(select(Campaign)).one()
        assert camp.start == T0 and camp.start.tzinfo is not None
        assert camp.budget_total == Decimal("10")
        assert s.get(Advertiser, adv.id).version == 2  # type: ignore[union-attr]


def test_command_log_ids_are_never_reused(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with factory() as s:
        s.add_all([CommandLog(actor="x", kind="k"), CommandLog(actor="x", kind="k")])
        s.commit()
        last = s.scalars(select(CommandLog).order_by(CommandLog.id.desc())).first()
        assert last is not None
        s.delete(last)
        s.commit()
        s.add(CommandLog(actor="x", kind="k"))
        s.commit()
        newest = s.scalars(select(CommandLog.id).order_by(CommandLog.id.desc())).first()
        assert newest == last.id + 1
