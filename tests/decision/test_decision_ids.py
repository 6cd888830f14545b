"""Decision ids: 96 random bits as 24 hex digits, never repeated, not inherited by a fork."""

from __future__ import annotations

import os
import sys

import pytest

from adtarget.decision import models


def test_ids_are_unique_hex_across_many_batches() -> None:
    ids = [models.new_decision_id() for _ in range(20 * models._ID_BATCH)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_forked_child_draws_its_own_ids() -> None:
    models.new_decision_id()  # the parent holds a part-used batch
    assert models._ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id must not be the parent's next one
        os.write(write, models.new_decision_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert len(child_id) == 24
    assert child_id != models.new_decision_id()
