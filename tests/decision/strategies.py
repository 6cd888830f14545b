"""Hypothesis strategies shared by the decision tests: generated rules, users, line items."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from adtarget.decision.models import LiveLineItem
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

COUNTRIES = ["US", "CA", "MX", "FR"]
GENRES = ["scifi", "drama", "comedy", "kids"]
SEGMENTS = ["s1", "s2"]
AGES = st.one_of(st.integers(0, 60), st.sampled_from([17.5, 18.0, 30.25]))

country_value = st.sampled_from(COUNTRIES)


def _leaf() -> st.SearchStrategy[Rule]:
    return st.one_of(
        st.builds(Compare, st.just("country"), st.sampled_from(["=", "!="]), country_value),
        st.builds(
            Compare, st.just("age"), st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), AGES
        ),
        st.builds(Between, st.just("age"), AGES, AGES),
        st.builds(
            InList,
            st.just("country"),
            st.lists(country_value, max_size=3).map(tuple),
            st.booleans(),
        ),
        st.builds(
            InList, st.just("age"), st.lists(AGES, min_size=1, max_size=3).map(tuple), st.booleans()
        ),
        st.builds(
            HasAny, st.just("genres"), st.lists(st.sampled_from(GENRES), max_size=3).map(tuple)
        ),
        st.builds(
            HasAll, st.just("genres"), st.lists(st.sampled_from(GENRES), max_size=3).map(tuple)
        ),
        st.builds(IsMissing, st.sampled_from(["country", "age", "genres", "kids"]), st.booleans()),
        st.builds(Compare, st.just("kids"), st.sampled_from(["=", "!="]), st.booleans()),
        st.builds(SegmentRef, st.sampled_from(SEGMENTS)),
    )


def rules() -> st.SearchStrategy[Rule]:
    """Random rules up to a few levels deep over four dimensions and list segments."""
    return st.recursive(
        _leaf(),
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: And(tuple(cs))),
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: Or(tuple(cs))),
            inner.map(Not),
        ),
        max_leaves=8,
    )


def _maybe(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), s)


def users() -> st.SearchStrategy[dict[str, Any]]:
    """Users with missing values, empty sets, boundary numbers and the odd wrongly typed value."""
    return st.fixed_dictionaries(
        {},
        optional={
            "country": _maybe(
                st.one_of(country_value, st.just("ZZ"), st.just(""), st.integers(0, 2))
            ),
            "age": _maybe(st.one_of(AGES, st.just("30"), st.just(True), st.floats(allow_nan=True))),
            "genres": _maybe(
                st.one_of(
                    st.frozensets(st.sampled_from(GENRES + ["other"]), max_size=3),
                    st.lists(st.sampled_from(GENRES), max_size=2),
                    st.just("scifi"),
                )
            ),
            "kids": _maybe(st.one_of(st.booleans(), st.integers(0, 1))),
            SEGMENTS_FIELD: st.frozensets(st.sampled_from(SEGMENTS + ["s3"]), max_size=2),
        },
    )


def line_item(i: int, rule: Rule | None, **kw: Any) -> LiveLineItem:
    """A live line item with one creative in ``video`` unless overridden."""
    base: dict[str, Any] = {
        "id": i,
        "campaign_id": 100 + i % 3,
        "advertiser_id": 1000 + i % 2,
        "priority": 1 + i % 4,
        "bid_cpm": float(10 + i % 7),
        "rule": rule,
        "formats": ("video",),
        "creatives": {"video": (5000 + i,)},
    }
    base.update(kw)
    return LiveLineItem(**base)
