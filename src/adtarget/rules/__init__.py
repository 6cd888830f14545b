"""adtarget.rules: the targeting-rule language — one AST, parsed once, evaluated three ways.

``parse`` (text) / ``from_json`` (API form) build the AST in ``ast.py``; ``validate`` checks it
against a dimension registry; ``expand_segments`` inlines rule-based segments. The evaluators —
``eval_python.compile_rule`` (per user, decision path), ``eval_bitmap.evaluate``/``count``
(Roaring bitmaps, sizing path) and ``eval_sql.to_sql`` (DuckDB / PostgreSQL / Spark SQL) — must
select exactly the same users; a Hypothesis property test proves it.

Semantics (two-valued; no SQL NULL surprises):

- *Missing* means the key is absent or ``None``; for a set dimension an empty set is missing too.
- ``=``, ``<``/``<=``/``>``/``>=``, ``between`` (inclusive), ``in``, ``has any``, ``has all`` and
  ``segment(...)`` on a missing value are **false**.
- ``not X`` is the complement of X over all users. ``a != v`` is ``not (a = v)`` and
  ``a not in (...)`` is ``not (a in (...))``, so a user without ``country`` matches
  ``country != "US"``. ``a is not missing`` is ``not (a is missing)``.
- ``has any (...)``: the user's set shares a value with the list; ``has all (...)``: it holds every
  listed value. An empty or missing set matches neither.
- Numbers compare numerically (ints and floats mix; ``age = 30`` matches 30.0). ``=``, ``!=``,
  ``in`` work on category, number and bool dimensions; ``<``… and ``between`` only on numbers;
  ``has any``/``has all`` only on set dimensions; ``is [not] missing`` on any dimension.
- Category and set values are strings only (``country = 3`` is a type-mismatch error naming the
  token ``3``); bool dimensions take ``true``/``false``.
- ``segment("x")``: when x is rule-based, ``expand_segments`` replaces it by x's rule (cycles are
  an error at definition time: ``validate(rule, registry, segments={..., "x": rule})``); left
  as a reference it means membership of a list segment: ``"x" in features["__segments__"]``
  per user, ``index.segment("x")`` in bitmaps and the ``"__segments__"`` list column in SQL.
- A value of the wrong type in user data (e.g. a string where a number is expected) never
  satisfies a comparison (per-user evaluator); ingest rejects such rows before they reach the
  bitmap index or SQL tables. NaN is not a valid feature value.
- Limits against hostile input: ``MAX_TEXT_LENGTH`` characters, ``MAX_DEPTH`` nesting levels,
  ``MAX_NODES`` nodes, ``MAX_LIST_VALUES`` values per list (see ``ast.py``).
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
