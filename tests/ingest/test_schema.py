"""Column types: the registry wins, ``--schema`` declares, Parquet types are inferred."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from adtarget.errors import InvalidValue
from adtarget.ingest.schema import infer_type, load_schema_file, resolve_dimensions
from adtarget.rules.registry import DimensionSpec


@pytest.mark.parametrize(
    ("arrow", "kind"),
    [
        (pa.string(), "category"),
        (pa.large_string(), "category"),
        (pa.dictionary(pa.int32(), pa.string()), "category"),
        (pa.int16(), "number"),
        (pa.float32(), "number"),
        (pa.list_(pa.string()), "set"),
        (pa.bool_(), "bool"),
        (pa.timestamp("s"), None),
        (pa.list_(pa.int64()), None),
    ],
)
def test_infer_type(arrow: pa.DataType, kind: str | None) -> None:
    assert infer_type(arrow) == kind


def test_resolve_uses_registry_then_schema_then_parquet() -> None:
    registry = {"country": DimensionSpec("country", "category")}
    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("country", pa.string()),
            ("age", pa.int64()),
            ("plan", pa.string()),
        ]
    )
    specs, new = resolve_dimensions(
        columns=schema.names,
        id_column="user_id",
        registry=registry,
        arrow_schema=schema,
        declared={"plan": "set"},
    )
    assert {k: v.type for k, v in specs.items()} == {
        "country": "category",
        "age": "number",
        "plan": "set",
    }
    assert [d.name for d in new] == ["age", "plan"]


def test_resolve_errors_name_the_column() -> None:
    registry = {"country": DimensionSpec("country", "category")}
    with pytest.raises(InvalidValue, match="'age' is not a registered") as err:
        resolve_dimensions(columns=["user_id", "age"], id_column="user_id", registry=registry)
    assert err.value.field == "age"
    with pytest.raises(InvalidValue, match="registered as 'category'"):
        resolve_dimensions(
            columns=["user_id", "country"],
            id_column="user_id",
            registry=registry,
            declared={"country": "number"},
        )
    ts = pa.schema([("when", pa.timestamp("s"))])
    with pytest.raises(InvalidValue, match="cannot infer"):
        resolve_dimensions(columns=["when"], id_column="user_id", registry={}, arrow_schema=ts)


def test_schema_file(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text('{"age": "number"}')
    assert load_schema_file(p) == {"age": "number"}
    p.write_text("[1]")
    with pytest.raises(InvalidValue, match="JSON object"):
        load_schema_file(p)
    p.write_text("{")
    with pytest.raises(InvalidValue, match="not JSON"):
        load_schema_file(p)
    with pytest.raises(InvalidValue, match="does not exist"):
        load_schema_file(tmp_path / "none.json")
