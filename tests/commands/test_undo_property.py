"""Property: any sequence of catalog commands (with undos/redos mixed in), then undo-all,
returns the catalog to its exact starting state, and redoing those undos reaches the exact end
state again — on SQLite and on real PostgreSQL.

"Exact" here means: every row of every table commands touch (advertisers, campaigns, line
items, creatives, segments, dimensions, line-item/creative links) has the same primary key and
the same value in every column, except ``version`` and ``updated_at``, which record *that* the
row changed and move forward on undo by design (a stale client must not write over a restored
row). Rows created and then undone are gone, not archived. ``command_log`` is not compared: the
history of what was done and undone is kept on purpose.

Each example runs as a fresh actor, so undo-all reverses exactly that example's commands even
though examples share one database. Commands the catalog refuses (duplicate names, forbidden
status moves, unknown ids) are part of the sequence too: they must leave no trace.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adtarget.catalog.kinds import KINDS
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.errors import AdtargetError, NothingToRedo, NothingToUndo

from .conftest import CAMPAIGN, Factory, dump

META = frozenset({"version", "updated_at"})
NAMES = st.sampled_from(["a", "b", "c"])
STATUS = st.sampled_from(["draft", "active", "paused", "archived"])

op = st.one_of(
    st.tuples(st.just("advertiser"), NAMES),
    st.tuples(st.just("campaign"), st.integers(0, 5), NAMES),
    st.tuples(st.just("line_item"), st.integers(0, 5), NAMES),
    st.tuples(st.just("creative"), st.integers(0, 5), NAMES),
    st.tuples(st.just("dimension"), st.sampled_from(["country", "genres"])),
    st.tuples(st.just("segment"), NAMES),
    st.tuples(
        st.just("li_update"),
        st.integers(0, 5),
        st.fixed_dictionaries(
            {},
            optional={
                "priority": st.integers(1, 16),
                "bid_cpm": st.sampled_from(["1", "2.5"]),
                "status": STATUS,
                "targeting": st.sampled_from(["", 'country in ("US")']),
                "name": NAMES,
            },
        ),
    ),
    st.tuples(
        st.just("camp_update"),
        st.integers(0, 5),
        st.fixed_dictionaries(
            {}, optional={"budget_total": st.sampled_from(["10", "20000"]), "status": STATUS}
        ),
    ),
    st.tuples(st.just("attach"), st.integers(0, 5), st.integers(0, 5)),
    st.tuples(st.just("detach"), st.integers(0, 5), st.integers(0, 5)),
    st.tuples(st.just("bulk"), st.lists(st.integers(0, 5), min_size=1, max_size=4), STATUS),
)
#: After each change: maybe some undos/redos ("u" undo, "r" redo), so chains of them happen.
TAIL = st.sampled_from(["", "", "u", "uu", "ur", "uur", "uuur", "r"])


def _ids(fac: Factory, kind: str) -> list[int]:
    model: Any = KINDS[kind].table
    with fac() as s:
        return list(s.scalars(select(model.id).order_by(model.id)))


def _pick(ids: list[int], i: int) -> int:
    return ids[i % len(ids)] if ids else 10_000 + i  # an unknown id: must be refused cleanly


def _apply(w: CatalogWriter, fac: Factory, step: tuple[Any, ...]) -> None:
    name = step[0]
    if name == "u":
        w.undo()
    elif name == "r":
        w.redo()
    elif name == "advertiser":
        w.create("advertiser", {"name": f"adv-{step[1]}"})
    elif name == "campaign":
        adv = _pick(_ids(fac, "advertiser"), step[1])
        w.create("campaign", {**CAMPAIGN, "advertiser_id": adv, "name": f"c-{step[2]}"})
    elif name == "line_item":
        camp = _pick(_ids(fac, "campaign"), step[1])
        w.create("line_item", {"campaign_id": camp, "name": f"li-{step[2]}", "bid_cpm": "3"})
    elif name == "creative":
        adv = _pick(_ids(fac, "advertiser"), step[1])
        w.create(
            "creative",
            {
                "advertiser_id": adv,
                "name": f"cr-{step[2]}",
                "format": "video_15s",
                "attributes": {"duration": 10},
            },
        )
    elif name == "dimension":
        dtype = "category" if step[1] == "country" else "set"
        w.create("dimension", {"name": step[1], "type": dtype})
    elif name == "segment":
        w.create("segment", {"name": f"seg_{step[1]}", "kind": "list"})
    elif name == "li_update":
        w.update("line_item", _pick(_ids(fac, "line_item"), step[1]), step[2])
    elif name == "camp_update":
        w.update("campaign", _pick(_ids(fac, "campaign"), step[1]), step[2])
    elif name in ("attach", "detach"):
        li = _pick(_ids(fac, "line_item"), step[1])
        cr = _pick(_ids(fac, "creative"), step[2])
        (w.attach_creative if name == "attach" else w.detach_creative)(li, cr)
    elif name == "bulk":
        lis = _ids(fac, "line_item")
        w.bulk("line_item", [_pick(lis, i) for i in step[1]], {"status": step[2]})


def _base(fac: Factory) -> None:
    """A small catalog made by another actor, so sequences start with rows to work on."""
    if _ids(fac, "advertiser"):
        return
    w = CatalogWriter(fac, actor="seed")
    adv = w.create("advertiser", {"name": "base"})["id"]
    w.create("dimension", {"name": "country", "type": "category"})
    camp = w.create("campaign", {**CAMPAIGN, "advertiser_id": adv, "name": "base"})["id"]
    for i in range(3):
        w.create("line_item", {"campaign_id": camp, "name": f"base-{i}", "bid_cpm": "1"})
    for i in range(2):
        w.create(
            "creative",
            {
                "advertiser_id": adv,
                "name": f"base-{i}",
                "format": "video_15s",
                "attributes": {"duration": 5},
            },
        )


def _run(fac: Factory, changes: list[tuple[tuple[Any, ...], str]]) -> None:
    _base(fac)
    w = CatalogWriter(fac, actor=f"prop-{uuid.uuid4().hex[:8]}", depth=1000)
    start = dump(fac, ignore=META)
    steps = [s for change, tail in changes for s in [change, *((t,) for t in tail)]]
    for step in steps:
        before = dump(fac)
        try:
            _apply(w, fac, step)
        except (NothingToUndo, NothingToRedo):
            assert dump(fac) == before
        except AdtargetError:
            assert dump(fac) == before  # a refused command leaves no trace
    end = dump(fac, ignore=META)
    undone = 0
    while True:
        try:
            w.undo()
        except NothingToUndo:
            break
        undone += 1
    assert dump(fac, ignore=META) == start
    for _ in range(undone):  # redo exactly what undo-all took back: the end state again
        w.redo()
    assert dump(fac, ignore=META) == end


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.lists(st.tuples(op, TAIL), max_size=12))
def test_undo_all_restores_start_sqlite(sqlite_factory: Factory, changes: list[Any]) -> None:
    _run(sqlite_factory, changes)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.lists(st.tuples(op, TAIL), max_size=12))
def test_undo_all_restores_start_postgres(pg_factory: Factory, changes: list[Any]) -> None:
    _run(pg_factory, changes)


def _run_two_actors(fac: Factory, changes: list[tuple[bool, tuple[Any, ...], str]]) -> None:
    """Two people interleave changes (often to the same rows); then both undo everything.

    Each undo that would overwrite the other's later change is refused (and must leave no
    trace); taking turns, each undoing as far as they can, must still reach the exact start,
    because undoing in global newest-first order is always possible.
    """
    _base(fac)
    tag = uuid.uuid4().hex[:8]
    writers = [CatalogWriter(fac, actor=f"{who}-{tag}", depth=1000) for who in ("ann", "ben")]
    start = dump(fac, ignore=META)
    for second, change, tail in changes:
        w = writers[int(second)]
        for step in [change, *((t,) for t in tail)]:
            before = dump(fac)
            try:
                _apply(w, fac, step)
            except AdtargetError:
                assert dump(fac) == before
    progress = True
    while progress:  # each person undoes as far as they can, then the other, and again
        progress = False
        for w in writers:
            while True:
                before = dump(fac)
                try:
                    w.undo()
                except AdtargetError:
                    assert dump(fac) == before
                    break
                progress = True
    assert dump(fac, ignore=META) == start


#: Changes to the same few rows, so one person's undo often meets the other's later change.
SHARED = st.one_of(
    st.tuples(
        st.just("li_update"),
        st.integers(0, 1),
        st.fixed_dictionaries({"priority": st.integers(1, 16)}),
    ),
    st.tuples(
        st.just("li_update"),
        st.integers(0, 1),
        st.fixed_dictionaries({"status": st.sampled_from(["active", "paused"])}),
    ),
    st.tuples(
        st.just("camp_update"),
        st.just(0),
        st.fixed_dictionaries({"budget_total": st.integers(1, 10**6).map(str)}),
    ),
    st.tuples(st.just("bulk"), st.lists(st.integers(0, 2), min_size=1, max_size=3), STATUS),
    st.tuples(st.just("attach"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("detach"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("line_item"), st.just(0), NAMES),
)
TWO = st.lists(st.tuples(st.booleans(), SHARED, st.just("")), min_size=3, max_size=10)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=TWO)
def test_two_actors_undo_all_restores_start_sqlite(
    sqlite_factory: Factory, changes: list[Any]
) -> None:
    _run_two_actors(sqlite_factory, changes)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=TWO)
def test_two_actors_undo_all_restores_start_postgres(
    pg_factory: Factory, changes: list[Any]
) -> None:
    _run_two_actors(pg_factory, changes)
