"""SQL compilation: parameters only, quoted identifiers, per-dialect shapes, NULL-safe NOT."""

from __future__ import annotations

import duckdb
import pytest

from adtarget.errors import RuleValidationError
from adtarget.rules.ast import HasAll, HasAny, Not, Rule
from adtarget.rules.eval_sql import DUCKDB_CHAIN_MAX, to_sql
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec, make_registry

REG = make_registry(
    [
        DimensionSpec("country", "category"),
        DimensionSpec("geo.region", "category"),
        DimensionSpec("age", "number"),
        DimensionSpec("premium", "bool"),
        DimensionSpec("genres", "set"),
    ]
)
RULE = parse(
    'country != "US" and age between 18 and 34 and genres has any ("scifi", "drama") '
    'and genres is missing or segment("fans") or geo.region in ("n", "s")'
)


def test_duckdb_shape() -> None:
    sql, params = to_sql(RULE, registry=REG)
    assert sql == (
        '(((NOT COALESCE("country" = ?, FALSE)) AND COALESCE("age" BETWEEN ? AND ?, FALSE) AND '
        '(COALESCE(list_contains("genres", ?), FALSE) OR '
        'COALESCE(list_contains("genres", ?), FALSE)) AND '
        '("genres" IS NULL OR len("genres") = 0)) OR '
        'COALESCE(list_contains("__segments__", ?), FALSE) OR '
        'COALESCE("geo.region" IN (?, ?), FALSE))'
    )
    assert params == ["US", 18, 34, "scifi", "drama", "fans", "n", "s"]


def test_postgres_shape_with_alias() -> None:
    sql, params = to_sql(
        parse('genres has all ("a") and not segment("s") and country not in ("x")'),
        registry=REG,
        dialect="postgres",
        table_alias="u",
    )
    assert sql == (
        '(COALESCE("u"."genres" @> ARRAY[%s]::text[], FALSE) AND '
        '(NOT COALESCE(%s = ANY("u"."__segments__"), FALSE)) AND '
        '(NOT COALESCE("u"."country" IN (%s), FALSE)))'
    )
    assert params == ["a", "s", "x"]
    sql, _ = to_sql(
        parse('genres has any ("a") or genres is missing'), registry=REG, dialect="postgres"
    )
    assert "&& ARRAY[%s]::text[]" in sql and 'cardinality("genres") = 0' in sql


def test_spark_shape() -> None:
    sql, params = to_sql(
        parse(
            'genres has all ("a", "b") or genres has any ("c") or segment("s") or '
            "genres is not missing or age >= 3"
        ),
        registry=REG,
        dialect="spark",
        table_alias="t",
    )
    assert sql == (
        "(COALESCE(size(array_except(array(?, ?), `t`.`genres`)) = 0, FALSE) OR "
        "COALESCE(arrays_overlap(`t`.`genres`, array(?)), FALSE) OR "
        "COALESCE(array_contains(`t`.`__segments__`, ?), FALSE) OR "
        "(NOT (`t`.`genres` IS NULL OR size(`t`.`genres`) = 0)) OR "
        "COALESCE(`t`.`age` >= ?, FALSE))"
    )
    assert params == ["a", "b", "c", "s", 3]


HOSTILE = "x' OR 1=1 --\"; DROP TABLE users; --"


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "spark"])
def test_values_never_reach_the_sql_text(dialect: str) -> None:
    rule = parse(
        f"country = {_q(HOSTILE)} or genres has any ({_q(HOSTILE)}) or segment({_q(HOSTILE)})"
    )
    sql, params = to_sql(rule, registry=REG, dialect=dialect)  # type: ignore[arg-type]
    assert "DROP" not in sql and "1=1" not in sql
    assert params == [HOSTILE, HOSTILE, HOSTILE]


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_hostile_values_run_safely_on_duckdb() -> None:
    con = duckdb.connect(":memory:")
    con.execute('CREATE TABLE users (country VARCHAR, genres VARCHAR[], "__segments__" VARCHAR[])')
    con.execute("INSERT INTO users VALUES (?, ?, ?), ('US', NULL, NULL)", [HOSTILE, [], []])
    sql, params = to_sql(parse(f"country = {_q(HOSTILE)}"), registry=REG)
    assert con.execute(f"SELECT count(*) FROM users WHERE {sql}", params).fetchone() == (1,)
    sql, params = to_sql(parse(f"country != {_q(HOSTILE)}"), registry=REG)
    assert con.execute(f"SELECT country FROM users WHERE {sql}", params).fetchall() == [("US",)]
    assert con.execute("SELECT count(*) FROM users").fetchone() == (2,)


def test_not_on_missing_values_is_two_valued_on_duckdb() -> None:
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE users (id INT, country VARCHAR, age DOUBLE, genres VARCHAR[])")
    con.execute(
        "INSERT INTO users VALUES (1, 'US', 30, ['a']), (2, NULL, NULL, NULL), (3, 'CA', NULL, [])"
    )
    cases = {
        'country != "US"': [2, 3],
        'not country in ("US")': [2, 3],
        "not age > 10": [2, 3],
        'not genres has any ("a")': [2, 3],
        "genres is missing": [2, 3],
        "not (age < 100 or genres is missing)": [],
    }
    for text, expected in cases.items():
        sql, params = to_sql(parse(text), registry=REG)
        got = con.execute(f"SELECT id FROM users WHERE {sql} ORDER BY id", params).fetchall()
        assert [r[0] for r in got] == expected, text


def test_unknown_dimension_and_dialect() -> None:
    with pytest.raises(RuleValidationError, match="unknown dimension 'nope'"):
        to_sql(parse("x = 1 or nope = 1"), registry={"x": DimensionSpec("x", "number")})
    with pytest.raises(ValueError, match="unknown SQL dialect 'mysql'"):
        to_sql(parse("age = 1"), registry=REG, dialect="mysql")  # type: ignore[arg-type]


def test_duckdb_long_value_lists_use_list_functions() -> None:
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE users (id INT, genres VARCHAR[])")
    con.execute("INSERT INTO users VALUES (1, ['g3', 'g40']), (2, []), (3, NULL), (4, ['x'])")
    many = tuple(f"g{i}" for i in range(DUCKDB_CHAIN_MAX + 30))
    cases: list[tuple[Rule, list[int]]] = [
        (HasAny("genres", many), [1]),
        (HasAll("genres", ("g3", *many[4:25])), []),
        (HasAll("genres", ("g3", "g40") * (DUCKDB_CHAIN_MAX + 1)), [1]),
        (Not(HasAny("genres", many)), [2, 3, 4]),
    ]
    for rule, expected in cases:
        sql, params = to_sql(rule, registry=REG)
        assert "list_has_" in sql and "list_contains" not in sql
        got = con.execute(f"SELECT id FROM users WHERE {sql} ORDER BY id", params).fetchall()
        assert [r[0] for r in got] == expected, rule
