"""Random interleavings of uploads, profile updates, compactions, undo and restarts.

After every step the live audience must size every rule exactly as DuckDB counts it over the
rows a plain model says the users have now, and export and per-user features must agree too.
The model: a version is the rows it was built with plus the number of updates it holds; what is
served is those rows with every later accepted update applied in order. The same interleavings
run over sharded snapshots (updates routed to their user's shard, compaction shard by shard).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adtarget.audience.compaction import compact
from adtarget.audience.live import forget_followers
from adtarget.audience.service import export_rule, size_rule
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.stores import live_follower, snapshot_store_for
from adtarget.catalog.db import open_catalog
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.ingest.jobs import run_upload, submit_upload
from adtarget.ingest.schema import load_registry
from adtarget.ingest.updates import accept_updates
from adtarget.rules.eval_sql import to_sql
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec
from adtarget.settings import Settings

REGISTRY = {
    "country": DimensionSpec("country", "category"),
    "age": DimensionSpec("age", "number"),
    "premium": DimensionSpec("premium", "bool"),
    "genres": DimensionSpec("genres", "set"),
}
SCHEMA = {"country": "category", "age": "number", "premium": "bool", "genres": "set"}
USERS = [f"u{i}" for i in range(14)]
VALUES: dict[str, list[Any]] = {
    "country": ["US", "CA", "FR"],
    "age": [18, 25, 33.5, 60],
    "premium": [True, False],
    "genres": [["scifi"], ["drama", "scifi"], ["news"], []],
}
BAD: list[tuple[str, Any]] = [
    ("age", "old"),
    ("premium", "yes"),
    ("genres", "scifi"),
    ("country", ""),
    ("shoe", "9"),
    ("country", 7),
]
RULES = [
    'country = "US"',
    'country in ("CA", "FR") or age >= 30',
    "not premium = true",
    'genres has any ("scifi") and age between 18 and 40',
    "country is missing or genres is missing",
    'not country = "US" and age < 30',
    "premium = false and not age is missing",
]

row = st.fixed_dictionaries(
    {d: st.one_of(st.none(), st.sampled_from(v)) for d, v in VALUES.items()}
)
rows = st.dictionaries(st.sampled_from(USERS), row, min_size=1, max_size=8)
good_update = st.one_of(
    st.builds(
        lambda u, s, un: {"user_id": u, "set": s, "unset": [d for d in un if d not in s]},
        st.sampled_from(USERS),
        st.dictionaries(
            st.sampled_from(list(VALUES)),
            st.sampled_from(list(VALUES)).flatmap(lambda d: st.sampled_from(VALUES[d])),
            max_size=3,
        ),
        st.lists(st.sampled_from(list(VALUES)), max_size=2, unique=True),
    ).filter(lambda u: u["set"] or u["unset"]),
    st.builds(lambda u: {"user_id": u, "delete": True}, st.sampled_from(USERS)),
)
update = st.one_of(
    good_update,
    good_update,
    good_update,
    st.builds(
        lambda u, b: {"user_id": u, "set": {b[0]: b[1]}},
        st.sampled_from(USERS),
        st.sampled_from(BAD),
    ),
    st.just("dup"),
)
step = st.one_of(
    st.tuples(st.just("updates"), st.lists(update, min_size=1, max_size=6)),
    st.tuples(
        st.just("upload"),
        st.sampled_from(["replace", "upsert"]),
        rows,
        st.lists(good_update, max_size=3),
    ),
    st.tuples(st.just("compact")),
    st.tuples(st.just("undo")),
    st.tuples(st.just("restart")),
)


def _fix_value(dim: str, value: Any) -> Any:
    if dim == "genres" and value is not None:
        return frozenset(value) or None
    return value


class Model:
    """Versions as (rows, updates held); served = rows + later accepted updates in order."""

    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.current: tuple[dict[str, dict[str, Any]], int] = ({}, 0)
        self.undo_stack: list[tuple[dict[str, dict[str, Any]], int]] = []

    def served(self) -> dict[str, dict[str, Any]]:
        rows_, through = self.current
        out = {u: dict(f) for u, f in rows_.items()}
        for up in self.log[through:]:
            uid = up["user_id"]
            if up.get("delete"):
                out.pop(uid, None)
                continue
            feats = out.setdefault(uid, {})
            for d in up.get("unset", []):
                feats.pop(d, None)
            for d, v in up.get("set", {}).items():
                v = _fix_value(d, v)
                if v is None:
                    feats.pop(d, None)
                else:
                    feats[d] = v
        return out


def _csv(path: Path, rows_: dict[str, dict[str, Any]]) -> Path:
    lines = ["user_id,country,age,premium,genres"]
    for uid, f in rows_.items():
        g = f.get("genres")
        lines.append(
            ",".join(
                [
                    uid,
                    f.get("country") or "",
                    "" if f.get("age") is None else str(f["age"]),
                    "" if f.get("premium") is None else str(f["premium"]).lower(),
                    "|".join(sorted(g)) if g else "",
                ]
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def _clean(rows_: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        u: {d: _fix_value(d, v) for d, v in f.items() if _fix_value(d, v) is not None}
        for u, f in rows_.items()
    }


def _duck_ids(expected: dict[str, dict[str, Any]], rule: str) -> set[str]:
    table = pa.table(
        {
            "user_id": pa.array(list(expected), pa.string()),
            "country": pa.array([f.get("country") for f in expected.values()], pa.string()),
            "age": pa.array([f.get("age") for f in expected.values()], pa.float64()),
            "premium": pa.array([f.get("premium") for f in expected.values()], pa.bool_()),
            "genres": pa.array(
                [sorted(f["genres"]) if f.get("genres") else None for f in expected.values()],
                pa.list_(pa.string()),
            ),
        }
    )
    con = duckdb.connect()
    con.register("users", table)
    where, params = to_sql(parse(rule), registry=REGISTRY, dialect="duckdb")
    return {
        r[0] for r in con.execute(f"SELECT user_id FROM users WHERE {where}", params).fetchall()
    }


class World:
    """A data dir with a catalog, the live store and the model, driven step by step."""

    def __init__(self, root: Path, shards: int | None = None) -> None:
        self.root = root
        self.shards = shards
        self.settings = Settings(data_dir=root / "data", actor="tester", snapshots_keep=100)
        self.settings.data_dir.mkdir(parents=True)
        self.catalog = open_catalog(self.settings)
        self.model = Model()
        self.n = 0

    def store(self) -> Any:
        return snapshot_store_for(self.settings)

    def send(self, updates: list[Any]) -> dict[str, Any]:
        batch: list[Any] = []
        expect_ok: list[dict[str, Any]] = []
        for up in updates:
            if up == "dup":
                if not self.model.ids:
                    continue
                batch.append({"update_id": self.model.ids[0], "user_id": "u0", "delete": True})
                continue
            self.n += 1
            item = {"update_id": f"up-{self.n}", **up}
            batch.append(item)
        self.store().current()  # this node serves the live audience (applies at once)
        with self.catalog() as session:
            registry = load_registry(session)
        result = accept_updates(batch, registry=registry, follower=live_follower(self.settings))
        bad = {r["index"] for r in result.rejected}
        for i, item in enumerate(batch):
            if i in bad or item["update_id"] in self.model.ids:
                continue
            self.model.ids.append(item["update_id"])
            self.model.log.append(item)
            expect_ok.append(item)
        assert result.accepted == len(expect_ok), (result.to_dict(), batch)
        return result.to_dict()

    def upload(self, mode: str, file_rows: dict[str, dict[str, Any]], during: list[Any]) -> None:
        if not self.model.log and not self.model.undo_stack and mode == "upsert":
            mode = "replace"
        if self.shards and not isinstance(self.store().current_base(), ShardedSnapshot):
            mode = "replace"  # an upsert cannot turn an unsharded audience into shards
        self.n += 1
        path = _csv(self.root / f"f{self.n}.csv", file_rows)
        job = submit_upload(
            settings=self.settings,
            session_factory=self.catalog,
            path=path,
            mode=mode,
            actor="tester",
            schema=SCHEMA,
            shards=self.shards,
        )
        start = len(self.model.log)
        before = self.model.served()
        sent = []

        def progress(p: dict[str, Any]) -> None:
            if p.get("stage") == "building" and during and not sent:
                sent.append(self.send(during))

        done = run_upload(
            job["id"], settings=self.settings, session_factory=self.catalog, progress=progress
        )
        assert done["status"] == "succeeded", done
        self.model.undo_stack.append(self.model.current)
        cleaned = _clean(file_rows)
        if mode == "replace":
            self.model.current = (cleaned, start)
        else:
            merged = dict(before)
            merged.update(cleaned)
            self.model.current = (merged, start)

    def undo(self) -> None:
        if not self.model.undo_stack:
            return
        writer = CatalogWriter(self.catalog, actor="tester", settings=self.settings)
        result = writer.undo()
        self.model.current = self.model.undo_stack.pop()
        assert "updates_replayed" in str(result) or result

    def check(self) -> None:
        expected = self.model.served()
        snap = self.store().current()
        if snap is None:
            assert not expected
            return
        if self.shards and self.model.undo_stack:  # not the empty pre-upload version
            assert isinstance(snap, ShardedSnapshot) or not expected
        assert snap.num_users == len(expected)
        for rule in RULES:
            got = size_rule(snapshot=snap, rule_text=rule, registry=REGISTRY, min_size=0)
            assert got["count"] == len(_duck_ids(expected, rule)), (rule, expected)
        out = self.root / "export.csv"
        rule = RULES[1]
        want = _duck_ids(expected, rule)
        if want:
            export_rule(snapshot=snap, rule_text=rule, out_path=out, registry=REGISTRY, min_size=0)
            got_ids = set(pacsv.read_csv(out).column("user_id").to_pylist())
            assert got_ids == want
        for uid in USERS:
            feats = snap.features_of(uid)
            if uid not in expected:
                assert feats is None, uid
                continue
            assert feats is not None, uid
            feats = {k: v for k, v in feats.items() if not k.startswith("__") and v is not None}
            assert feats == expected[uid], uid


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=rows, steps=st.lists(step, min_size=1, max_size=9))
def test_random_interleavings_size_like_duckdb(first: dict[str, Any], steps: list[Any]) -> None:
    _run(first, steps, shards=None)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=rows, steps=st.lists(step, min_size=1, max_size=9))
def test_random_interleavings_on_shards_size_like_duckdb(
    first: dict[str, Any], steps: list[Any]
) -> None:
    _run(first, steps, shards=3)


def _run(first: dict[str, Any], steps: list[Any], *, shards: int | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="rt-prop-"))
    forget_followers()
    try:
        world = World(root, shards)
        world.upload("replace", first, [])
        world.check()
        for s in steps:
            kind = s[0]
            if kind == "updates":
                world.send(s[1])
            elif kind == "upload":
                world.upload(s[1], s[2], s[3])
            elif kind == "compact":
                compact(world.store(), live_follower(world.settings))
            elif kind == "undo":
                world.undo()
            else:
                forget_followers()  # a restart: the next reader replays the log
            world.check()
    finally:
        forget_followers()
        shutil.rmtree(root, ignore_errors=True)
