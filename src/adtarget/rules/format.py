"""AST → canonical text, and AST ↔ JSON (the API form).

``to_text`` writes the canonical form (lower-case keywords, double-quoted strings, parentheses
exactly where the tree needs them) so ``parse(to_text(r)) == r`` for every AST, including nested
``And`` inside ``And``. The JSON form is one object per node keyed by ``op``:

    {"op": "and"|"or", "args": [...]}        {"op": "not", "arg": {...}}
    {"op": "="|"!="|"<"|"<="|">"|">=", "dim": "age", "value": 18}
    {"op": "between", "dim": "age", "low": 18, "high": 34}
    {"op": "in"|"not in"|"has any"|"has all", "dim": "country", "values": ["US", "CA"]}
    {"op": "is missing"|"is not missing", "dim": "country"}
    {"op": "segment", "name": "sports_fans"}
"""

from __future__ import annotations

from typing import Any, NoReturn, cast

from adtarget.errors import RuleSyntaxError
from adtarget.rules.ast import (
    COMPARE_OPS,
    MAX_DEPTH,
    MAX_LIST_VALUES,
    MAX_NODES,
    And,
    Between,
    Compare,
    CompareOp,
    HasAll,
    HasAny,
    InList,
    IsMissing,
    Not,
    Or,
    Rule,
    SegmentRef,
    Value,
    number_ok,
)
from adtarget.rules.visitor import RuleVisitor


