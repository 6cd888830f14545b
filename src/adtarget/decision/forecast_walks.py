"""The engine's answer to a request, kept per (user, context, formats, limit) where it cannot
change during the replay: a user's repeated requests are decided once.

Why this is exact: the engine's walk (``DecisionEngine.serve_matched``) visits the matched
candidates in rank order and stops at its ``limit``-th pick; what it decides for a candidate
depends on the request, the candidate's flight and dayparting at the request's time, its
frequency-cap counters and its budget spend. A candidate with no cap, no dayparting, a flight
covering every replayed request and no budget that can bind (``forecast_twin.binding``) is
decided the same at every request of the replay (it is "steady"). When every candidate a walk
examined is steady, the same request later gets the same answer, and serving it changes no
counter (none is capped) and no spend a check could notice: the replay reuses the answer and
charges it (``forecast_replay``). Ad breaks are always decided (their fill has more rules).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from adtarget.decision.eligibility import has_budget
from adtarget.decision.index import Facts
from adtarget.decision.models import LiveLineItem

Picks = list[tuple[LiveLineItem, int]]
WalkKey = tuple[str, str, tuple[str, ...] | None, int]
"""(user, context, formats asked, limit) of a plain request."""


def examined(matched: int, picks: Picks, limit: int, position_of: dict[int, int]) -> int:
    """The positions a plain request's walk looked at: up to its last pick when it filled
    ``limit``, every matched one otherwise (none when ``limit`` is 0)."""
    if limit <= 0:
        return 0
    if picks and len(picks) >= limit:
        return matched & ((2 << position_of[picks[-1][0].id]) - 1)
    return matched


class Walks:
    """Answers kept per ``WalkKey`` for one engine of the replay.

    Args:
        items: the replay index's items, in position order.
        facts: their ``Facts`` (flight bounds).
        binding: ids whose budget may bind (a budget outside it always passes).
        first_ts, last_ts: the replay's first and last request times.
        off: nothing is kept (tests compare the replay with and without).
    """

    def __init__(
        self,
        items: Sequence[LiveLineItem],
        facts: Sequence[Facts],
        binding: Collection[int],
        first_ts: float,
        last_ts: float,
        off: bool = False,
    ) -> None:
        self.position_of = {it.id: p for p, it in enumerate(items)}
        self.off = off
        unsteady = 0
        for p, (it, fact) in enumerate(zip(items, facts, strict=True)):
            if (
                it.caps
                or it.dayparting is not None
                or not fact.lo <= first_ts
                or not last_ts < fact.hi
                or (has_budget(it) and it.id in binding)
            ):
                unsteady |= 1 << p
        self.unsteady = unsteady
        self.kept: dict[WalkKey, Picks] = {}

    def keep(self, key: WalkKey, matched: int, picks: Picks, limit: int) -> None:
        """Keep ``picks`` for ``key`` if every candidate its walk examined is steady."""
        if not self.off and not examined(matched, picks, limit, self.position_of) & self.unsteady:
            self.kept[key] = picks
