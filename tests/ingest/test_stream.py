"""``adtarget stream`` against the real NATS JetStream: a consumer SIGKILLed mid-stream and
restarted applies every update exactly once, in order. Each test owns its stream name."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.audience.conftest import build, population

from adtarget.audience.live import forget_followers
from adtarget.audience.store import SnapshotStore
from adtarget.audience.stores import snapshot_store_for
from adtarget.catalog.db import open_catalog
from adtarget.catalog.dimensions import register_dimensions
from adtarget.rules.registry import DimensionSpec
from adtarget.settings import Settings

NATS_URL = "nats://127.0.0.1:4222"
CLI = [sys.executable, "-m", "adtarget.cli.main"]
USERS, ROUNDS = 200, 10


def _nats_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=0.5):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _nats_up(), reason="NATS not answering on 127.0.0.1:4222")


def _run(coro: Any) -> Any:
    """Run a coroutine on its own loop in a thread (another test may own this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _publish(stream: str, subject: str, messages: list[bytes]) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        for i in range(0, len(messages), 500):
            await asyncio.gather(*(js.publish(subject, m) for m in messages[i : i + 500]))
    finally:
        await nc.close()


async def _drop(stream: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def _logged(settings: Settings) -> list[tuple[str, str]]:
    db = settings.data_dir / "updates.sqlite3"
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        try:
            return con.execute(
                "SELECT update_id, body FROM profile_updates ORDER BY seq"
            ).fetchall()
        except sqlite3.OperationalError:
            return []


def seeded_settings(tmp_path: Path) -> Settings:
    """A data dir with USERS users published and ``age`` registered as a number."""
    settings = Settings(data_dir=tmp_path / "data", min_audience_size=0)
    build(SnapshotStore(settings.snapshots_dir), population(USERS, seed=8))
    factory = open_catalog(settings)
    with factory() as session:
        register_dimensions(session, [DimensionSpec("age", "number")])
        session.commit()
    return settings


def batched_messages(tag: str) -> list[bytes]:
    """ROUNDS updates per user as broker messages: a hundred per message (one bad among them),
    a batch that is not a list, and the last hundred one per message."""
    ups = [
        {"update_id": f"{tag}-{r}-{u}", "user_id": f"user-{u:05d}", "set": {"age": r}}
        for r in range(ROUNDS)
        for u in range(USERS)
    ]
    bad = {"update_id": f"{tag}-bad", "user_id": "x", "set": {"age": "old"}}
    msgs = [orjson.dumps({"updates": ups[i : i + 100]}) for i in range(0, len(ups) - 100, 100)]
    msgs[1] = orjson.dumps({"updates": [*ups[100:200], bad]})
    msgs.insert(3, orjson.dumps({"updates": "not a list"}))
    msgs.extend(orjson.dumps(u) for u in ups[len(ups) - 100 :])
    return msgs


def test_consumer_killed_mid_stream_applies_every_update_once(tmp_path: Path) -> None:
    settings = seeded_settings(tmp_path)
    tag = uuid.uuid4().hex[:10]
    stream, subject = f"adt_test_{tag}", f"adt.test.{tag}"
    # every user gets ROUNDS updates in order; the last one (age = ROUNDS - 1) must win
    messages = [
        orjson.dumps({"update_id": f"{tag}-{r}-{u}", "user_id": f"user-{u:05d}", "set": {"age": r}})
        for r in range(ROUNDS)
        for u in range(USERS)
    ]
    messages.insert(5, b"not json")
    messages.insert(
        9, orjson.dumps({"update_id": f"{tag}-bad", "user_id": "x", "set": {"age": "old"}})
    )
    # Half the stream now, the rest only after the kill: the kill always lands mid-stream, at
    # whatever point the consumer reached (600 to 1,000 updates in, between any two steps).
    first_part = 1000
    _run(_publish(stream, subject, messages[:first_part]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADTARGET_")}
    env["ADTARGET_DATA_DIR"] = str(settings.data_dir)
    cmd = [
        *CLI,
        "stream",
        "--stream",
        stream,
        "--subject",
        subject,
        "--durable",
        f"d{tag}",
        "--batch",
        "100",
        "--quiet",
    ]
    try:
        first = subprocess.Popen(
            [*cmd],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 180  # bounded: a loaded box starts Python slowly
        while len(_logged(settings)) < 600:
            assert first.poll() is None and time.monotonic() < deadline, "consumer stalled"
            time.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)  # mid-stream, between any two steps
        first.wait()
        assert len(_logged(settings)) < USERS * ROUNDS
        _run(_publish(stream, subject, messages[first_part:]))
        # Restart until everything is in (the unacked batch comes back after the ack wait);
        # a restart that went idle first is just restarted again, within one bounded wait.
        deadline = time.monotonic() + 300
        while len(_logged(settings)) < USERS * ROUNDS:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(_logged(settings))} updates logged"
            again = subprocess.run(
                [*cmd, "--idle-exit", "8"], env=env, capture_output=True, timeout=left
            )
            assert again.returncode == 0, again.stderr.decode()
        logged = _logged(settings)
        ids = [row[0] for row in logged]
        assert len(ids) == len(set(ids)) == USERS * ROUNDS  # each update logged exactly once
        forget_followers()
        snap = snapshot_store_for(settings).current()
        assert snap is not None
        for u in range(USERS):
            feats = snap.features_of(f"user-{u:05d}")
            assert feats is not None and feats["age"] == ROUNDS - 1, (u, feats)
    finally:
        forget_followers()
        _run(_drop(stream))


def test_a_message_may_carry_a_batch_of_updates(tmp_path: Path) -> None:
    from adtarget.ingest.stream import consume

    settings = seeded_settings(tmp_path)
    tag = uuid.uuid4().hex[:10]
    stream, subject = f"adt_test_{tag}", f"adt.test.{tag}"
    msgs = batched_messages(tag)
    try:
        _run(_publish(stream, subject, msgs))
        stats = _run(
            consume(
                settings,
                url=NATS_URL,
                stream=stream,
                subject=subject,
                durable="batched",
                batch=7,
                idle_exit_s=1.0,
            )
        )
        assert stats.accepted == USERS * ROUNDS and stats.rejected == 1 and stats.malformed == 1
        ids = [row[0] for row in _logged(settings)]
        assert len(ids) == len(set(ids)) == USERS * ROUNDS
        forget_followers()
        snap = snapshot_store_for(settings).current()
        assert snap is not None
        for u in range(USERS):
            feats = snap.features_of(f"user-{u:05d}")
            assert feats is not None and feats["age"] == ROUNDS - 1, (u, feats)
    finally:
        forget_followers()
        _run(_drop(stream))
