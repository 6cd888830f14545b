"""Dense evaluation (``audience/dense``, ``dense_rules``) counts exactly what the rule means.

Oracles: the per-user evaluator for generated rules on snapshots of every number layout, with
blocks of a few words (many blocks, a partial last one) and with leaves forced sparse or dense;
``to_array`` for the parser of Roaring's portable format (bitset, array and run containers,
with and without the offset header).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap
from tests.audience.conftest import build, population
from tests.rules.strategies import RULES

from adtarget.audience import dense, dense_rules
from adtarget.audience.results import ResultCache
from adtarget.audience.store import SnapshotStore
from adtarget.rules.ast import Rule
from adtarget.rules.eval_python import compile_rule
from adtarget.rules.format import to_text


def _expected_words(bm: BitMap, nwords: int) -> np.ndarray:
    bits = np.zeros(nwords * 64, dtype=bool)
    bits[np.asarray(bm.to_array(), dtype=np.int64)] = True
    return np.packbits(bits, bitorder="little").view("<u8")


@pytest.mark.parametrize("runs", [False, True])
@pytest.mark.parametrize("density", [0.0005, 0.05, 0.5, 0.999])
def test_words_from_serialized_matches_the_members(density: float, runs: bool) -> None:
    rng = np.random.default_rng(int(density * 1000))
    n = 5 * 65536 + 1234
    members = np.flatnonzero(rng.random(n) < density).astype(np.uint32)
    bm = BitMap(members)
    bm.update(range(70_000, 90_000))  # a long run across a container boundary
    if runs:
        bm.run_optimize()
    nwords = (n + 63) // 64
    got = dense.words_from_serialized(bm.serialize(), nwords)
    assert np.array_equal(got, _expected_words(bm, nwords))


@pytest.mark.parametrize("values", [[], [3], [1, 2, 65535], list(range(100, 200))])
def test_small_bitmaps_and_runs_without_offsets(values: list[int]) -> None:
    for optimize in (False, True):
        bm = BitMap(values)
        if optimize:
            bm.run_optimize()
        got = dense.words_from_serialized(bm.serialize(), 1024)
        assert np.array_equal(got, _expected_words(bm, 1024))


def test_members_past_the_ordinal_space_are_refused() -> None:
    with pytest.raises(ValueError):
        dense.words_from_serialized(BitMap([200_000]).serialize(), 10)


def _forced_count(index: dense_rules.DenseIndex, rule: Rule) -> int:
    t = index.term(rule)
    return 0 if t is None else dense.count(t, index.nwords)


@pytest.mark.parametrize("layout", ["range", "buckets", "bsi"])
@pytest.mark.parametrize("sparse_share", [1, 10**9])
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rules=st.lists(RULES, min_size=10, max_size=10))
def test_dense_counts_equal_the_per_user_evaluator(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    layout: str,
    sparse_share: int,
    rules: list[Rule],
) -> None:
    monkeypatch.setattr(dense, "BLOCK", 2)  # 700 users: 11 words, 6 blocks, the last partial
    monkeypatch.setattr(dense_rules, "SPARSE_SHARE", sparse_share)
    users = population(700, seed=5)
    snap = build(SnapshotStore(tmp_path_factory.mktemp("dense") / "s"), users, number_layout=layout)
    index = snap.index.dense
    assert index is not None
    for rule in rules:
        fn = compile_rule(rule)
        expected = sum(1 for u in users if fn(u))
        assert _forced_count(index, rule) == expected, to_text(rule)
        assert index.count(rule) in (None, expected), to_text(rule)


def test_many_valued_floats_at_every_bound(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bucketed floats (~300 distinct, negatives, missing): the cumulative bitmaps with the edge
    ranks added and removed, against brute force, bounds inclusive and exclusive."""
    monkeypatch.setattr(dense, "BLOCK", 8)
    rng = np.random.default_rng(9)
    values = [
        None if rng.random() < 0.05 else float(round(rng.gamma(1.5, 12.0) - 5, 1))
        for _ in range(3000)
    ]
    users = [{"user_id": f"user-{i:05d}", "geo.score": v} for i, v in enumerate(values)]
    snap = build(SnapshotStore(tmp_path_factory.mktemp("floats") / "s"), users)
    assert snap.dims["geo.score"].layout == "buckets"
    index = snap.index.dense
    assert index is not None
    distinct = sorted({v for v in values if v is not None})
    probes = [distinct[0], distinct[5], distinct[len(distinct) // 2], distinct[-1], 3.05, -5.5]
    for lo in [None, *probes]:
        for hi in [None, *probes]:
            for li in (True, False):
                for hinc in (True, False):
                    t = index._range("geo.score", lo, hi, li, hinc)
                    got = 0 if t is None else dense.count(t, index.nwords)
                    want = sum(
                        1
                        for v in values
                        if v is not None
                        and (lo is None or (v >= lo if li else v > lo))
                        and (hi is None or (v <= hi if hinc else v < hi))
                    )
                    assert got == want, (lo, hi, li, hinc)


@pytest.mark.parametrize("density", [0.0, 0.001, 0.06, 0.5, 1.0])
def test_words_become_the_same_bitmap(density: float) -> None:
    """Dense words back to Roaring: all-bitset images in one copy, mixed ones per container."""
    rng = np.random.default_rng(int(density * 100))
    n = 3 * 65536 + 43_210
    bits = rng.random(n) < density
    bits[70_000:71_000] = True  # one container dense, whatever the density
    members = np.flatnonzero(bits).astype(np.uint32)
    nwords = (n + 63) // 64
    image = dense.BitsetImage(nwords)
    image.words[:] = _expected_words(BitMap(members), nwords)
    assert list(image.bitmap()) == members.tolist()
    assert list(dense.bitmap_of_words(image.words)) == members.tolist()


def test_kept_clauses_answer_like_fresh_ones(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With a snapshot's result cache, a clause of an ``and`` is kept as words from its second
    use on (the first only marks it seen): a rule edited in one clause reads the others from
    there, a clause asked once keeps no words, and every count is exact."""
    from adtarget.rules.parse import parse

    users = population(700, seed=8)
    snap = build(SnapshotStore(tmp_path_factory.mktemp("kept") / "s"), users)
    index = snap.index.dense
    assert index is not None
    texts = [
        'country in ("US","CA") and age between 1 and 4 and not (genres has any ("news"))',
        'country in ("US","CA") and age between 1 and 3 and not (genres has any ("news"))',
        'country in ("US","CA") and age between 1 and 3 and not (genres has any ("news"))',
        'country in ("US","CA") and age between 1 and 3 and not (genres has any ("news"))',
    ]
    kept_after: list[list[str]] = []
    for text in texts:
        rule = parse(text)
        fn = compile_rule(rule)
        kept = _forced_count_memo(index, rule, snap.results)
        assert kept == sum(1 for u in users if fn(u)), text
        kept_after.append(_kept_clauses(snap.results, rule))
    assert kept_after == [
        [],  # first sight of every clause: nothing kept
        ['country in ("US", "CA")'],  # the `in` asked again; the new range only marked
        ["age between 1 and 3", 'country in ("US", "CA")'],
        ["age between 1 and 3", 'country in ("US", "CA")'],
    ]
    assert len(snap.results) == 3  # the two kept clauses and the range asked once (a marker)


def _kept_clauses(results: ResultCache, rule: Rule) -> list[str]:
    """The clauses of ``rule`` whose words ``results`` keeps."""
    from adtarget.rules.ast import And

    assert isinstance(rule, And)
    out = []
    for c in rule.children:
        if isinstance(results.peek((dense_rules.KeptWords, c)), dense_rules.KeptWords):
            out.append(to_text(c))
    return sorted(out)


def _forced_count_memo(index: dense_rules.DenseIndex, rule: Rule, memo: object) -> int:
    t = index.term(rule, memo)
    return 0 if t is None else dense.count(t, index.nwords)


def test_overlap_forms_equal_roaring_on_full_containers(tmp_path: Path) -> None:
    """Enough users that forms are bitset images (> 4,096 members per container), with results
    kept as themselves and as complements: the matrix equals the Roaring-only one."""
    import pyarrow as pa
    from tests.rules.strategies import REGISTRY

    from adtarget.audience.build import SnapshotBuilder
    from adtarget.audience.sizing import overlap_counts
    from adtarget.rules.parse import parse

    n = 3 * 65536 + 5000
    rng = np.random.default_rng(4)
    batch = pa.RecordBatch.from_pydict(
        {
            "user_id": pa.array([f"u{i}" for i in range(n)]),
            "country": pa.array(rng.choice(["US", "CA", "FR", "DE"], n)),
            "age": pa.array(rng.integers(0, 6, n).astype(float)),
            "premium": pa.array(rng.random(n) < 0.5),
        }
    )
    store = SnapshotStore(tmp_path / "s")
    builder = SnapshotBuilder(store=store, base=None, registry=REGISTRY, mode="replace")
    builder.add_batch(batch)
    store.publish(builder.finish())
    snap = store.current()
    assert snap is not None
    rules = [
        parse(t)
        for t in (
            'country = "US"',
            'country in ("US","CA") and age >= 1 and premium = true',
            'country = "FR" and age between 2 and 2 and premium = false',  # ~2%: a complement
            'not (country = "DE")',
            "age < 3 or premium = true",
        )
    ]
    got = overlap_counts(rules, snap.index, None)
    snap.index.dense_enabled = False
    assert got == overlap_counts(rules, snap.index, None)
