"""Dedup by ``event_id`` alone within a window (default 48 h), whatever the timestamps say, on
every event store: a retry whose timestamp was regenerated across midnight counts once."""

from __future__ import annotations

from datetime import timedelta

from adtarget.delivery.service import ingest_events

from .conftest import NOW, StoreFactory, make_events


def _at(event: dict[str, object], when: object) -> dict[str, object]:
    return {**event, "ts": when.isoformat().replace("+00:00", "Z")}  # type: ignore[attr-defined]


def test_a_retry_across_midnight_is_a_duplicate(make_store: StoreFactory) -> None:
    store = make_store()
    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    ev = make_events(1, seed=31, prefix="retry")[0]
    first = ingest_events(store=store, events=[_at(ev, midnight - timedelta(seconds=1))])
    assert first.accepted == 1
    retry = ingest_events(store=store, events=[_at(ev, midnight + timedelta(seconds=1))])
    assert (retry.accepted, retry.duplicates) == (0, 1)
    both = [_at(ev, midnight + timedelta(hours=1)), _at(ev, midnight - timedelta(hours=1))]
    assert ingest_events(store=store, events=both).duplicates == 2
    other = make_events(1, seed=32, prefix="other")[0]
    pair = [_at(other, midnight - timedelta(seconds=1)), _at(other, midnight)]
    assert (r := ingest_events(store=store, events=pair)).accepted == 1 and r.duplicates == 1
    assert store.scan()["event_id"].to_pylist().count(ev["event_id"]) == 1


def test_an_id_older_than_the_window_is_new_again(make_store: StoreFactory) -> None:
    store = make_store()
    ev = _at(make_events(1, seed=33, prefix="old")[0], NOW - timedelta(days=2))
    assert ingest_events(store=store, events=[ev]).accepted == 1
    age_ids(store, hours=49)
    again = _at(ev, NOW - timedelta(minutes=5))
    assert ingest_events(store=store, events=[again]).accepted == 1


def age_ids(store: object, *, hours: int) -> None:
    """Pretend every recorded id was first seen ``hours`` ago."""
    db = getattr(store, "_db", None)
    if db is not None:  # Parquet: the SQLite index
        db.execute("UPDATE seen_ids SET seen_at = seen_at - ?", [hours * 3600])
        return
    store.connection.execute(  # type: ignore[attr-defined]
        "UPDATE delivery_event_ids SET seen_at = seen_at - make_interval(hours => %s)", [hours]
    )


def test_ids_stored_before_dedup_by_id_are_carried_over(make_store: StoreFactory) -> None:
    """A store written before the upgrade knew ids only by ``(day, event_id)``: reopened, a retry
    of such an event across midnight is still a duplicate."""
    store = make_store()
    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    ev = make_events(1, seed=34, prefix="before")[0]
    assert ingest_events(store=store, events=[_at(ev, midnight - timedelta(seconds=1))]).accepted
    forget_ids_as_before_the_upgrade(store)
    store.close()
    reopened = make_store()
    retry = ingest_events(store=reopened, events=[_at(ev, midnight + timedelta(seconds=1))])
    assert (retry.accepted, retry.duplicates) == (0, 1)


def forget_ids_as_before_the_upgrade(store: object) -> None:
    """Leave the store as the code before dedup by id alone left it."""
    db = getattr(store, "_db", None)
    if db is not None:  # Parquet: ids lived in seen(day, event_id)
        db.execute(
            "INSERT INTO seen (day, event_id) SELECT date(seen_at - 1, 'unixepoch'), event_id "
            "FROM seen_ids"
        )
        db.execute("DELETE FROM seen_ids")
        db.commit()
        return
    store.connection.execute("DROP TABLE delivery_event_ids")  # type: ignore[attr-defined]
