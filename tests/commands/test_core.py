"""The in-memory command core: stacks, failures, composites, double execute, depth bound."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.commands.core import (
    Command,
    CommandAlreadyExecuted,
    CommandHistory,
    CompositeCommand,
)
from adtarget.errors import Conflict, InvalidValue, NothingToRedo, NothingToUndo


@dataclass
class SetKey:
    """Set ``store[key] = value``, remembering the previous value (or absence)."""

    store: dict[str, int]
    key: str
    value: int
    fail: bool = False
    fail_undo: bool = False
    _before: tuple[bool, int] | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        return f"set {self.key}={self.value}"

    def execute(self) -> None:
        if self.fail:
            raise ValueError(f"refusing {self.key}")
        self._before = (self.key in self.store, self.store.get(self.key, 0))
        self.store[self.key] = self.value

    def undo(self) -> None:
        if self.fail_undo:
            raise ValueError(f"cannot undo {self.key}")
        assert self._before is not None
        present, old = self._before
        if present:
            self.store[self.key] = old
        else:
            del self.store[self.key]


def test_set_key_satisfies_protocol() -> None:
    assert isinstance(SetKey({}, "a", 1), Command)


def test_empty_stacks_raise_specific_errors() -> None:
    h = CommandHistory()
    with pytest.raises(NothingToUndo):
        h.undo()
    with pytest.raises(NothingToRedo):
        h.redo()
    assert not h.can_undo and not h.can_redo


def test_undo_redo_roundtrip_and_descriptions() -> None:
    store: dict[str, int] = {}
    h = CommandHistory()
    h.execute(SetKey(store, "a", 1))
    h.execute(SetKey(store, "a", 2))
    assert h.undo_descriptions() == ["set a=2", "set a=1"]
    assert h.undo().description == "set a=2"
    assert store == {"a": 1}
    assert h.redo_descriptions() == ["set a=2"]
    h.redo()
    assert store == {"a": 2}
    h.undo()
    h.undo()
    assert store == {}
    with pytest.raises(NothingToUndo):
        h.undo()
    h.redo()
    h.redo()
    assert store == {"a": 2}
    with pytest.raises(NothingToRedo):
        h.redo()


def test_new_command_clears_redo() -> None:
    store: dict[str, int] = {}
    h = CommandHistory()
    h.execute(SetKey(store, "a", 1))
    h.undo()
    assert h.can_redo
    h.execute(SetKey(store, "b", 2))
    assert not h.can_redo
    with pytest.raises(NothingToRedo):
        h.redo()


def test_failed_execute_leaves_no_trace() -> None:
    store: dict[str, int] = {"a": 1}
    h = CommandHistory()
    h.execute(SetKey(store, "a", 5))
    h.undo()
    with pytest.raises(ValueError, match="refusing"):
        h.execute(SetKey(store, "b", 2, fail=True))
    assert store == {"a": 1}
    assert h.undo_descriptions() == []
    assert h.redo_descriptions() == ["set a=5"]  # redo survives a refused command


def test_failed_undo_keeps_command_on_undo_stack() -> None:
    store: dict[str, int] = {}
    h = CommandHistory()
    h.execute(SetKey(store, "a", 1, fail_undo=True))
    with pytest.raises(ValueError):
        h.undo()
    assert h.undo_descriptions() == ["set a=1"]
    assert store == {"a": 1}


def test_composite_executes_in_order_and_undoes_as_one() -> None:
    store: dict[str, int] = {}
    h = CommandHistory()
    comp = CompositeCommand(
        "bulk", [SetKey(store, "a", 1), SetKey(store, "a", 2), SetKey(store, "b", 3)]
    )
    h.execute(comp)
    assert store == {"a": 2, "b": 3}
    assert h.undo_descriptions() == ["bulk"]
    h.undo()
    assert store == {}
    h.redo()
    assert store == {"a": 2, "b": 3}


def test_composite_rolls_back_done_parts_on_failure() -> None:
    store: dict[str, int] = {"a": 0}
    h = CommandHistory()
    comp = CompositeCommand(
        "bulk", [SetKey(store, "a", 1), SetKey(store, "b", 2), SetKey(store, "c", 3, fail=True)]
    )
    with pytest.raises(ValueError, match="refusing c"):
        h.execute(comp)
    assert store == {"a": 0}
    assert not h.can_undo
    assert not comp.executed


def test_composite_rollback_failure_is_noted_not_swallowed() -> None:
    store: dict[str, int] = {}
    comp = CompositeCommand(
        "bulk", [SetKey(store, "a", 1, fail_undo=True), SetKey(store, "b", 2, fail=True)]
    )
    with pytest.raises(ValueError, match="refusing b") as info:
        comp.execute()
    assert any("cannot undo a" in note for note in info.value.__notes__)


def test_composite_undo_failure_reapplies_undone_parts() -> None:
    store: dict[str, int] = {}
    comp = CompositeCommand("bulk", [SetKey(store, "a", 1, fail_undo=True), SetKey(store, "b", 2)])
    comp.execute()
    with pytest.raises(ValueError, match="cannot undo a"):
        comp.undo()
    assert store == {"a": 1, "b": 2}
    assert comp.executed


def test_nested_composites() -> None:
    store: dict[str, int] = {}
    inner = CompositeCommand("inner", [SetKey(store, "x", 1), SetKey(store, "y", 2)])
    outer = CompositeCommand("outer", [SetKey(store, "x", 0), inner, SetKey(store, "z", 3)])
    h = CommandHistory()
    h.execute(outer)
    assert store == {"x": 1, "y": 2, "z": 3}
    h.undo()
    assert store == {}
    failing = CompositeCommand(
        "outer2",
        [CompositeCommand("in2", [SetKey(store, "p", 1)]), SetKey(store, "q", 1, fail=True)],
    )
    with pytest.raises(ValueError):
        h.execute(failing)
    assert store == {}


def test_double_execute_is_refused() -> None:
    store: dict[str, int] = {}
    h = CommandHistory()
    cmd = SetKey(store, "a", 1)
    h.execute(cmd)
    with pytest.raises(CommandAlreadyExecuted) as info:
        h.execute(cmd)
    assert isinstance(info.value, Conflict)
    assert h.undo_descriptions() == ["set a=1"]
    # Once undone it is not in effect any more: executing it again is a fresh execution.
    h.undo()
    h.execute(cmd)
    assert store == {"a": 1}
    comp = CompositeCommand("c", [SetKey(store, "b", 1)])
    comp.execute()
    with pytest.raises(CommandAlreadyExecuted):
        comp.execute()
    with pytest.raises(InvalidValue, match="same command object twice"):
        CompositeCommand("dup", [cmd, cmd])


def test_depth_bound_drops_oldest() -> None:
    store: dict[str, int] = {}
    h = CommandHistory(depth=3)
    for i in range(5):
        h.execute(SetKey(store, "a", i))
    assert h.undo_descriptions() == ["set a=4", "set a=3", "set a=2"]
    for _ in range(3):
        h.undo()
    assert store == {"a": 1}  # the two oldest can no longer be undone
    with pytest.raises(NothingToUndo):
        h.undo()
    with pytest.raises(InvalidValue, match="depth"):
        CommandHistory(depth=0)


ops = st.lists(
    st.tuples(st.sampled_from(["exec", "undo", "redo"]), st.sampled_from("abc"), st.integers(0, 9)),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_random_sequence_then_undo_all_restores_start(seq: list[tuple[str, str, int]]) -> None:
    start = {"a": 100}
    store = dict(start)
    h = CommandHistory(depth=1000)
    for op, key, value in seq:
        if op == "exec":
            h.execute(SetKey(store, key, value))
        elif op == "undo" and h.can_undo:
            h.undo()
        elif op == "redo" and h.can_redo:
            h.redo()
    while h.can_undo:
        h.undo()
    assert store == start
