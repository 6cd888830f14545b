"""What a rule may say: dimension names, types and the values users actually have.

Why from both the registry and the snapshot: the catalog's registry says which dimensions exist
(and, for some, which values are allowed); the current snapshot says which values were uploaded.
The console's rule completion offers their union, so people pick a value that exists instead
of guessing a spelling (``GET /v1/audiences/vocabulary``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from adtarget.audience.snapshot import Snapshot
from adtarget.rules.registry import DimensionSpec

MAX_VALUES = 500  # per dimension: completion lists, not exports


def _dimension(
    name: str, spec: DimensionSpec | None, snapshot: Snapshot | None, max_values: int
) -> dict[str, Any]:
    reader = snapshot.dims.get(name) if snapshot is not None else None
    kind = spec.type if spec is not None else (reader.type if reader is not None else "category")
    out: dict[str, Any] = {
        "name": name,
        "type": kind,
        "description": spec.description if spec is not None else "",
    }
    if kind == "bool":
        out["values"] = [True, False]
    elif kind == "number":
        numbers = list(reader.values) if reader is not None else []
        out["min"] = numbers[0] if numbers else None
        out["max"] = numbers[-1] if numbers else None
    else:
        values = set(spec.allowed_values or ()) if spec is not None else set()
        if reader is not None:
            values.update(str(v) for v in reader.values)
        ordered = sorted(values)
        out["values"] = ordered[:max_values]
        out["values_truncated"] = len(ordered) > max_values
    return out


def vocabulary(
    *,
    snapshot: Snapshot | None,
    registry: Mapping[str, DimensionSpec],
    segments: Iterable[str],
    max_values: int = MAX_VALUES,
) -> dict[str, Any]:
    """``{"snapshot", "dimensions": [{"name", "type", "values" | "min"/"max"}], "segments"}``.

    Args:
        snapshot: the current snapshot (``None`` before the first upload: registry only).
        registry: the catalog's dimension registry.
        segments: the segment names the caller may reference.
        max_values: at most this many values per category/set dimension.
    """
    names = set(registry)
    if snapshot is not None:
        names.update(snapshot.dims)
    dims = [_dimension(n, registry.get(n), snapshot, max_values) for n in sorted(names)]
    return {
        "snapshot": snapshot.version if snapshot is not None else None,
        "dimensions": dims,
        "segments": sorted(segments),
    }
