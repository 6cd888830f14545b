"""Which dimension each upload column is: the registry, a ``--schema`` file, or Parquet types.

Why a module of its own: the column → type decision happens once per file, before the first
batch, and it touches the catalog (new dimensions are registered), unlike the per-batch checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import orjson
import pyarrow as pa
from sqlalchemy.orm import Session

from adtarget.catalog.service import dimension_registry
from adtarget.errors import InvalidValue
from adtarget.rules.registry import DIMENSION_TYPES, DimensionSpec, DimensionType


def load_schema_file(path: Path | str) -> dict[str, DimensionType]:
    """Read a ``{"dimension": "type", ...}`` JSON file (``--schema``)."""
    p = Path(path)
    try:
        data = orjson.loads(p.read_bytes())
    except FileNotFoundError:
        raise InvalidValue(f"schema file {str(p)!r} does not exist", field="schema") from None
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"schema file {p.name!r} is not JSON: {exc}", field="schema") from None
    return parse_schema(data)


def parse_schema(data: Any) -> dict[str, DimensionType]:
    """Check a schema mapping: names are strings, types are dimension types."""
    if not isinstance(data, dict):
        raise InvalidValue('a schema is a JSON object {"dimension": "type"}', field="schema")
    out: dict[str, DimensionType] = {}
    for name, kind in data.items():
        if kind not in DIMENSION_TYPES:
            raise InvalidValue(
                f"schema: dimension {name!r} has type {kind!r}, not one of "
                f"{', '.join(DIMENSION_TYPES)}",
                field="schema",
            )
        out[str(name)] = cast(DimensionType, kind)
    return out


def infer_type(arrow_type: pa.DataType) -> DimensionType | None:
    """string → category, int/float → number, list<string> → set, bool → bool; else None."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "category"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        vt = t.value_type
        if pa.types.is_dictionary(vt):
            vt = vt.value_type
        if pa.types.is_string(vt) or pa.types.is_large_string(vt):
            return "set"
    return None


def resolve_dimensions(
    *,
    columns: Sequence[str],
    id_column: str,
    registry: Mapping[str, DimensionSpec],
    arrow_schema: pa.Schema | None = None,
    declared: Mapping[str, str] | None = None,
) -> tuple[dict[str, DimensionSpec], list[DimensionSpec]]:
    """The spec of every non-id column, and which of them are new (to be registered).

    A column already in the registry keeps its registered type; declaring another type for it
    is an error (changing a type needs a catalog change, not an upload).
    """
    declared = declared or {}
    specs: dict[str, DimensionSpec] = {}
    new: list[DimensionSpec] = []
    for col in columns:
        if col == id_column:
            continue
        if col in registry:
            spec = registry[col]
            if col in declared and declared[col] != spec.type:
                raise InvalidValue(
                    f"column {col!r}: the schema says {declared[col]!r} but the dimension is "
                    f"registered as {spec.type!r}",
                    field=col,
                )
            specs[col] = spec
            continue
        kind: str | None = declared.get(col)
        if kind is None and arrow_schema is not None and col in arrow_schema.names:
            kind = infer_type(arrow_schema.field(col).type)
            if kind is None:
                raise InvalidValue(
                    f"column {col!r}: cannot infer a dimension type from Parquet type "
                    f"{arrow_schema.field(col).type}; declare it with --schema",
                    field=col,
                )
        if kind is None:
            raise InvalidValue(
                f"column {col!r} is not a registered dimension; declare its type with "
                f"--schema (or register the dimension first)",
                field=col,
            )
        spec = DimensionSpec(
            name=col, type=cast(DimensionType, kind), description="registered by an upload"
        )
        specs[col] = spec
        new.append(spec)
    return specs, new


def check_width(*, dimensions: int, limit: int, source: str, upsert: bool = False) -> None:
    """Refuse an upload with more dimension columns than ``ADTARGET_INGEST_MAX_DIMENSIONS``."""
    if dimensions <= limit:
        return
    whose = "the snapshot after this upsert would have" if upsert else f"{source} has"
    raise InvalidValue(
        f"{whose} {dimensions:,} dimension columns; at most {limit:,} are allowed per upload "
        "(ADTARGET_INGEST_MAX_DIMENSIONS): split the file into narrower uploads or drop "
        "columns nobody targets",
        field="columns",
        source=source,
        dimensions=dimensions,
        limit=limit,
    )


def load_registry(session: Session) -> dict[str, DimensionSpec]:
    """The catalog's dimension registry (every non-archived dimension)."""
    return dict(dimension_registry(session=session))
