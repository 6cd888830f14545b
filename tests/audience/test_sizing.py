"""``count_rule`` (largest-first + inclusion-exclusion) equals the evaluator and per-user truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.audience.conftest import build, population
from tests.rules.strategies import LEAVES, RULES

from adtarget.audience import sizing
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import SnapshotStore
from adtarget.rules.ast import And, Not, Rule
from adtarget.rules.eval_bitmap import count
from adtarget.rules.eval_python import matches
from adtarget.rules.parse import parse

CLAUSES = st.one_of(LEAVES, LEAVES.map(Not), RULES)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, list[dict[str, Any]]]:
    users = population(1200, seed=5)
    store = SnapshotStore(Path(tmp_path_factory.mktemp("sz")) / "snapshots")
    return build(store, users), users


def _truth(rule: Rule, users: list[dict[str, Any]]) -> int:
    return sum(1 for u in users if matches(rule, {k: v for k, v in u.items() if k != "user_id"}))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kids=st.lists(CLAUSES, min_size=3, max_size=6))
def test_conjunctions_count_exactly(
    world: tuple[Snapshot, list[dict[str, Any]]], kids: list[Rule]
) -> None:
    snap, users = world
    rule = And(tuple(kids))
    assert sizing.count_rule(rule, snap.index) == count(rule, snap.index) == _truth(rule, users)


def test_dense_path_is_taken_and_exact(
    world: tuple[Snapshot, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    snap, users = world
    rule = parse(
        'not premium = true and country in ("US", "CA", "FR") and age >= 0 '
        'and not device = "web" and genres has any ("scifi", "drama", "comedy")'
    )
    calls: list[Rule] = []
    monkeypatch.setattr(sizing, "count", lambda r, i: calls.append(r) or count(r, i))
    got = sizing.count_rule(rule, snap.index)
    assert calls == []  # planned here, not handed to the evaluator's count
    assert got == _truth(rule, users) > 0


def test_compiled_rules_follow_the_snapshot(store: SnapshotStore) -> None:
    from adtarget.audience.build import SnapshotBuilder
    from adtarget.audience.service import size_rule
    from adtarget.errors import InvalidValue

    users = population(300, seed=9)
    first = build(store, users)
    text = 'segment("late") and not premium = true'
    with pytest.raises(InvalidValue) as err:
        size_rule(snapshot=first, rule_text=text, min_size=0)
    assert err.value.field == "rule" and "late" in err.value.message
    b = SnapshotBuilder(store=store, base=first, registry={}, mode="upsert")
    b.set_segment("late", [u["user_id"] for u in users[:150]])
    store.publish(b.finish())
    second = store.current()
    assert second is not None
    want = sum(1 for u in users[:150] if u.get("premium") is not True)
    for _ in range(2):  # second call is served from the compile cache
        assert size_rule(snapshot=second, rule_text=text, min_size=0)["count"] == want
    with pytest.raises(InvalidValue):
        size_rule(snapshot=first, rule_text=text, min_size=0)


def _members(rule: Rule, users: list[dict[str, Any]]) -> set[int]:
    return {
        i
        for i, u in enumerate(users)
        if matches(rule, {k: v for k, v in u.items() if k != "user_id"})
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=st.lists(
        st.one_of(RULES, st.lists(CLAUSES, min_size=2, max_size=5).map(lambda k: And(tuple(k)))),
        min_size=1,
        max_size=5,
    )
)
def test_overlap_matrix_is_exact(
    world: tuple[Snapshot, list[dict[str, Any]]], rules: list[Rule]
) -> None:
    snap, users = world
    sets = [_members(r, users) for r in rules]
    got = sizing.overlap_counts(rules, snap.index, None)
    assert got == [[len(a & b) for b in sets] for a in sets]


def test_sparse_conjunction_is_kept_as_its_dense_complement(
    world: tuple[Snapshot, list[dict[str, Any]]],
) -> None:
    snap, users = world
    texts = [
        # each clause holds ~30-85% of the users, all of them together ~2%
        'segment("s1") and segment("s2") and segment("s3") and age >= 0 and not device = "web"',
        'not premium = true and age >= 0 and genres has any ("scifi", "comedy")',
        "age >= 0",
    ]
    rules = [parse(t) for t in texts]
    forms = [sizing.dense_form(r, snap.index, sizing._CallMemo()) for r in rules]
    assert forms[0].negated  # sparse result: its complement was built
    assert not forms[2].negated  # dense: kept as it is
    sets = [_members(r, users) for r in rules]
    got = sizing.overlap_counts(rules, snap.index, None)
    assert got == [[len(a & b) for b in sets] for a in sets]
    assert all(len(s) for s in sets)


@pytest.mark.parametrize(
    "text",
    [
        'not premium = true or not genres has any ("scifi")',
        "age is missing or not (age between 1 and 3)",
        'country = "US" or not device = "web"',
        'not segment("s1") or country in ("US", "CA")',
    ],
)
def test_or_with_negations_counts_exactly(
    world: tuple[Snapshot, list[dict[str, Any]]], text: str
) -> None:
    snap, users = world
    rule = parse(text)
    assert count(rule, snap.index) == len(_members(rule, users)) > 0


@pytest.mark.parametrize(
    "text",
    [
        'country in ("US", "CA", "US")',
        'country not in ("US", "DE")',
        "age in (1, 1.0, 2.5, -1, 99)",
        "age not in (0, 3)",
        "premium in (true, false)",
    ],
)
def test_in_lists_count_as_sums_exactly(
    world: tuple[Snapshot, list[dict[str, Any]]], text: str
) -> None:
    snap, users = world
    rule = parse(text)
    assert sizing.count_rule(rule, snap.index) == len(_members(rule, users)) > 0
