"""``adtarget stream --broker redis`` against the real Redis at 127.0.0.1:6379: a consumer
SIGKILLed mid-stream and restarted applies every update exactly once, in order; several
consumers of one group share a stream. Each test owns its stream key and deletes it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
import redis
from tests.ingest.test_stream import CLI, _logged, batched_messages, seeded_settings

from adtarget.audience.live import forget_followers
from adtarget.audience.stores import snapshot_store_for
from adtarget.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"
USERS, ROUNDS = 200, 10


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _redis_up(), reason="Redis not answering on 127.0.0.1:6379")


def _setup(tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    settings = seeded_settings(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADTARGET_")}
    env["ADTARGET_DATA_DIR"] = str(settings.data_dir)
    return settings, env


def _publish(client: redis.Redis, key: str, messages: list[bytes]) -> None:
    for i in range(0, len(messages), 500):
        pipe = client.pipeline(transaction=False)
        for m in messages[i : i + 500]:
            pipe.xadd(key, {"update": m})
        pipe.execute()


def _wait_for_consumers(
    client: redis.Redis,
    key: str,
    group: str,
    names: set[str],
    procs: list[subprocess.Popen[bytes]],
    timeout_s: float = 120.0,
) -> None:
    """Until every consumer in ``names`` has read the group once (bounded; a consumer that
    exited first fails the test with its error)."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(p.communicate()[1].decode())
        try:
            seen = {c["name"].decode() for c in client.xinfo_consumers(key, group)}
        except redis.ResponseError:  # the group is not made yet
            seen = set()
        if names <= seen:
            return
        time.sleep(0.05)
    raise AssertionError(f"consumers {sorted(names)} did not join {group} in {timeout_s} s")


def _messages(tag: str) -> list[bytes]:
    """Every user gets ROUNDS updates in order; the last one (age = ROUNDS - 1) must win."""
    return [
        orjson.dumps({"update_id": f"{tag}-{r}-{u}", "user_id": f"user-{u:05d}", "set": {"age": r}})
        for r in range(ROUNDS)
        for u in range(USERS)
    ]


def _check_applied_once(settings: Settings) -> None:
    ids = [row[0] for row in _logged(settings)]
    assert len(ids) == len(set(ids)) == USERS * ROUNDS  # each update logged exactly once
    forget_followers()
    snap = snapshot_store_for(settings).current()
    assert snap is not None
    for u in range(USERS):
        feats = snap.features_of(f"user-{u:05d}")
        assert feats is not None and feats["age"] == ROUNDS - 1, (u, feats)


def test_redis_consumer_killed_mid_stream_applies_every_update_once(tmp_path: Path) -> None:
    settings, env = _setup(tmp_path)
    client = redis.Redis.from_url(REDIS_URL)
    tag = uuid.uuid4().hex[:10]
    key, group = f"adt:test:{tag}", f"g{tag}"
    messages = _messages(tag)
    messages.insert(5, b"not json")
    messages.insert(
        9, orjson.dumps({"update_id": f"{tag}-bad", "user_id": "x", "set": {"age": "old"}})
    )
    first_part = 1000  # the rest only after the kill: the kill always lands mid-stream
    _publish(client, key, messages[:first_part])
    client.xadd(key, {"other": b"no update field"})
    cmd = [
        *CLI,
        "stream",
        "--broker",
        "redis",
        "--redis",
        REDIS_URL,
        "--stream",
        key,
        "--group",
        group,
        "--consumer",
        "c1",
        "--batch",
        "100",
        "--quiet",
    ]
    try:
        first = subprocess.Popen(
            cmd,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 180
        while len(_logged(settings)) < 600:
            assert first.poll() is None and time.monotonic() < deadline, "consumer stalled"
            time.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)  # mid-stream, between any two steps
        first.wait()
        assert len(_logged(settings)) < USERS * ROUNDS
        _publish(client, key, messages[first_part:])
        again = subprocess.run(
            [*cmd, "--idle-exit", "3"], env=env, capture_output=True, timeout=300
        )
        assert again.returncode == 0, again.stderr.decode()
        stats = orjson.loads(again.stdout.splitlines()[-1])
        assert stats["malformed"] <= 2 and stats["rejected"] <= 1
        _check_applied_once(settings)
        # nothing left unacknowledged in the group: every entry was logged, then acked
        assert client.xpending(key, group)["pending"] == 0
    finally:
        forget_followers()
        client.delete(key)
        client.close()


def test_several_consumers_of_a_group_share_the_stream(tmp_path: Path) -> None:
    settings, env = _setup(tmp_path)
    client = redis.Redis.from_url(REDIS_URL)
    tag = uuid.uuid4().hex[:10]
    key, group = f"adt:test:{tag}", f"g{tag}"
    try:

        def start(name: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [
                    *CLI,
                    "stream",
                    "--broker",
                    "redis",
                    "--redis",
                    REDIS_URL,
                    "--stream",
                    key,
                    "--group",
                    group,
                    "--consumer",
                    name,
                    "--batch",
                    "50",
                    "--idle-exit",
                    "10",  # the first started waits for the second to start
                    "--quiet",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )

        procs = [start("a"), start("b")]
        # both read the group before anything is published: entries published before the
        # second consumer's process had started all went to the first on a loaded machine
        _wait_for_consumers(client, key, group, {"a", "b"}, procs)
        _publish(client, key, _messages(tag))
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err.decode()
        stats = [orjson.loads(out.splitlines()[-1]) for out, _ in outs]
        # each entry went to one consumer of the group: no entry was read twice
        assert sum(s["messages"] for s in stats) == USERS * ROUNDS
        assert sum(s["duplicates"] for s in stats) == 0
        assert all(s["messages"] > 0 for s in stats), stats
        ids = [row[0] for row in _logged(settings)]
        assert len(ids) == len(set(ids)) == USERS * ROUNDS
    finally:
        forget_followers()
        client.delete(key)
        client.close()


def test_an_entry_may_carry_a_batch_of_updates(tmp_path: Path) -> None:
    from adtarget.ingest.redis_stream import consume_redis

    settings, _env = _setup(tmp_path)
    client = redis.Redis.from_url(REDIS_URL)
    tag = uuid.uuid4().hex[:10]
    key, group = f"adt:test:{tag}", f"g{tag}"
    entries = batched_messages(tag)  # a hundred updates per entry, as with NATS
    try:
        _publish(client, key, entries)
        stats = consume_redis(
            settings, url=REDIS_URL, stream=key, group=group, consumer="c1", batch=7, idle_exit_s=1
        )
        assert stats.accepted == USERS * ROUNDS and stats.rejected == 1 and stats.malformed == 1
        _check_applied_once(settings)
        assert client.xpending(key, group)["pending"] == 0
    finally:
        forget_followers()
        client.delete(key)
        client.close()
