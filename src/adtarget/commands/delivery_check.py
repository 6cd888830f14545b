"""Did the rows an undo touched already reach delivery? A read-only look at the event store.

Why: undoing "activate line item 7" after it served must still restore the catalog (that is
what the person asked for), but they must be told that the impressions and spend it made stay
recorded: delivery history is an append-only log and undo never rewrites it. So after an undo
or redo the writer asks the delivery store, through a ``SpendTotals`` reader it was handed
(``delivery.service.spend_totals_reader``: one grouped read of the rollups, the same figures
reports use), which of the affected line items have any delivery recorded, and says so in the
result. Handed, not imported: the command layer does not depend on delivery.

Which line items are affected: those whose row changed, those whose creative link changed, and
every line item of a changed campaign or advertiser (pausing a campaign pauses its items).

The check never blocks the undo: if the store cannot be read (events database down) the answer
says that delivery could not be checked, rather than failing a catalog-only operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from adtarget.catalog.ownership import governed_line_items
from adtarget.commands.rows import RowChange
from adtarget.errors import AdtargetError

MICROS = Decimal(1_000_000)

SpendTotals = Callable[[], Iterable[tuple[str, str, int]]]
"""Delivered spend as ``(line_item_id, campaign_id, micros)`` rows (``EventStore.spend_totals``)."""


def affected_line_items(session: Session, changes: Iterable[RowChange]) -> list[int]:
    """Ids of the line items whose serving the changed rows govern, sorted."""
    items: set[int] = set()
    campaigns: set[int] = set()
    advertisers: set[int] = set()
    for ch in changes:
        if ch.kind == "line_item":
            items.add(int(ch.key["id"]))
        elif ch.kind == "line_item_creative":
            items.add(int(ch.key["line_item_id"]))
        elif ch.kind == "campaign":
            campaigns.add(int(ch.key["id"]))
        elif ch.kind == "advertiser":
            advertisers.add(int(ch.key["id"]))
    return governed_line_items(
        session, line_items=items, campaigns=campaigns, advertisers=advertisers
    )


def delivered(spend_totals: SpendTotals, line_item_ids: list[int]) -> dict[str, Any] | None:
    """``{"served": [{"line_item_id", "spend"}], ...}`` for ids with delivery, or ``None``.

    ``None`` means none of them ever served (or there is nothing to check).
    """
    if not line_item_ids:
        return None
    try:
        totals = list(spend_totals())
    except Exception as err:  # any store failure: the catalog undo must still go through
        message = err.message if isinstance(err, AdtargetError) else repr(err)
        return {
            "served": None,
            "note": (
                "catalog restored; could not check delivery for line item(s) "
                f"{', '.join(map(str, line_item_ids))} ({message}); delivery history is never "
                "rewritten by undo"
            ),
        }
    wanted = {str(i) for i in line_item_ids}
    spend: dict[str, int] = {}
    for li, _campaign, micros in totals:
        if li in wanted:
            spend[li] = spend.get(li, 0) + int(micros)
    if not spend:
        return None
    served = [
        {"line_item_id": int(li), "spend": str(Decimal(m) / MICROS)}
        for li, m in sorted(spend.items(), key=lambda kv: int(kv[0]))
    ]
    listed = ", ".join(f"{s['line_item_id']} (spend {s['spend']})" for s in served)
    return {
        "served": served,
        "note": (
            f"line item(s) {listed} already served: the catalog change is reversed, but "
            "delivery history (events, spend, reports) is untouched and still counts them"
        ),
    }
