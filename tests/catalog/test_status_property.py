"""Property: through the service, a status change is accepted exactly when the table allows it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from adtarget.catalog import service
from adtarget.catalog.db import make_engine, make_session_factory, migrate
from adtarget.catalog.status import STATUSES, TRANSITIONS
from adtarget.errors import InvalidTransition


@pytest.fixture(scope="module")
def memory_engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    migrate("sqlite://", engine=eng)
    yield eng
    eng.dispose()


@settings(max_examples=60, deadline=None)
@given(moves=st.lists(st.sampled_from(STATUSES), max_size=8))
def test_service_follows_the_table(memory_engine: Engine, moves: list[str]) -> None:
    with make_session_factory(memory_engine)() as s:
        _check(s, moves)
        s.rollback()


def _check(s: Session, moves: list[str]) -> None:
    adv = service.create(kind="advertiser", session=s, data={"name": "p"})
    camp = service.create(
        kind="campaign",
        session=s,
        data={"advertiser_id": adv.id, "name": "c", "budget_total": 1,
              "start": datetime(2026, 1, 1, tzinfo=UTC), "end": datetime(2026, 2, 1, tzinfo=UTC)},
    )  # fmt: skip
    state, version = "draft", 1
    for target in moves:
        allowed = target == state or target in TRANSITIONS[state]
        if allowed:
            out = service.change_status(
                session=s, kind="campaign", obj_id=camp.id, status=target, expected_version=version
            )
            state = target
            version = out.version
        else:
            with pytest.raises(InvalidTransition):
                service.change_status(session=s, kind="campaign", obj_id=camp.id, status=target)
        assert service.get(kind="campaign", session=s, obj_id=camp.id).status == state