def quote(s: str) -> str:
    """A double-quoted rule string literal that the parser reads back to ``s``."""
    out = ['"']
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_value(v: Value) -> str:
    """One literal in rule syntax."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # always has '.' or 'e', so it parses back as a float
    return quote(v)


def _values(vs: tuple[Value, ...]) -> str:
    return "(" + ", ".join(format_value(v) for v in vs) + ")"


class _Text(RuleVisitor[str]):
    def visit_Or(self, rule: Or) -> str:
        return " or ".join(
            f"({self.visit(c)})" if isinstance(c, Or) else self.visit(c) for c in rule.children
        )

    def visit_And(self, rule: And) -> str:
        return " and ".join(
            f"({self.visit(c)})" if isinstance(c, And | Or) else self.visit(c)
            for c in rule.children
        )

    def visit_Not(self, rule: Not) -> str:
        inner = self.visit(rule.child)
        return f"not ({inner})" if isinstance(rule.child, And | Or) else f"not {inner}"

    def visit_Compare(self, rule: Compare) -> str:
        return f"{rule.dim} {rule.op} {format_value(rule.value)}"

    def visit_Between(self, rule: Between) -> str:
        return f"{rule.dim} between {format_value(rule.low)} and {format_value(rule.high)}"

    def visit_InList(self, rule: InList) -> str:
        return f"{rule.dim} {'not in' if rule.negated else 'in'} {_values(rule.values)}"

    def visit_HasAny(self, rule: HasAny) -> str:
        return f"{rule.dim} has any {_values(rule.values)}"

    def visit_HasAll(self, rule: HasAll) -> str:
        return f"{rule.dim} has all {_values(rule.values)}"

    def visit_IsMissing(self, rule: IsMissing) -> str:
        return f"{rule.dim} is {'not ' if rule.negated else ''}missing"

    def visit_SegmentRef(self, rule: SegmentRef) -> str:
        return f"segment({quote(rule.name)})"


class _Json(RuleVisitor[dict[str, Any]]):
    def visit_And(self, rule: And | Or) -> dict[str, Any]:
        return {
            "op": "and" if isinstance(rule, And) else "or",
            "args": [self.visit(c) for c in rule.children],
        }

    visit_Or = visit_And

    def visit_Not(self, rule: Not) -> dict[str, Any]:
        return {"op": "not", "arg": self.visit(rule.child)}

    def visit_Compare(self, rule: Compare) -> dict[str, Any]:
        return {"op": rule.op, "dim": rule.dim, "value": rule.value}

    def visit_Between(self, rule: Between) -> dict[str, Any]:
        return {"op": "between", "dim": rule.dim, "low": rule.low, "high": rule.high}

    def visit_InList(self, rule: InList) -> dict[str, Any]:
        return {
            "op": "not in" if rule.negated else "in",
            "dim": rule.dim,
            "values": list(rule.values),
        }

    def visit_HasAny(self, rule: HasAny | HasAll) -> dict[str, Any]:
        return {
            "op": "has any" if isinstance(rule, HasAny) else "has all",
            "dim": rule.dim,
            "values": list(rule.values),
        }

    visit_HasAll = visit_HasAny

    def visit_IsMissing(self, rule: IsMissing) -> dict[str, Any]:
        return {"op": "is not missing" if rule.negated else "is missing", "dim": rule.dim}

    def visit_SegmentRef(self, rule: SegmentRef) -> dict[str, Any]:
        return {"op": "segment", "name": rule.name}


_TEXT = _Text()
_JSON = _Json()


def to_text(rule: Rule) -> str:
    """Canonical rule text; ``parse(to_text(r)) == r``."""
    return _TEXT.visit(rule)


def to_json(rule: Rule) -> dict[str, Any]:
    """The JSON-ready dict form of a rule (see the module docstring)."""
    return _JSON.visit(rule)


_KEYS: dict[str, frozenset[str]] = {
    "and": frozenset({"op", "args"}),
    "or": frozenset({"op", "args"}),
    "not": frozenset({"op", "arg"}),
    "between": frozenset({"op", "dim", "low", "high"}),
    "in": frozenset({"op", "dim", "values"}),
    "not in": frozenset({"op", "dim", "values"}),
    "has any": frozenset({"op", "dim", "values"}),
    "has all": frozenset({"op", "dim", "values"}),
    "is missing": frozenset({"op", "dim"}),
    "is not missing": frozenset({"op", "dim"}),
    "segment": frozenset({"op", "name"}),
    **{op: frozenset({"op", "dim", "value"}) for op in COMPARE_OPS},
}


class _Reader:
    def __init__(self) -> None:
        self.nodes = 0

    def fail(self, message: str, path: str) -> NoReturn:
        raise RuleSyntaxError(f"{message} at {path}", line=0, column=0)

    def value(self, v: object, path: str, *, number: bool = False) -> Value:
        if number:
            ok = isinstance(v, int | float) and not isinstance(v, bool)
        else:
            ok = isinstance(v, str | int | float)
        if not ok or not number_ok(v):
            kind = "a finite number" if number else "a string, finite number, true or false"
            self.fail(f"expected {kind} but found {v!r}", path)
        return cast(Value, v)

    def values(self, vs: object, path: str) -> tuple[Value, ...]:
        if not isinstance(vs, list):
            self.fail(f"expected a list of values but found {type(vs).__name__}", path)
        if len(vs) > MAX_LIST_VALUES:
            self.fail(f"list has more than {MAX_LIST_VALUES} values", path)
        return tuple(self.value(v, f"{path}[{i}]") for i, v in enumerate(vs))

    def string(self, v: object, path: str) -> str:
        if not isinstance(v, str):
            self.fail(f"expected a string but found {v!r}", path)
        return v

    def read(self, obj: object, path: str, depth: int) -> Rule:
        if depth >= MAX_DEPTH:
            self.fail(f"rule is nested too deeply (more than {MAX_DEPTH} levels)", path)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.fail(f"rule is too large (more than {MAX_NODES} nodes)", path)
        if not isinstance(obj, dict):
            self.fail(f"expected a rule object but found {type(obj).__name__}", path)
        op = obj.get("op")
        if not isinstance(op, str) or op not in _KEYS:
            self.fail(f"unknown rule op {op!r} (expected one of {', '.join(_KEYS)})", path)
        extra = set(obj) - _KEYS[op]
        missing = _KEYS[op] - set(obj)
        if extra or missing:
            what = f"unexpected keys {sorted(extra)}" if extra else ""
            what = what or f"missing keys {sorted(missing)}"
            self.fail(f"{what} for op {op!r}", path)
        if op in ("and", "or"):
            args = obj["args"]
            if not isinstance(args, list) or len(args) < 2:
                self.fail(f"'{op}' needs a list of at least two rules in 'args'", path)
            kids = tuple(self.read(a, f"{path}.args[{i}]", depth + 1) for i, a in enumerate(args))
            return And(kids) if op == "and" else Or(kids)
        if op == "not":
            return Not(self.read(obj["arg"], f"{path}.arg", depth + 1))
        if op == "segment":
            return SegmentRef(self.string(obj["name"], f"{path}.name"))
        dim = self.string(obj["dim"], f"{path}.dim")
        if op in COMPARE_OPS:
            number = op not in ("=", "!=")
            v = self.value(obj["value"], f"{path}.value", number=number)
            return Compare(dim, cast(CompareOp, op), v)
        if op == "between":
            low = self.value(obj["low"], f"{path}.low", number=True)
            high = self.value(obj["high"], f"{path}.high", number=True)
            return Between(dim, cast(float, low), cast(float, high))
        if op in ("in", "not in"):
            return InList(dim, self.values(obj["values"], f"{path}.values"), op == "not in")
        if op in ("has any", "has all"):
            vals = self.values(obj["values"], f"{path}.values")
            return HasAny(dim, vals) if op == "has any" else HasAll(dim, vals)
        return IsMissing(dim, op == "is not missing")


def from_json(obj: object) -> Rule:
    """Read the JSON form back; raises ``RuleSyntaxError`` naming the JSON path (``$.args[1]``).

    Like ``parse`` this checks shape only; ``validate`` checks it against the registry.
    """
    return _Reader().read(obj, "$", 0)
