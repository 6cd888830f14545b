"""Property: after any sequence of catalog commands (create, update, pause, undo, redo, attach,
detach, bulk, a rule segment's rule edited), the index patched from the change log answers
every generated request exactly as an index rebuilt from scratch: the same live line items, the
same not-live reasons, the same matches in the same rank order — on SQLite and on real
PostgreSQL. (A patch keeps the segments it read until a change touches one:
``catalog/patch_reads.py``; line items targeting the rule segment ``fans`` check that.)
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adtarget.catalog.tables import Advertiser, Segment
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.decision.index_holder import IndexHolder
from adtarget.decision.patched_index import differences
from adtarget.errors import AdtargetError

from .conftest import CAMPAIGN, Factory, open_factory
from .test_undo_property import TAIL, _apply, _base, op

TARGETING = st.sampled_from(
    [
        "",
        'country in ("US")',
        'country = "CA"',
        'not country in ("US", "CA")',
        'country = "MX"',
        'segment("fans")',
        'not segment("fans") and not country = "FR"',
    ]
)
FANS = st.sampled_from(['country = "US"', 'country in ("CA", "MX")', 'not country = "US"'])
go_live = st.one_of(
    st.tuples(
        st.just("li_update"),
        st.integers(0, 5),
        st.fixed_dictionaries(
            {"status": st.sampled_from(["active", "active", "paused"])},
            optional={
                "targeting": TARGETING,
                "priority": st.integers(1, 4),
                "bid_cpm": st.sampled_from(["1", "2.5", "3"]),
            },
        ),
    ),
    st.tuples(
        st.just("camp_update"),
        st.integers(0, 5),
        st.fixed_dictionaries({"status": st.just("active")}),
    ),
    st.tuples(st.just("attach"), st.integers(0, 5), st.integers(0, 5)),
    st.tuples(st.just("fans"), FANS),
)
step = st.tuples(st.one_of(op, go_live, go_live), TAIL)
REQUESTS = [{}, {"country": "US"}, {"country": "CA"}, {"country": "MX"}, {"country": "FR"}]


def _ranked(index: Any, features: dict[str, Any]) -> list[int]:
    items = index.items
    return [items[p].id for p in index.match(features)]


def _check(holder: IndexHolder, fac: Factory) -> None:
    assert holder.feed is not None
    holder.feed.poll_once()  # what the feed thread does on a NOTIFY / data_version change
    patched = holder.current()
    rebuilt = IndexHolder.from_session_factory(fac, follow=False).refresh()
    assert differences(patched, rebuilt) == set()
    assert len(patched) == len(rebuilt)
    for features in REQUESTS:
        assert _ranked(patched, features) == _ranked(rebuilt, features)


def _fans(fac: Factory) -> int:
    """The rule segment ``fans`` and, for every example, a new live line item targeting it
    (written by another actor than the test's, so its undo cannot reach them)."""
    seed = CatalogWriter(fac, actor="seed-fans")
    with fac() as s:
        found = s.scalar(select(Segment.id).where(Segment.name == "fans"))
        adv = s.scalar(select(Advertiser.id).order_by(Advertiser.id).limit(1))
    if found is None:
        fans = {"name": "fans", "kind": "rule", "rule": 'country = "US"'}
        found = seed.create("segment", fans)["id"]
    name = f"fans-{uuid.uuid4().hex[:8]}"
    camp = seed.create("campaign", {**CAMPAIGN, "advertiser_id": adv, "name": name})["id"]
    creative = {"advertiser_id": adv, "name": name, "format": "video_15s"}
    cr = seed.create("creative", {**creative, "attributes": {"duration": 5}})["id"]
    li = seed.create("line_item", {"campaign_id": camp, "name": name, "bid_cpm": "2"})["id"]
    seed.attach_creative(li, cr)
    seed.update("line_item", li, {"targeting": 'segment("fans")', "status": "active"})
    seed.update("campaign", camp, {"status": "active"})
    return int(found)


def _step(w: CatalogWriter, fac: Factory, fans: int, s: tuple[Any, ...]) -> None:
    if s[0] == "fans":
        w.update("segment", fans, {"rule": s[1]})
    else:
        _apply(w, fac, s)


def _run(fac: Factory, changes: list[tuple[tuple[Any, ...], str]]) -> None:
    _base(fac)
    fans = _fans(fac)
    holder = IndexHolder.from_session_factory(fac, patch_max=10_000)
    holder.refresh()
    assert holder.feed is not None
    holder.feed.reset(holder.feed.latest())
    w = CatalogWriter(fac, actor=f"patch-{uuid.uuid4().hex[:8]}", depth=1000)
    generation = holder.generation
    for change, tail in changes:
        for s in [change, *((t,) for t in tail)]:
            with contextlib.suppress(AdtargetError):  # refused: the index must agree too
                _step(w, fac, fans, s)
            _check(holder, fac)
    assert holder.generation == generation  # every change was a patch, never a rebuild


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.lists(step, max_size=10))
def test_patched_equals_rebuilt_sqlite(tmp_path: Path, changes: list[Any]) -> None:
    _, fac = open_factory(f"sqlite:///{tmp_path / 'patch.sqlite3'}")
    _run(fac, changes)


@pytest.mark.postgres
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.lists(step, max_size=10))
def test_patched_equals_rebuilt_postgres(pg_url: str, changes: list[Any]) -> None:
    engine, fac = open_factory(pg_url)
    try:
        _run(fac, changes)
    finally:
        engine.dispose()
