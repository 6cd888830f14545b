"""What a rule may say: dimension names, types and the values users actually have.

Why from both the registry and the snapshot: the catalog's registry says which dimensions exist
(and, for some, which values are allowed); the current snapshot says which values were uploaded.
The console's rule completion offers their union, so people pick a value that exists instead
of guessing a spelling (``GET /v1/audiences/vocabulary``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from adtarget.audience.index import DimReader
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.snapshot import Snapshot
from adtarget.rules.registry import DimensionSpec

MAX_VALUES = 500  # per dimension: completion lists, not exports


def _parts(snapshot: Snapshot | ShardedSnapshot | None) -> list[Snapshot]:
    """The one snapshot, or every shard of a sharded one (values are their union)."""
    if snapshot is None:
        return []
    return snapshot.shards if isinstance(snapshot, ShardedSnapshot) else [snapshot]


def _dimension(
    name: str, spec: DimensionSpec | None, parts: list[Snapshot], max_values: int
) -> dict[str, Any]:
    readers: list[DimReader] = [p.dims[name] for p in parts if name in p.dims]
    kind = spec.type if spec is not None else (readers[0].type if readers else "category")
    out: dict[str, Any] = {
        "name": name,
        "type": kind,
        "description": spec.description if spec is not None else "",
    }
    if kind == "bool":
        out["values"] = [True, False]
    elif kind == "number":
        ends = [v for r in readers if r.values for v in (r.values[0], r.values[-1])]
        out["min"] = min(ends) if ends else None
        out["max"] = max(ends) if ends else None
    else:
        values = set(spec.allowed_values or ()) if spec is not None else set()
        for reader in readers:
            values.update(str(v) for v in reader.values)
        ordered = sorted(values)
        out["values"] = ordered[:max_values]
        out["values_truncated"] = len(ordered) > max_values
    return out


class Vocabulary(TypedDict):
    """What a rule may name: the snapshot's dimensions (with values or ranges) and segments."""

    snapshot: str | None
    dimensions: list[dict[str, Any]]
    segments: list[str]


def vocabulary(
    *,
    snapshot: Snapshot | ShardedSnapshot | None,
    registry: Mapping[str, DimensionSpec],
    segments: Iterable[str],
    max_values: int = MAX_VALUES,
) -> Vocabulary:
    """``{"snapshot", "dimensions": [{"name", "type", "values" | "min"/"max"}], "segments"}``.

    Args:
        snapshot: the current snapshot, plain or sharded (``None`` before the first upload).
        registry: the catalog's dimension registry.
        segments: the segment names the caller may reference.
        max_values: at most this many values per category/set dimension.
    """
    parts = _parts(snapshot)
    names = set(registry)
    for part in parts:
        names.update(part.dims)
    dims = [_dimension(n, registry.get(n), parts, max_values) for n in sorted(names)]
    return {
        "snapshot": snapshot.version if snapshot is not None else None,
        "dimensions": dims,
        "segments": sorted(segments),
    }
