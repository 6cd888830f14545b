"""The status state machine, checked pair by pair against the issue's diagram."""

from __future__ import annotations

import itertools

import pytest

from adtarget.catalog.status import STATUSES, TRANSITIONS, check_status, check_transition
from adtarget.errors import InvalidTransition, InvalidValue

ALLOWED = {
    ("draft", "active"),
    ("draft", "archived"),
    ("active", "paused"),
    ("paused", "active"),
    ("active", "archived"),
    ("paused", "archived"),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(STATUSES, STATUSES)))
def test_every_pair(current: str, target: str) -> None:
    if current == target or (current, target) in ALLOWED:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_transition(current, target)
        assert info.value.field == "status"
        assert current in info.value.message and target in info.value.message


def test_archived_is_final() -> None:
    assert TRANSITIONS["archived"] == frozenset()
    with pytest.raises(InvalidTransition, match="nothing \\(final\\)"):
        check_transition("archived", "active")


def test_unknown_status_names_the_field() -> None:
    with pytest.raises(InvalidValue) as info:
        check_status("running", field="status")
    assert info.value.field == "status"
    with pytest.raises(InvalidValue):
        check_transition("draft", "running")
