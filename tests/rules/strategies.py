"""Hypothesis strategies: a fixed registry, registry-consistent rules, and users that hit edges.

Values come from small pools so predicates often match, miss and sit exactly on range
boundaries; users have absent keys, explicit ``None`` and empty sets.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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
)
from adtarget.rules.registry import DimensionSpec, make_registry

REGISTRY = make_registry(
    [
        DimensionSpec("country", "category", frozenset({"US", "CA", "FR", "DE"})),
        DimensionSpec("device", "category"),
        DimensionSpec("age", "number"),
        DimensionSpec("geo.score", "number"),
        DimensionSpec("premium", "bool"),
        DimensionSpec("genres", "set", frozenset({"scifi", "drama", "comedy", "news"})),
        DimensionSpec("tags", "set"),
    ]
)
POOLS: dict[str, list[Any]] = {
    "country": ["US", "CA", "FR", "DE"],
    "device": ["ios", "android", "web", 'it\'s "q"', ""],
    "age": [0, 1, 2, 3, 4, 5, 2.5, -1],
    "geo.score": [-1.5, 0.0, 0.5, 2, 3.25],
    "premium": [True, False],
    "genres": ["scifi", "drama", "comedy", "news"],
    "tags": ["a", "b", "c", "d'e"],
}
SEGMENTS = ["s1", "s2", "s3"]


def _pick(dim: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(POOLS[dim])


def _values(dim: str) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(_pick(dim), min_size=1, max_size=3).map(tuple)


def _leaf_for(dim: str) -> st.SearchStrategy[Rule]:
    kind = REGISTRY[dim].type
    missing = st.builds(IsMissing, st.just(dim), st.booleans())
    if kind == "set":
        return st.one_of(
            st.builds(HasAny, st.just(dim), _values(dim)),
            st.builds(HasAll, st.just(dim), _values(dim)),
            missing,
        )
    eq = st.builds(Compare, st.just(dim), st.sampled_from(["=", "!="]), _pick(dim))
    inl = st.builds(InList, st.just(dim), _values(dim), st.booleans())
    if kind != "number":
        return st.one_of(eq, inl, missing)
    order = st.builds(Compare, st.just(dim), st.sampled_from(["<", "<=", ">", ">="]), _pick(dim))
    between = st.tuples(_pick(dim), _pick(dim)).map(lambda lh: Between(dim, min(lh), max(lh)))
    return st.one_of(eq, inl, order, between, missing)


LEAVES: st.SearchStrategy[Rule] = st.one_of(
    *[_leaf_for(d) for d in REGISTRY],
    st.builds(SegmentRef, st.sampled_from(SEGMENTS)),
)


def _combine(kids: st.SearchStrategy[Rule]) -> st.SearchStrategy[Rule]:
    many = st.lists(kids, min_size=2, max_size=3)
    return st.one_of(
        many.map(lambda xs: And(tuple(xs))), many.map(lambda xs: Or(tuple(xs))), kids.map(Not)
    )


RULES: st.SearchStrategy[Rule] = st.recursive(LEAVES, _combine, max_leaves=10)


def _feature(dim: str) -> st.SearchStrategy[Any]:
    if REGISTRY[dim].type == "set":
        return st.one_of(st.none(), st.frozensets(_pick(dim), max_size=3))
    return st.one_of(st.none(), _pick(dim))


USERS: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {},
    optional={
        **{d: _feature(d) for d in REGISTRY},
        SEGMENTS_FIELD: st.frozensets(st.sampled_from(SEGMENTS), max_size=2),
    },
)
