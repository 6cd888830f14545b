"""What a batch of catalog changes means for the decision index: the line items to reload.

Why its own module: the full loader reads every live line item; a patch asks the catalog which
line items the changes can reach (``ChangeLog.affected_line_items``) and reads only those
(``ChangeLog.patch_rows``: the rebuild's columns for their ids in two statements, the segments
only when a change touched one), then builds them with the rebuild's loader
(``load_catalog(ids=...)``), so a patched line item is exactly what a rebuild would load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from adtarget.catalog.changes import Change
from adtarget.catalog.repo import CatalogReader, ChangeLog
from adtarget.decision.loader import LoadedCatalog, load_catalog
from adtarget.decision.rebuild_cache import RebuildCache


class PatchSource(CatalogReader, ChangeLog, Protocol):
    """A catalog reader that also keeps the change log (``SqlCatalogReader``)."""


def load_changed(
    catalog: PatchSource,
    changes: Sequence[Change],
    *,
    at_most: int,
    min_segment_size: int = 0,
    cache: RebuildCache | None = None,
) -> tuple[frozenset[int], LoadedCatalog] | None:
    """The line items ``changes`` can reach and their fresh state; ``None`` when more than
    ``at_most`` are reached (the caller rebuilds instead)."""
    writes = {(c.kind, c.entity_id) for c in changes}
    ids = catalog.affected_line_items(writes, at_most)
    if ids is None:
        return None
    if not ids:
        return frozenset(), LoadedCatalog([], [])
    rows = catalog.patch_rows(ids, segments_changed=any(c.kind == "segment" for c in changes))
    loaded = load_catalog(rows, min_segment_size=min_segment_size, cache=cache, ids=ids)
    return frozenset(ids), loaded
