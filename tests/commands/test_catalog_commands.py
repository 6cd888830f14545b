"""CatalogWriter: persisted undo/redo per actor, conflicts, depth, restart, composites."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from adtarget.catalog.tables import CommandLog, LineItem
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.commands.persisted import CommandAlreadyExecuted
from adtarget.commands.row_commands import Composite, UpdateObject
from adtarget.delivery.service import ingest_events, open_event_store, spend_totals_reader
from adtarget.errors import Conflict, InvalidTransition, InvalidValue, NothingToRedo, NothingToUndo
from adtarget.settings import Settings

from .conftest import CAMPAIGN, Factory, dump, open_factory, seed

W = Callable[..., CatalogWriter]
META = frozenset({"version", "updated_at"})


def test_empty_history_raises(writer_for: W) -> None:
    w = writer_for()
    with pytest.raises(NothingToUndo, match="alice"):
        w.undo()
    with pytest.raises(NothingToRedo):
        w.redo()
    assert w.history() == []


def test_update_undo_restores_values_and_bumps_version(writer_for: W, factory: Factory) -> None:
    w = writer_for()
    ids = seed(w)
    li = ids["line_item"]
    out = w.update("line_item", li, {"bid_cpm": "99", "status": "active"})
    assert out["version"] == 2 and out["status"] == "active"
    res = w.undo()
    assert res["undone"]["description"].startswith(f"update line_item {li}")
    assert res["undone"]["state"] == "undone"
    row = res["result"]["rows"][0]["row"]
    assert row["status"] == "draft" and row["bid_cpm"] == "12.500000"
    assert row["version"] == 3  # bumped, never rewound
    assert res["result"]["rows"][0]["fields"]["status"] == ["active", "draft"]
    assert "note" not in res and "served" not in res  # it never served (no settings: no check)
    redone = w.redo()
    assert redone["result"]["rows"][0]["row"]["status"] == "active"
    assert redone["result"]["rows"][0]["row"]["version"] == 4


def test_undo_of_create_deletes_and_redo_recreates_same_id(writer_for: W, factory: Factory) -> None:
    w = writer_for()
    adv = w.create("advertiser", {"name": "Solo"})
    w.undo()
    assert dump(factory)["advertiser"] == []
    w.redo()
    rows = dump(factory)["advertiser"]
    assert [r["id"] for r in rows] == [adv["id"]] and rows[0]["name"] == "Solo"


def test_new_command_clears_redo(writer_for: W) -> None:
    w = writer_for()
    w.create("advertiser", {"name": "A"})
    w.undo()
    w.create("advertiser", {"name": "B"})
    with pytest.raises(NothingToRedo):
        w.redo()
    assert [h["description"][:20] for h in w.history()] == ["create advertiser 'B"]


def test_failed_execute_leaves_no_trace(writer_for: W, factory: Factory) -> None:
    w = writer_for()
    ids = seed(w)
    before = dump(factory)
    history = w.history()
    with pytest.raises(InvalidTransition):
        w.update("line_item", ids["line_item"], {"status": "paused"})  # draft -> paused refused
    with pytest.raises(Conflict, match="already exists"):
        w.create("advertiser", {"name": "Acme"})
    with pytest.raises(InvalidValue):
        w.create("nonsense", {"name": "x"})
    assert dump(factory) == before
    assert w.history() == history


def test_bulk_is_one_unit_and_rolls_back_on_failure(writer_for: W, factory: Factory) -> None:
    w = writer_for()
    ids = seed(w)
    lis = [ids["line_item"]] + [
        w.create("line_item", {"campaign_id": ids["campaign"], "name": f"L{i}", "bid_cpm": "1"})[
            "id"
        ]
        for i in range(5)
    ]
    w.bulk("line_item", lis, {"status": "active"})
    out = w.bulk("line_item", lis, {"status": "paused"})
    assert {r["status"] for r in out} == {"paused"}
    assert w.history()[0]["description"].startswith("bulk update 6 line_item(s)")
    w.undo()
    with factory() as s:
        assert {li.status for li in s.scalars(select(LineItem))} == {"active"}
    # One line item archived meanwhile: archived -> active is refused, the whole bulk rolls back.
    w.update("line_item", lis[3], {"status": "archived"})
    before = dump(factory)
    n = len(w.history())
    with pytest.raises(InvalidTransition):
        w.bulk("line_item", lis, {"status": "active"})
    assert dump(factory) == before and len(w.history()) == n


def test_nested_composite_touching_one_row_twice(writer_for: W, factory: Factory) -> None:
    w = writer_for()
    ids = seed(w)
    li = ids["line_item"]
    start = dump(factory, ignore=META)
    inner = Composite(
        "inner", [UpdateObject(obj_kind="line_item", obj_id=li, patch={"bid_cpm": "5"})]
    )
    outer = Composite(
        "outer",
        [
            UpdateObject(obj_kind="line_item", obj_id=li, patch={"status": "active"}),
            inner,
            UpdateObject(obj_kind="line_item", obj_id=li, patch={"priority": 2}),
        ],
    )
    w.execute(outer)
    assert w.history()[0]["description"] == "outer"
    w.undo()
    assert dump(factory, ignore=META) == start
    w.redo()
    w.undo()
    assert dump(factory, ignore=META) == start


def test_double_execute_of_same_command_is_refused(writer_for: W) -> None:
    w = writer_for()
    ids = seed(w)
    cmd = UpdateObject(obj_kind="line_item", obj_id=ids["line_item"], patch={"priority": 1})
    w.execute(cmd)
    with pytest.raises(CommandAlreadyExecuted):
        w.execute(cmd)
    assert sum(h["description"] == cmd.description for h in w.history()) == 1


def test_conflict_refusal_names_fields_versions_and_actor(writer_for: W, factory: Factory) -> None:
    alice, bob = writer_for("alice"), writer_for("bob")
    ids = seed(alice)
    li = ids["line_item"]
    alice.update("line_item", li, {"bid_cpm": "20"})
    bob.update("line_item", li, {"priority": 1})
    before = dump(factory)
    with pytest.raises(Conflict) as info:
        alice.undo()
    err = info.value
    assert "priority 4 -> 1" in err.message
    assert "version 3" in err.message and "version 2" in err.message
    assert "bob" in err.message and "Nothing was overwritten" in err.message
    assert err.to_dict()["changed_fields"] == ["priority"]
    assert err.http_status == 409
    assert dump(factory) == before  # refused: nothing written
    assert alice.history()[0]["state"] == "done"
    # Once bob undoes his change, alice's undo goes through.
    bob.undo()
    alice.undo()
    with factory() as s:
        row = s.get(LineItem, li)
        assert row is not None and str(row.bid_cpm) == "12.500000" and row.priority == 4


def test_undo_is_per_actor(writer_for: W, factory: Factory) -> None:
    alice, bob = writer_for("alice"), writer_for("bob")
    alice.create("advertiser", {"name": "A"})
    bob.create("advertiser", {"name": "B"})
    assert alice.undo()["undone"]["description"] == "create advertiser 'A' (id 1)"
    assert [r["name"] for r in dump(factory)["advertiser"]] == ["B"]
    with pytest.raises(NothingToUndo):
        alice.undo()
    assert [h["actor"] for h in bob.history()] == ["bob"]


def test_undo_of_referenced_create_is_refused(writer_for: W) -> None:
    alice, bob = writer_for("alice"), writer_for("bob")
    adv = alice.create("advertiser", {"name": "A"})
    bob.create("campaign", {**CAMPAIGN, "advertiser_id": adv["id"]})
    with pytest.raises(Conflict, match="referenced by 1 campaign"):
        alice.undo()


def test_redo_refused_when_row_moved_on(writer_for: W) -> None:
    alice, bob = writer_for("alice"), writer_for("bob")
    ids = seed(alice)
    alice.update("line_item", ids["line_item"], {"priority": 2})
    alice.undo()
    bob.update("line_item", ids["line_item"], {"name": "renamed"})
    with pytest.raises(Conflict, match="cannot redo.*name 'LI-1' -> 'renamed'.*bob"):
        alice.redo()


def test_depth_bound_prunes_oldest(writer_for: W, factory: Factory) -> None:
    w = writer_for(depth=3)
    for i in range(5):
        w.create("advertiser", {"name": f"A{i}"})
    assert len(w.history()) == 3
    for _ in range(3):
        w.undo()
    with pytest.raises(NothingToUndo):
        w.undo()
    assert [r["name"] for r in dump(factory)["advertiser"]] == ["A0", "A1"]
    with factory() as s:
        assert len(list(s.scalars(select(CommandLog)))) == 3  # the undone ones, for redo


def test_history_survives_restart(catalog_url: str) -> None:
    engine, fac = open_factory(catalog_url)
    w = CatalogWriter(fac, actor="alice")
    ids = seed(w)
    w.update("campaign", ids["campaign"], {"budget_total": "5"})
    engine.dispose()
    engine2, fac2 = open_factory(catalog_url)  # a new process, in effect
    w2 = CatalogWriter(fac2, actor="alice")
    assert w2.history()[0]["description"].startswith(f"update campaign {ids['campaign']}")
    out = w2.undo()
    assert out["result"]["rows"][0]["row"]["budget_total"] == "1000.500000"
    engine2.dispose()


def test_undo_of_served_line_item_says_so_and_leaves_delivery_alone(
    factory: Factory, settings: Settings
) -> None:
    w = CatalogWriter(
        factory, actor="alice", settings=settings, spend_totals=spend_totals_reader(settings)
    )
    ids = seed(w)
    li, camp = ids["line_item"], ids["campaign"]
    other = w.create("line_item", {"campaign_id": camp, "name": "LI-2", "bid_cpm": "1"})["id"]
    w.attach_creative(li, ids["creative"])
    w.update("campaign", camp, {"status": "active"})
    w.update("line_item", li, {"status": "active"})
    w.update("line_item", li, {"status": "paused"})
    quiet = w.undo()  # nothing served yet: no note
    assert "note" not in quiet and "served" not in quiet
    w.redo()

    store = open_event_store(settings)
    ts = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    events = [
        {
            "event_id": f"e{i}",
            "type": "impression",
            "ts": ts,
            "user_id": f"u{i}",
            "line_item_id": str(li),
            "campaign_id": str(camp),
            "advertiser_id": str(ids["advertiser"]),
            "cost": 1.25,
        }
        for i in range(2)
    ]
    assert ingest_events(store=store, events=events).accepted == 2
    totals, rows = store.spend_totals(), store.scan().num_rows

    out = w.undo()  # undo "pause": the line item served meanwhile
    assert out["result"]["rows"][0]["row"]["status"] == "active"
    assert out["served"] == [{"line_item_id": li, "spend": "2.5"}]
    assert f"line item(s) {li} (spend 2.5) already served" in out["note"]
    assert "delivery history" in out["note"] and "untouched" in out["note"]
    assert store.spend_totals() == totals and store.scan().num_rows == rows

    w.update("campaign", camp, {"budget_total": "99"})  # governs the served line item too
    assert w.undo()["served"] == [{"line_item_id": li, "spend": "2.5"}]
    w.update("line_item", other, {"priority": 9})  # a line item that never served
    assert "note" not in w.undo()
    store.close()


def test_detach_and_noop(writer_for: W, factory: Factory) -> None:
    w = writer_for()
    ids = seed(w)
    w.attach_creative(ids["line_item"], ids["creative"])
    w.detach_creative(ids["line_item"], ids["creative"])
    assert dump(factory)["line_item_creative"] == []
    w.undo()
    assert len(dump(factory)["line_item_creative"]) == 1
    n = len(w.history())
    w.update("line_item", ids["line_item"], {"priority": 4})  # same value: nothing logged
    assert len(w.history()) == n


def test_concurrent_undos_by_one_actor_serialize(factory: Factory) -> None:
    import threading

    start = dump(factory, ignore=META)
    w = CatalogWriter(factory, actor="alice")
    for i in range(4):
        w.create("advertiser", {"name": f"A{i}"})
    errors: list[BaseException] = []

    def undo_once() -> None:
        try:
            CatalogWriter(factory, actor="alice").undo()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=undo_once) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [h["state"] for h in w.history()] == ["undone"] * 4
    assert dump(factory, ignore=META) == start


def test_redo_of_create_refused_when_name_taken_meanwhile(writer_for: W, factory: Factory) -> None:
    alice, bob = writer_for("alice"), writer_for("bob")
    alice.create("advertiser", {"name": "Same"})
    alice.undo()
    bob.create("advertiser", {"name": "Same"})
    before = dump(factory)
    with pytest.raises(Conflict):
        alice.redo()
    assert dump(factory) == before
    assert alice.history()[0]["state"] == "undone"  # still redoable once the clash is gone
    bob.undo()
    alice.redo()
    assert [r["name"] for r in dump(factory)["advertiser"]] == ["Same"]


def test_undo_attach_refused_when_other_actor_reattached(writer_for: W, factory: Factory) -> None:
    alice, bob = writer_for("alice"), writer_for("bob")
    ids = seed(alice)
    alice.attach_creative(ids["line_item"], ids["creative"])
    bob.detach_creative(ids["line_item"], ids["creative"])
    bob.attach_creative(ids["line_item"], ids["creative"])  # bob's link, not alice's
    with pytest.raises(Conflict, match="removed and added again.*bob"):
        alice.undo()
    assert len(dump(factory)["line_item_creative"]) == 1
    bob.undo()
    bob.undo()
    alice.undo()
    assert dump(factory)["line_item_creative"] == []


def test_unreadable_delivery_store_does_not_block_undo(
    factory: Factory, settings: Settings
) -> None:
    # A PostgreSQL event store at a port nothing listens on: the undo goes through, and says
    # that delivery could not be checked.
    down = settings.model_copy(
        update={"events_store": "postgres", "events_url": "postgresql://127.0.0.1:1/none"}
    )
    w = CatalogWriter(factory, actor="alice", settings=down, spend_totals=spend_totals_reader(down))
    ids = seed(w)
    w.update("line_item", ids["line_item"], {"priority": 9})
    out = w.undo()
    assert out["result"]["rows"][0]["row"]["priority"] == 4
    assert out["served"] is None and "could not check delivery" in out["note"]


def _refresh_size(factory: Factory, seg_id: int, size: int) -> None:
    """What an audience upload does to every segment: recompute its size (bumps version)."""
    from adtarget.catalog.tables import Segment

    with factory() as s, s.begin():
        seg = s.get(Segment, seg_id)
        assert seg is not None
        seg.last_size, seg.last_snapshot = size, f"v{size:06d}"


def test_segment_size_refresh_does_not_block_undo(writer_for: W, factory: Factory) -> None:
    w = writer_for()
    seg = w.create("segment", {"name": "fans", "kind": "list"})["id"]
    w.update("segment", seg, {"ttl_seconds": 3600})
    _refresh_size(factory, seg, 42)
    row = w.undo()["result"]["rows"][0]["row"]
    assert row["ttl_seconds"] is None and row["last_size"] == 42  # size not rewound
    _refresh_size(factory, seg, 50)
    row = w.redo()["result"]["rows"][0]["row"]
    assert row["ttl_seconds"] == 3600 and row["last_size"] == 50
    writer_for("bob").update("segment", seg, {"ttl_seconds": 7200})  # a real change: refused
    with pytest.raises(Conflict, match="ttl_seconds 3600 -> 7200"):
        w.undo()
    writer_for("bob").undo()
    _refresh_size(factory, seg, 60)
    w.undo()
    out = w.undo()  # undo the create: only the size moved since, so it may go
    assert out["result"]["rows"][0]["exists"] is False


def test_link_changed_and_changed_back_by_other_is_still_a_conflict(
    writer_for: W, factory: Factory
) -> None:
    """The link row has no version: "absent as I left it" is not enough (ABA)."""
    ann, ben = writer_for("ann"), writer_for("ben")
    ids = seed(ann)
    start = dump(factory, ignore=META)
    li, cr = ids["line_item"], ids["creative"]
    ben.attach_creative(li, cr)
    ann.detach_creative(li, cr)
    ben.attach_creative(li, cr)
    ben.detach_creative(li, cr)  # absent again, exactly as ann's detach left it
    with pytest.raises(Conflict, match="changed again after this command") as info:
        ann.undo()
    assert "ben: detach creative" in info.value.message
    ben.undo()
    ben.undo()
    ann.undo()  # now nothing newer is in effect on the link
    ben.undo()
    assert dump(factory, ignore=META) == start


@pytest.mark.postgres
def test_served_check_reads_the_postgres_event_store(pg_url: str, settings: Settings) -> None:
    engine, fac = open_factory(pg_url)
    pg = settings.model_copy(update={"events_store": "postgres", "events_url": pg_url})
    w = CatalogWriter(fac, actor="alice", settings=pg, spend_totals=spend_totals_reader(pg))
    ids = seed(w)
    store = open_event_store(pg)
    ts = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    event = {
        "event_id": "e1",
        "type": "impression",
        "ts": ts,
        "user_id": "u1",
        "line_item_id": str(ids["line_item"]),
        "campaign_id": str(ids["campaign"]),
        "advertiser_id": str(ids["advertiser"]),
        "cost": 0.5,
    }
    assert ingest_events(store=store, events=[event]).accepted == 1
    w.update("line_item", ids["line_item"], {"priority": 9})
    out = w.undo()
    assert out["served"] == [{"line_item_id": ids["line_item"], "spend": "0.5"}]
    assert store.spend_totals() == [(str(ids["line_item"]), str(ids["campaign"]), 500_000)]
    store.close()
    engine.dispose()
