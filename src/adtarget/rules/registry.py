"""The dimension registry: which user features exist, their types and allowed values.

A registry is any ``Mapping[str, DimensionSpec]`` (the catalog builds one from its ``Dimension``
rows), so rules/ never reaches into storage to validate or compile a rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, get_args

from adtarget.errors import InvalidValue
from adtarget.rules.ast import KEYWORDS, SEGMENTS_FIELD

DimensionType = Literal["category", "number", "set", "bool"]
DIMENSION_TYPES: tuple[str, ...] = get_args(DimensionType)
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


def check_dimension_name(name: str) -> None:
    """Raise ``InvalidValue`` unless ``name`` can be written in a rule as a dimension."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidValue(
            f"dimension name {name!r} must match [A-Za-z_][A-Za-z0-9_.]*", field="name"
        )
    if name.lower() in KEYWORDS:
        raise InvalidValue(
            f"dimension name {name!r} is a reserved word of the rule language", field="name"
        )
    if name == SEGMENTS_FIELD:
        raise InvalidValue(f"dimension name {name!r} is reserved for segment lists", field="name")


@dataclass(frozen=True, slots=True)
class DimensionSpec:
    """One user dimension: its type and (for category/set) an optional closed list of values."""

    name: str
    type: DimensionType
    allowed_values: frozenset[str] | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_dimension_name(self.name)
        if self.type not in DIMENSION_TYPES:
            raise InvalidValue(
                f"dimension {self.name!r}: type {self.type!r} is not one of "
                f"{', '.join(DIMENSION_TYPES)}",
                field="type",
            )
        if self.allowed_values is not None:
            if self.type not in ("category", "set"):
                raise InvalidValue(
                    f"dimension {self.name!r}: allowed_values only apply to category/set",
                    field="allowed_values",
                )
            object.__setattr__(self, "allowed_values", frozenset(self.allowed_values))


Registry: TypeAlias = Mapping[str, DimensionSpec]


def make_registry(specs: Iterable[DimensionSpec]) -> dict[str, DimensionSpec]:
    """A registry keyed by name; duplicate names are an error, not a silent overwrite."""
    out: dict[str, DimensionSpec] = {}
    for spec in specs:
        if spec.name in out:
            raise InvalidValue(f"dimension {spec.name!r} is defined twice", field="name")
        out[spec.name] = spec
    return out
