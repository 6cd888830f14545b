"""size / overlap / export: thresholds, the overlap matrix, CSV/Parquet files, rule errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from tests.audience.conftest import REGISTRY, build, population

from adtarget.audience.service import export_rule, overlap_rules, size_rule
from adtarget.audience.store import SnapshotStore
from adtarget.errors import InvalidValue, RuleSyntaxError, RuleValidationError
from adtarget.rules.eval_python import matches
from adtarget.rules.parse import parse


@pytest.fixture
def snap_users(store: SnapshotStore):  # type: ignore[no-untyped-def]
    users = population(600, seed=4)
    return build(store, users), users


def _expected(users: list[dict], text: str) -> set[str]:
    rule = parse(text)
    return {
        u["user_id"] for u in users if matches(rule, {k: v for k, v in u.items() if k != "user_id"})
    }


def test_threshold_hides_small_counts(snap_users) -> None:  # type: ignore[no-untyped-def]
    snap, users = snap_users
    text = 'country = "US" and device = "web" and premium = true'
    exact = len(_expected(users, text))
    assert 0 < exact < 100
    small = size_rule(snapshot=snap, rule_text=text, registry=REGISTRY)
    assert small == {"count": None, "below_threshold": True, "min_size": 100, "snapshot": "v000001"}
    assert size_rule(snapshot=snap, rule_text=text, min_size=exact)["count"] == exact
    big = size_rule(snapshot=snap, rule_text="not premium = true")
    assert big == {"count": len(_expected(users, "not premium = true")), "snapshot": "v000001"}


def test_rule_errors_propagate_with_position(snap_users) -> None:  # type: ignore[no-untyped-def]
    snap, _ = snap_users
    with pytest.raises(RuleSyntaxError) as syn:
        size_rule(snapshot=snap, rule_text='country in ("US"')
    assert syn.value.column > 1
    with pytest.raises(RuleValidationError, match="cuntry"):
        size_rule(snapshot=snap, rule_text='cuntry = "US"')
    with pytest.raises(RuleValidationError, match="nosuch"):
        size_rule(snapshot=snap, rule_text='segment("nosuch")')


def test_json_rules_and_catalog_rule_segments(snap_users) -> None:  # type: ignore[no-untyped-def]
    snap, users = snap_users
    from adtarget.rules.format import to_json

    js = to_json(parse("age > 1"))
    assert size_rule(snapshot=snap, rule_text=js, min_size=0)["count"] == len(
        _expected(users, "age > 1")
    )
    got = size_rule(
        snapshot=snap,
        rule_text='segment("olds") and segment("s1")',
        min_size=0,
        segments={"olds": parse("age >= 3")},
    )
    assert got["count"] == len(_expected(users, 'age >= 3 and segment("s1")'))


def test_overlap_matrix(snap_users) -> None:  # type: ignore[no-untyped-def]
    snap, users = snap_users
    rules = [
        'country in ("US", "CA")',
        "premium = true",
        'genres has any ("scifi")',
        'device = "web" and country = "DE"',
    ]
    out = overlap_rules(snapshot=snap, rules=rules, min_size=20)
    sets = [_expected(users, r) for r in rules]
    for i in range(4):
        for j in range(4):
            exact = len(sets[i] & sets[j])
            assert out["matrix"][i][j] == (exact if exact >= 20 else None)
            assert out["below_threshold"][i][j] is (exact < 20)
    assert any(any(row) for row in out["below_threshold"])  # a hidden cell was exercised
    assert out["sizes"] == [out["matrix"][i][i] for i in range(4)]
    with pytest.raises(InvalidValue):
        overlap_rules(snapshot=snap, rules=[])
    with pytest.raises(RuleValidationError) as err:
        overlap_rules(snapshot=snap, rules=["premium = true", "bogus = 1"])
    assert err.value.details["index"] == 1


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_matching_ids(snap_users, tmp_path: Path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    snap, users = snap_users
    out = tmp_path / f"out.{fmt}"
    res = export_rule(
        snapshot=snap,
        rule_text="not premium = true",
        out_path=out,
        fmt=fmt,  # type: ignore[arg-type]
        chunk_size=97,
    )
    table = pacsv.read_csv(out) if fmt == "csv" else pq.read_table(out)
    ids = table.column("user_id").to_pylist()
    assert set(ids) == _expected(users, "not premium = true")
    assert len(ids) == res["count"] == len(set(ids))
    assert not list(tmp_path.glob("*.partial"))


def test_export_refuses_below_threshold(snap_users, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    snap, _ = snap_users
    with pytest.raises(InvalidValue) as err:
        export_rule(
            snapshot=snap,
            rule_text='country = "US" and premium = true and device = "web"',
            out_path=tmp_path / "x.csv",
        )
    assert err.value.field == "rule" and not (tmp_path / "x.csv").exists()
    with pytest.raises(InvalidValue):
        export_rule(snapshot=snap, rule_text="premium = true", out_path=tmp_path / "x.x", fmt="xml")  # type: ignore[arg-type]
