"""The fast validation path accepts exactly what the full check accepts, logged the same way."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.ingest.quick_check import compiled
from adtarget.ingest.updates import Rejected, _checked, validate_update
from adtarget.rules.registry import DimensionSpec

REGISTRY = {
    "country": DimensionSpec("country", "category", frozenset({"US", "CA"})),
    "device": DimensionSpec("device", "category"),
    "age": DimensionSpec("age", "number"),
    "premium": DimensionSpec("premium", "bool"),
    "genres": DimensionSpec("genres", "set", frozenset({"scifi", "drama"})),
    "tags": DimensionSpec("tags", "set"),
}
DIMS = [*REGISTRY, "shoe"]
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["US", "CA", "FR", "", " ", "scifi", "x" * 257, "ios"]),
    st.lists(st.sampled_from(["scifi", "drama", "news", "", "a"]), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
update = st.dictionaries(
    st.sampled_from(["update_id", "user_id", "set", "unset", "delete", "other"]),
    st.one_of(
        anything,
        st.sampled_from(["e1", "u1", "  ", "x" * 201]),
        st.dictionaries(st.sampled_from(DIMS), anything, max_size=3),
        st.lists(st.sampled_from(DIMS), max_size=3),
        st.sampled_from([0, 1, True, False, "yes"]),
    ),
    max_size=5,
)
valid = st.builds(
    lambda s, un, d: {
        "update_id": "e1",
        "user_id": "u1",
        **({"delete": True} if d else {"set": s, "unset": [x for x in un if x not in s]}),
    },
    st.dictionaries(st.sampled_from(DIMS), anything, max_size=3),
    st.lists(st.sampled_from(DIMS), max_size=2),
    st.booleans(),
)


def _full(obj: Any) -> Any:
    try:
        return _checked(validate_update(obj, REGISTRY))
    except Rejected:
        return "rejected"


@settings(max_examples=600, deadline=None)
@given(obj=st.one_of(update, valid))
def test_fast_path_agrees_with_the_full_check(obj: Any) -> None:
    quick = compiled(REGISTRY)(obj)
    full = _full(obj)  # never raises anything but Rejected (no 5xx for any input)
    if quick is not None:
        assert full != "rejected", obj
        assert quick == full, obj


def test_plain_updates_take_the_fast_path() -> None:
    quick = compiled(REGISTRY)
    got = quick({"update_id": "e", "user_id": "u", "set": {"genres": ["scifi"], "age": 3}})
    assert got == (
        "e",
        "u",
        '{"s":{"genres":["scifi"],"age":3}}',
        {"genres": frozenset({"scifi"}), "age": 3},
        (),
        False,
    )
    assert quick({"update_id": "e", "user_id": "u", "delete": True}) is not None
    assert quick({"update_id": "e", "user_id": "u", "set": {"age": "old"}}) is None


def test_huge_integers_are_rejected_with_a_reason() -> None:
    try:
        validate_update({"update_id": "e", "user_id": "u", "set": {"age": 1 << 70}}, REGISTRY)
    except Rejected as exc:
        assert "64-bit" in str(exc)
    else:
        raise AssertionError("accepted an integer JSON cannot log")


def test_delete_takes_only_a_json_boolean() -> None:
    for value in (0, 1, 0.0, "true", None):
        try:
            validate_update({"update_id": "e", "user_id": "u", "delete": value}, REGISTRY)
        except Rejected as exc:
            assert "delete must be true or false" in str(exc)
        else:
            raise AssertionError(f"accepted delete={value!r}")
