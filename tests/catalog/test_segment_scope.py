"""Which segment names a caller may use in a rule: an advertiser key sees the global segments
and its own, never another advertiser's private ones (``catalog.segments``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from adtarget.catalog import service
from adtarget.catalog.segments import usable_segment_names


def test_usable_segment_names_are_scoped_per_advertiser(session: Session) -> None:
    one = service.create(kind="advertiser", session=session, data={"name": "one"})
    two = service.create(kind="advertiser", session=session, data={"name": "two"})
    for name, owner in (("shared", None), ("one-vip", one.id), ("two-vip", two.id)):
        service.create(
            kind="segment",
            session=session,
            data={"name": name, "kind": "list", "advertiser_id": owner},
        )
    old = service.create(kind="segment", session=session, data={"name": "old", "kind": "list"})
    service.change_status(session=session, kind="segment", obj_id=old.id, status="archived")
    session.flush()

    def names(*, scoped: bool, advertiser_id: int | None) -> list[str]:
        return sorted(usable_segment_names(session, scoped=scoped, advertiser_id=advertiser_id))

    assert names(scoped=True, advertiser_id=one.id) == ["one-vip", "shared"]
    assert names(scoped=True, advertiser_id=two.id) == ["shared", "two-vip"]
    assert names(scoped=True, advertiser_id=None) == ["shared"]  # no advertiser: no private ones
    assert names(scoped=False, advertiser_id=None) == ["one-vip", "shared", "two-vip"]
