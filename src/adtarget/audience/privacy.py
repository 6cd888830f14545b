"""Privacy floor: counts under the minimum audience size are hidden, tiny segments untargetable.

Why a rule here and not only in sizing: hiding a count of 7 is pointless if a line item may
still target those 7 users (serving reveals membership). So a line item whose targeting names a
segment whose last computed size (``segments.last_size``, refreshed at every publish) is below
``min_audience_size`` is refused with an error naming the segment and its threshold. A segment
whose size was never computed (no upload has published since it was created) is not refused:
its size is unknown, and the next publish records it. The catalog applies this on line item
writes (``catalog.checks.check_line_item_targeting``), with the sizes it stores.
"""

from __future__ import annotations

from collections.abc import Mapping

from adtarget.errors import InvalidValue
from adtarget.rules.ast import Rule, segment_names


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
                "size, ADTARGET_MIN_AUDIENCE_SIZE) and cannot be targeted; grow the segment or "
                "target something broader",
                field=field,
                segment=name,
                below_threshold=True,
            )
