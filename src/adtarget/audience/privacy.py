"""Privacy floor: counts under the minimum audience size are hidden, tiny segments untargetable.

Why a rule here and not only in sizing: hiding a count of 7 is pointless if a line item may
still target those 7 users (serving reveals membership). So a line item whose targeting names a
segment whose last computed size (``segments.last_size``, refreshed at every publish) is below
``min_audience_size`` is refused with an error naming the segment and its threshold. A segment
whose size was never computed (no upload has published since it was created) is not refused:
its size is unknown, and the next publish records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adtarget.errors import InvalidValue
from adtarget.rules.ast import Rule, segment_names
from adtarget.rules.format import from_json
from adtarget.rules.parse import parse


def below_threshold(n: int, min_size: int) -> bool:
    """Whether an exact count must be hidden (``count: null``, ``below_threshold: true``)."""
    return n < min_size


def check_targetable(
    rule: Rule, sizes: Mapping[str, int | None], min_size: int, *, field: str = "targeting"
) -> None:
    """Refuse a rule that names a segment known to be smaller than ``min_size``.

    Args:
        rule: the parsed targeting rule.
        sizes: segment name -> last computed size (``None`` = never computed).
        min_size: the minimum audience size (settings ``min_audience_size``).
        field: the input field named in the error.
    """
    for name in sorted(segment_names(rule)):
        size = sizes.get(name)
        if size is not None and below_threshold(size, min_size):
            raise InvalidValue(
                f"segment {name!r} has fewer than {min_size} users (the minimum audience "
                "size) and cannot be targeted; grow the segment or target something broader",
                field=field,
                segment=name,
                below_threshold=True,
            )


def check_line_item_targeting(
    targeting: str | Mapping[str, Any] | None,
    *,
    session: Session,
    min_size: int | None = None,
    field: str = "targeting",
) -> None:
    """``check_targetable`` with segment sizes from the catalog (called on line item writes)."""
    if targeting is None or (isinstance(targeting, str) and not targeting.strip()):
        return
    rule = parse(targeting) if isinstance(targeting, str) else from_json(targeting)
    names = segment_names(rule)
    if not names:
        return
    from adtarget.catalog.tables import Segment

    if min_size is None:
        from adtarget.settings import get_settings

        min_size = get_settings().min_audience_size
    rows = session.execute(select(Segment.name, Segment.last_size).where(Segment.name.in_(names)))
    check_targetable(rule, {name: size for name, size in rows}, min_size, field=field)
