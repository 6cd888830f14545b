"""The fast path of update validation: plainly valid updates checked and encoded in one pass.

Why a second path: per-update validation was the largest share of accepting a batch (profiled,
``bench/bench_realtime.py``), mostly generic checks and building error context that a valid
update never needs. Here each dimension gets one small checker, compiled once per registry,
and an update that passes every check is logged as is; anything else (a wrong type, an unknown
field or dimension, a bound crossed) answers ``None`` and goes through ``validate_update``,
which accepts or rejects it with the reason. So the fast path can only accept what the full
check accepts, never reject, and error messages stay in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, TypeGuard

import orjson

from adtarget.rules.registry import DimensionSpec

Checked = tuple[str, str, str, Mapping[str, Any], tuple[str, ...], bool]
"""``(update_id, user_id, log body, set values, unset dimensions, delete)``."""
MAX_ID_CHARS = 256
MAX_UPDATE_ID_CHARS = 200
MAX_SET_VALUES = 1000
INT_LIMIT = 1 << 53  # larger ints take the full check (and the log stores exact JSON numbers)
_FAIL = object()
_FIELDS = frozenset({"update_id", "user_id", "set", "unset", "delete"})
Check = Callable[[Any], Any]


def _string(allowed: frozenset[str] | None) -> Check:
    def check(v: Any) -> Any:
        if type(v) is not str or not 0 < len(v) <= MAX_ID_CHARS:
            return _FAIL
        return v if allowed is None or v in allowed else _FAIL

    return check


def _number(v: Any) -> Any:
    t = type(v)
    if t is int:
        return v if -INT_LIMIT < v < INT_LIMIT else _FAIL
    if t is float:
        return v if math.isfinite(v) else _FAIL
    return _FAIL


def _bool(v: Any) -> Any:
    return v if v is True or v is False else _FAIL


def _set(allowed: frozenset[str] | None) -> Check:
    one = _string(allowed)

    def check(v: Any) -> Any:
        if type(v) is not list or len(v) > MAX_SET_VALUES:
            return _FAIL
        for x in v:
            if one(x) is _FAIL:
                return _FAIL
        return frozenset(v)

    return check


def _checker(spec: DimensionSpec) -> Check:
    if spec.type == "number":
        return _number
    if spec.type == "bool":
        return _bool
    if spec.type == "set":
        return _set(spec.allowed_values)
    return _string(spec.allowed_values)


def _plain_id(v: Any, limit: int) -> TypeGuard[str]:
    return type(v) is str and 0 < len(v) <= limit and not v.isspace()


def compiled(registry: Mapping[str, DimensionSpec]) -> Callable[[Any], Checked | None]:
    """The fast check for ``registry`` (compiled once per distinct registry)."""
    return _compile(frozenset(registry.items()))


@lru_cache(maxsize=16)
def _compile(items: frozenset[tuple[str, DimensionSpec]]) -> Callable[[Any], Checked | None]:
    checks = {name: _checker(spec) for name, spec in items}

    def quick(obj: Any) -> Checked | None:
        """``obj`` checked and encoded, or ``None`` when it needs the full check."""
        if type(obj) is not dict or not _FIELDS.issuperset(obj):
            return None
        update_id, user_id = obj.get("update_id"), obj.get("user_id")
        if not _plain_id(update_id, MAX_UPDATE_ID_CHARS):
            return None
        if not _plain_id(user_id, MAX_ID_CHARS):
            return None
        delete = obj.get("delete", False)
        raw_set, raw_unset = obj.get("set"), obj.get("unset")
        if delete is True:
            if raw_set or raw_unset:
                return None
            return update_id, user_id, '{"d":true}', {}, (), True
        if delete is not False:
            return None
        if raw_set is None:
            raw_set = {}
        elif type(raw_set) is not dict:
            return None
        values: dict[str, Any] = {}
        body: dict[str, Any] = {}
        for dim, value in raw_set.items():
            check = checks.get(dim)
            if check is None:
                return None
            if value is None:
                values[dim] = body[dim] = None
                continue
            got = check(value)
            if got is _FAIL:
                return None
            values[dim] = got
            body[dim] = sorted(got) if type(got) is frozenset else got
        unset: tuple[str, ...] = ()
        if raw_unset:
            if type(raw_unset) is not list:
                return None
            for dim in raw_unset:
                if type(dim) is not str or dim not in checks or dim in raw_set:
                    return None
            unset = tuple(sorted(set(raw_unset)))
        elif raw_unset is not None and raw_unset != []:
            return None
        if not values and not unset:
            return None
        out: dict[str, Any] = {}
        if body:
            out["s"] = body
        if unset:
            out["u"] = list(unset)
        return update_id, user_id, orjson.dumps(out).decode(), values, unset, False

    return quick


__all__ = ["Checked", "compiled"]
