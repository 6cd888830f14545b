"""Advertiser scope inside rules and listings: an advertiser key sees only its own (or global)
segments.

Why here and not in each route: a rule is a way to *read* a segment (sizing ``segment("x")``
counts x's members; targeting it spends on x's users). Object routes already hide another
advertiser's segment rows (404), so the same key must not reach those users through a rule in a
line item's targeting, a rule segment or an audience query, nor learn their names from an error
("did you mean"), a conflict or a listing.

How: the segments the key may not see are *hidden*, and the rule is validated as if they did not
exist, on the very rule object that is then evaluated or stored (never on a second parse of the
request bytes). A hidden name therefore answers exactly as a missing one does, and is never
offered as a suggestion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from adtarget.api.deps import Principal
from adtarget.catalog.checks import compile_targeting
from adtarget.catalog.segments import foreign_segment_names, segment_owner
from adtarget.errors import Conflict


def hidden_segments(session: Session, principal: Principal) -> frozenset[str]:
    """Names of the segments ``principal`` may not see (other advertisers'); empty for
    admin, reader and decisions keys, which see every segment."""
    if principal.role != "advertiser":
        return frozenset()
    return foreign_segment_names(session, advertiser_id=principal.advertiser_id)


def visible_segment_names(names: Iterable[str], hidden: frozenset[str]) -> list[str]:
    """``names`` without the hidden ones (for listings such as ``GET /v1/snapshots``)."""
    return [n for n in names if n not in hidden]


def scrub_conflict(err: Conflict, *, session: Session, principal: Principal, kind: str) -> Conflict:
    """A name conflict with an object the caller may not see, without that object's id.

    Segment names are unique across advertisers, so the name being taken cannot be hidden; who
    holds it and under which id can.
    """
    existing = err.details.get("existing_id")
    if kind != "segment" or principal.role != "advertiser" or existing is None:
        return err
    owner = segment_owner(session, existing)
    if owner is None or owner == principal.advertiser_id:
        return err
    return Conflict("this segment name is not available; choose another", field="name")


def check_rule_text(
    session: Session,
    principal: Principal,
    text: Any,
    *,
    field: str,
    own_name: str | None = None,
) -> None:
    """Parse and validate an advertiser key's rule text with the hidden segments left out.

    The catalog's command layer then stores this same text (the parser is deterministic); a
    hidden segment fails here exactly as a missing one fails there.
    """
    if principal.role != "advertiser" or not isinstance(text, str) or not text.strip():
        return

    compile_targeting(
        text,
        session=session,
        field=field,
        own_name=own_name,
        hidden=hidden_segments(session, principal),
    )
