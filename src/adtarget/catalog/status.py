"""The status state machine of catalog objects, declared once as data.

draft → active ⇄ paused → archived; archived is final. The same table drives the service checks,
the database CHECK constraints, the docs and the tests, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Final, Literal

from adtarget.errors import InvalidTransition, InvalidValue

Status = Literal["draft", "active", "paused", "archived"]

STATUSES: Final[tuple[str, ...]] = ("draft", "active", "paused", "archived")

#: Allowed moves: status -> the statuses it may change to (staying put is always allowed).
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "draft": frozenset({"active", "archived"}),
    "active": frozenset({"paused", "archived"}),
    "paused": frozenset({"active", "archived"}),
    "archived": frozenset(),
}

#: Where each kind of object starts its life when the caller does not say.
INITIAL_STATUS: Final[dict[str, str]] = {
    "advertiser": "active",
    "campaign": "draft",
    "line_item": "draft",
    "creative": "active",
    "segment": "active",
    "dimension": "active",
}

APPROVAL_STATUSES: Final[tuple[str, ...]] = ("pending", "approved", "rejected")


def check_status(value: str, *, field: str = "status") -> str:
    """Return ``value`` if it is a known status, else raise naming the field."""
    if value not in TRANSITIONS:
        raise InvalidValue(
            f"{field} must be one of {', '.join(STATUSES)}, got {value!r}",
            field=field,
            allowed=list(STATUSES),
        )
    return value


def check_transition(current: str, target: str, *, field: str = "status") -> None:
    """Raise ``InvalidTransition`` unless ``current -> target`` is allowed (or a no-op)."""
    check_status(target, field=field)
    if current == target:
        return
    allowed = TRANSITIONS.get(current, frozenset())
    if target not in allowed:
        nexts = ", ".join(s for s in STATUSES if s in allowed) or "nothing (final)"
        raise InvalidTransition(
            f"cannot change {field} from {current!r} to {target!r}; {current!r} may go to {nexts}",
            field=field,
            current=current,
            target=target,
        )


def sql_in(values: tuple[str, ...] | list[str]) -> str:
    """``'a', 'b'`` — the literal list used inside CHECK ... IN (...) constraints."""
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)
