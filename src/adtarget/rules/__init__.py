"""adtarget.rules: the targeting-rule language — one AST, parsed once, evaluated three ways.

``parse`` (text) / ``from_json`` (API form) build the AST in ``ast.py``; ``validate`` checks it
against a dimension registry; ``expand_segments`` inlines rule-based segments. The evaluators —
``eval_python.compile_rule`` (per user, decision path), ``eval_bitmap.evaluate``/``count``
(Roaring bitmaps, sizing path) and ``eval_sql.to_sql`` (DuckDB / PostgreSQL / Spark SQL) — must
select exactly the same users; a Hypothesis property test proves it. The semantics they share
(two-valued: a comparison on a missing value is false, ``not X`` is the complement over all
users) are written out in docs/rules.md, "Precise semantics".
"""

from __future__ import annotations

from adtarget.rules.ast import (
    SEGMENTS_FIELD,
    And,
    Between,
    Compare,
    HasAll,
    HasAny,
    InList,
    IsMissing,
    Not,
    Or,
    Rule,
    SegmentRef,
    Value,
)
from adtarget.rules.eval_python import compile_rule, matches
from adtarget.rules.eval_sql import to_sql
from adtarget.rules.format import from_json, to_json, to_text
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec, DimensionType, Registry, make_registry
from adtarget.rules.validate import expand_segments, validate

__all__ = [
    "SEGMENTS_FIELD",
    "And",
    "Between",
    "Compare",
    "DimensionSpec",
    "DimensionType",
    "HasAll",
    "HasAny",
    "InList",
    "IsMissing",
    "Not",
    "Or",
    "Registry",
    "Rule",
    "SegmentRef",
    "Value",
    "compile_rule",
    "expand_segments",
    "from_json",
    "make_registry",
    "matches",
    "parse",
    "to_json",
    "to_sql",
    "to_text",
    "validate",
]
