"""Real-time profile updates: validate a batch, log it durably, apply it to the live audience.

Why one function for HTTP and the broker: both must answer the same way for the same update
(accepted, duplicate, or rejected with a reason) and both must have logged an update durably
before they acknowledge it. Each update is checked on its own against the dimension registry,
the way an upload checks a row, so one bad update never costs the others in its batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adtarget.audience.delta import Update
from adtarget.audience.gcpause import gc_paused
from adtarget.audience.live import LiveFollower, encode
from adtarget.errors import InvalidValue
from adtarget.ingest.quick_check import Checked, compiled
from adtarget.rules.registry import DimensionSpec

log = logging.getLogger("adtarget.ingest")
MAX_ID_CHARS = 256
MAX_UPDATE_ID_CHARS = 200
MAX_SET_VALUES = 1000
MAX_BATCH = 50_000


@dataclass
class UpdateResult:
    """The answer to one batch: counts, and every rejection with its reason."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of ``POST /v1/profiles/updates``."""
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


class Rejected(ValueError):
    """Why one update cannot apply."""


def _check_value(spec: DimensionSpec, value: Any) -> Any:
    """The update's value for ``spec`` in its stored form; raises ``Rejected``."""
    name = spec.name
    if value is None:
        return None
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise Rejected(f"{name}: expected true or false, got {value!r}")
        return value
    if spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Rejected(f"{name}: expected a number, got {value!r}")
        if isinstance(value, int) and not -(1 << 63) <= value < 1 << 63:
            raise Rejected(f"{name}: {value} is outside the 64-bit integer range")
        if not math.isfinite(value):
            raise Rejected(f"{name}: {value!r} is not a finite number")
        return value
    if spec.type == "set":
        if not isinstance(value, list):
            raise Rejected(f"{name}: expected a list of strings, got {value!r}")
        if len(value) > MAX_SET_VALUES:
            raise Rejected(f"{name}: more than {MAX_SET_VALUES} values")
        for v in value:
            _check_string(spec, v)
        return frozenset(value)
    _check_string(spec, value)
    return value


def _check_string(spec: DimensionSpec, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise Rejected(f"{spec.name}: expected a non-empty string, got {value!r}")
    if len(value) > MAX_ID_CHARS:
        raise Rejected(f"{spec.name}: value longer than {MAX_ID_CHARS} characters")
    if spec.allowed_values is not None and value not in spec.allowed_values:
        allowed = ", ".join(sorted(spec.allowed_values)[:10])
        raise Rejected(f"{spec.name}: {value!r} is not an allowed value ({allowed})")


def _check_id(obj: Mapping[str, Any], key: str, limit: int) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"{key} must be a non-empty string")
    if len(value) > limit:
        raise Rejected(f"{key} is longer than {limit} characters")
    return value


def validate_update(obj: Any, registry: Mapping[str, DimensionSpec]) -> dict[str, Any]:
    """One update checked and normalized: ``{"update_id", "user_id", "set", "unset", "delete"}``.

    Raises:
        Rejected: with the reason, naming the field or dimension.
    """
    if not isinstance(obj, Mapping):
        raise Rejected("an update must be an object")
    unknown = set(obj) - {"update_id", "user_id", "set", "unset", "delete"}
    if unknown:
        raise Rejected(f"unknown fields: {', '.join(sorted(unknown))}")
    update_id = _check_id(obj, "update_id", MAX_UPDATE_ID_CHARS)
    user_id = _check_id(obj, "user_id", MAX_ID_CHARS)
    delete = obj.get("delete", False)
    if not isinstance(delete, bool):  # 0 and 1 equal False and True in Python; JSON says neither
        raise Rejected("delete must be true or false")
    raw_set = obj.get("set") or {}
    raw_unset = obj.get("unset") or []
    if delete:
        if raw_set or raw_unset:
            raise Rejected("a delete cannot also set or unset dimensions")
        return {"update_id": update_id, "user_id": user_id, "delete": True}
    if not isinstance(raw_set, Mapping):
        raise Rejected("set must be an object of dimension: value")
    if not isinstance(raw_unset, list) or not all(isinstance(d, str) for d in raw_unset):
        raise Rejected("unset must be a list of dimension names")
    if not raw_set and not raw_unset:
        raise Rejected("an update needs set, unset or delete")
    both = set(raw_set) & set(raw_unset)
    if both:
        raise Rejected(f"dimension {sorted(both)[0]!r} is both set and unset")
    values: dict[str, Any] = {}
    for dim in [*raw_set, *raw_unset]:
        if dim not in registry:
            raise Rejected(f"unknown dimension {dim!r} (not in the dimension registry)")
    for dim, value in raw_set.items():
        values[dim] = _check_value(registry[dim], value)
    return {
        "update_id": update_id,
        "user_id": user_id,
        "set": values,
        "unset": sorted(set(raw_unset)),
    }


def accept_updates(
    updates: Sequence[Any],
    *,
    registry: Mapping[str, DimensionSpec],
    follower: LiveFollower,
    profiles: Callable[[list[str]], None] | None = None,
) -> UpdateResult:
    """Validate, log durably (deduplicated by ``update_id``), then apply to the live audience.

    Returns after the log committed, so every update counted as accepted survives a crash.
    """
    if len(updates) > MAX_BATCH:
        raise InvalidValue(f"at most {MAX_BATCH} updates per batch", field="updates")
    with gc_paused():
        return _accept(updates, registry, follower, profiles)


def _accept(
    updates: Sequence[Any],
    registry: Mapping[str, DimensionSpec],
    follower: LiveFollower,
    profiles: Callable[[list[str]], None] | None,
) -> UpdateResult:
    result = UpdateResult()
    valid: list[Checked] = []
    quick = compiled(registry)
    for index, obj in enumerate(updates):
        got = quick(obj)
        if got is None:  # not plainly valid: the full check, which names the reason
            try:
                got = _checked(validate_update(obj, registry))
            except Rejected as exc:
                result.rejected.append({"index": index, "reason": str(exc)})
                continue
        valid.append(got)
    with follower.local_batch():
        appended = follower.log.append([(c[0], c[1], c[2]) for c in valid])
        result.accepted = len(appended.accepted)
        result.duplicates = len(appended.duplicates)
        applied = [
            Update(seq, valid[i][1], valid[i][3], valid[i][4], valid[i][5])
            for i, seq in appended.accepted
        ]
        result.seqs = [u.seq for u in applied]
        follower.applied_locally(applied)
    if profiles is not None and applied:
        try:  # the log is the truth; a Redis hiccup only delays Redis until the next switch
            profiles([u.user_id for u in applied])
        except Exception as exc:  # noqa: BLE001
            log.warning("updates logged, but writing them to Redis profiles failed: %s", exc)
    return result


def _checked(u: dict[str, Any]) -> Checked:
    """A ``validate_update`` answer as the tuple the batch path logs and applies."""
    return (
        u["update_id"],
        u["user_id"],
        encode(u),
        u.get("set") or {},
        tuple(u.get("unset") or ()),
        bool(u.get("delete")),
    )
