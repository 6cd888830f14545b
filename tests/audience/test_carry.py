"""Results carried from one live view to the next equal a from-scratch evaluation, exactly."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.audience.conftest import build, population
from tests.rules.strategies import POOLS

from adtarget.audience.carry import carry_results
from adtarget.audience.delta import Delta, Update
from adtarget.audience.live_snapshot import LiveSnapshot
from adtarget.audience.results import ResultCache
from adtarget.audience.sizing import count_rule
from adtarget.audience.store import SnapshotStore
from adtarget.rules.eval_python import matches
from adtarget.rules.parse import parse

RULES = [
    'country in ("US", "CA") and premium = true and age between 1 and 4 and not genres has '
    'any ("news")',
    'device = "ios" or tags has all ("a", "b")',
    "not premium = true",
    "age > 2 and geo.score <= 0.5",
    "genres is missing or country is not missing",
    'segment("s1") and not country = "FR"',
    'country != "US"',
]


def _update(rng: random.Random, seq: int, n: int) -> Update:
    uid = f"user-{rng.randrange(n):05d}" if rng.random() < 0.9 else f"new-{rng.randrange(50)}"
    if rng.random() < 0.05:
        return Update(seq, uid, delete=True)
    values: dict[str, Any] = {}
    for dim in rng.sample(["country", "device", "age", "premium", "genres", "tags"], 2):
        if dim in ("genres", "tags"):
            values[dim] = frozenset(rng.sample(POOLS[dim], rng.randint(1, 3)))
        else:
            values[dim] = rng.choice(POOLS[dim])
    unset = ("geo.score",) if rng.random() < 0.2 else ()
    return Update(seq, uid, values, unset)


def _expected(delta: Delta, rule: Any) -> int:
    n = delta.n0 + len(delta.new_list)
    return sum(1 for o in range(n) if (f := delta.features(o)) is not None and matches(rule, f))


def test_carried_results_equal_full_evaluation(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    users = population(500, seed=11)
    base = build(store, users)
    delta = Delta(base, 0)
    rules = [parse(r) for r in RULES]
    rng = random.Random(5)
    seq = 0
    view = delta.view()
    kept = (view, ResultCache(stamp=view.number))
    carried = 0
    for step in range(25):
        batch = []
        for _ in range(rng.randint(1, 12)):
            seq += 1
            batch.append(_update(rng, seq, len(users)))
        delta.apply(batch)
        view = delta.view()
        cache = carry_results(base, delta, kept, view)
        carried += len(cache)
        live = LiveSnapshot(base, delta, view, cache)
        for rule in rules:
            want = _expected(delta, rule)
            assert count_rule(rule, live.index, live.results) == want, (step, rule)
        kept = (view, cache)
    assert carried > 0  # the test exercised the carry, not only fresh evaluations


def test_no_carry_from_another_delta_or_too_many_changes(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    base = build(store, population(200, seed=2))
    one, two = Delta(base, 0), Delta(base, 0)
    rule = parse('country = "US"')
    v1 = one.view()
    cache = ResultCache(stamp=v1.number)
    assert count_rule(rule, LiveSnapshot(base, one, v1, cache).index, cache) >= 0
    two.apply([Update(1, "user-00001", {"country": "US"})])
    assert len(carry_results(base, two, (v1, cache), two.view())) == 0
    # half the users changed: recombining from scratch is cheaper, nothing is carried
    one.apply([Update(i + 1, f"user-{i:05d}", {"country": "CA"}) for i in range(100)])
    assert len(carry_results(base, one, (v1, cache), one.view())) == 0
