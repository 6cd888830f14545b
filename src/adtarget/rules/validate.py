"""Check a parsed rule against the dimension registry, and inline rule-based segments.

Parsing checks shape; this checks meaning: every dimension exists, each operator fits the
dimension's type, values have the right type and are allowed, lists are not empty, the rule is
within the size limits, and segment references resolve without cycles. Errors name the token and
where it was written (line/column are 0 when the rule came from JSON and has no positions).
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from adtarget.errors import RuleValidationError
from adtarget.rules.ast import (
    MAX_DEPTH,
    MAX_EXPANDED_DEPTH,
    MAX_EXPANDED_NODES,
    MAX_LIST_VALUES,
    MAX_NODES,
    And,
    Between,
    Compare,
    HasAll,
    HasAny,
    InList,
    IsMissing,
    Not,
    Or,
    Rule,
    SegmentRef,
    Value,
    depth,
    segment_names,
    size,
    walk,
)
from adtarget.rules.format import format_value
from adtarget.rules.registry import DimensionSpec
from adtarget.rules.visitor import RuleVisitor

_OP_NAME = {HasAny: "has any", HasAll: "has all", Between: "between"}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    pool = list(choices)
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fail(
    message: str, line: int | None, column: int | None, hint: str = ""
) -> RuleValidationError:
    if column is None:
        return RuleValidationError(f"{message}{hint}", line=0, column=0)
    where = f"column {column}" if (line or 1) == 1 else f"line {line}, column {column}"
    return RuleValidationError(f"{message} at {where}{hint}", line=line or 1, column=column)


def _node_fail(node: Rule, message: str, hint: str = "") -> RuleValidationError:
    return _fail(message, node.line, node.column, hint)


def _value_fail(node: Rule, index: int, message: str, hint: str = "") -> RuleValidationError:
    cols: tuple[int, ...] = getattr(node, "value_columns", ())
    column = cols[index] if index < len(cols) else node.column
    return _fail(message, node.line, column, hint)


def _check_value(node: Rule, index: int, v: Value, spec: DimensionSpec) -> None:
    token = format_value(v)
    want = {
        "category": "a string",
        "set": "a string",
        "number": "a number",
        "bool": "true or false",
    }
    ok = {
        "category": isinstance(v, str),
        "set": isinstance(v, str),
        "number": isinstance(v, int | float) and not isinstance(v, bool),
        "bool": isinstance(v, bool),
    }[spec.type]
    if not ok:
        raise _value_fail(
            node,
            index,
            f"type mismatch: value {token} for {spec.type} dimension '{spec.name}' must be "
            f"{want[spec.type]}",
        )
    if spec.allowed_values is not None and v not in spec.allowed_values:
        raise _value_fail(
            node,
            index,
            f"value {token} is not allowed for dimension '{spec.name}'",
            did_you_mean(str(v), sorted(spec.allowed_values)),
        )


class _Checker(RuleVisitor[None]):
    """Checks one node against the registry (``walk`` feeds it every node)."""

    def __init__(
        self, registry: Mapping[str, DimensionSpec], segments: Mapping[str, Rule | None] | None
    ) -> None:
        self.registry = registry
        self.segments = segments

    def visit_And(self, node: And | Or | Not) -> None:
        """Nothing to check: ``walk`` visits the children."""

    visit_Or = visit_Not = visit_And

    def visit_SegmentRef(self, node: SegmentRef) -> None:
        if self.segments is not None and node.name not in self.segments:
            raise _node_fail(
                node, f"unknown segment '{node.name}'", did_you_mean(node.name, self.segments)
            )

    def spec(self, node: Compare | Between | InList | HasAny | HasAll | IsMissing) -> DimensionSpec:
        spec = self.registry.get(node.dim)
        if spec is None:
            raise _node_fail(
                node, f"unknown dimension '{node.dim}'", did_you_mean(node.dim, self.registry)
            )
        return spec

    def visit_IsMissing(self, node: IsMissing) -> None:
        self.spec(node)

    def visit_Compare(self, node: Compare) -> None:
        spec, dim, op = self.spec(node), node.dim, node.op
        if op in ("=", "!=") and spec.type == "set":
            raise _node_fail(
                node,
                f"type mismatch: '{op}' does not apply to set dimension '{dim}'",
                " (use 'has any' or 'has all')",
            )
        if op not in ("=", "!=") and spec.type != "number":
            raise _node_fail(
                node, f"type mismatch: '{op}' needs a number dimension but '{dim}' is {spec.type}"
            )
        _check_value(node, 0, node.value, spec)

    def visit_Between(self, node: Between) -> None:
        spec, dim = self.spec(node), node.dim
        if spec.type != "number":
            raise _node_fail(
                node,
                f"type mismatch: 'between' needs a number dimension but '{dim}' is {spec.type}",
            )
        _check_value(node, 0, node.low, spec)
        _check_value(node, 1, node.high, spec)
        if node.low > node.high:
            raise _node_fail(
                node,
                f"'between' bounds are reversed ({format_value(node.low)} > "
                f"{format_value(node.high)}) for '{dim}'",
            )

    def visit_InList(self, node: InList) -> None:
        self._list(node, "not in" if node.negated else "in", is_set_op=False)

    def visit_HasAny(self, node: HasAny | HasAll) -> None:
        self._list(node, _OP_NAME[type(node)], is_set_op=True)

    visit_HasAll = visit_HasAny

    def _list(self, node: InList | HasAny | HasAll, name: str, *, is_set_op: bool) -> None:
        spec, dim = self.spec(node), node.dim
        if is_set_op and spec.type != "set":
            raise _node_fail(
                node,
                f"type mismatch: '{name}' needs a set dimension but '{dim}' is {spec.type}",
                " (use 'in')" if spec.type == "category" else "",
            )
        if not is_set_op and spec.type == "set":
            raise _node_fail(
                node,
                f"type mismatch: '{name}' does not apply to set dimension '{dim}'",
                f" (use 'not {dim} has any (...)')" if name == "not in" else " (use 'has any')",
            )
        if not node.values:
            raise _node_fail(node, f"empty value list for '{name}' on '{dim}'")
        if len(node.values) > MAX_LIST_VALUES:
            raise _node_fail(node, f"list has more than {MAX_LIST_VALUES} values")
        for i, v in enumerate(node.values):
            _check_value(node, i, v, spec)


def validate(
    rule: Rule,
    registry: Mapping[str, DimensionSpec],
    *,
    segments: Mapping[str, Rule | None] | None = None,
) -> None:
    """Raise ``RuleValidationError`` unless ``rule`` fits ``registry`` (and ``segments``).

    Args:
        rule: a parsed (or JSON-read) rule.
        registry: dimension name → spec.
        segments: when given, every ``segment("x")`` must name a key; the value is the
            segment's rule (rule-based segment, checked for cycles by inlining) or ``None`` (a
            list segment, membership only). To check a new segment definition for cycles, pass
            it in the mapping under its own name.
    """
    if depth(rule) > MAX_DEPTH:
        raise _node_fail(rule, f"rule is nested too deeply (more than {MAX_DEPTH} levels)")
    if size(rule) > MAX_NODES:
        raise _node_fail(rule, f"rule is too large (more than {MAX_NODES} nodes)")
    checker = _Checker(registry, segments)
    for node in walk(rule):
        checker.visit(node)
    if segments is not None:
        expand_segments(rule, segments.get)


def expand_segments(rule: Rule, resolve: Callable[[str], Rule | None]) -> Rule:
    """Inline rule-based segments: ``segment("x")`` becomes x's rule, recursively.

    ``resolve(name)`` returns the segment's rule, or ``None`` to keep the reference (a list
    segment, evaluated by membership). A cycle raises ``RuleValidationError`` naming it; so does
    an expansion beyond ``MAX_EXPANDED_DEPTH``/``MAX_EXPANDED_NODES`` (diamond blow-up).
    """
    return _Expander(rule, resolve).visit(rule, (), 1, None)


class _Expander(RuleVisitor[Rule]):
    """``expand_segments``' walk: ``visit(node, stack, depth, origin)``."""

    def __init__(self, rule: Rule, resolve: Callable[[str], Rule | None]) -> None:
        self.rule = rule
        self.resolve = resolve
        self.memo: dict[str, Rule] = {}
        self.budget = MAX_EXPANDED_NODES

    def visit(self, node: Rule, *args: Any) -> Rule:
        """Count the node against the limits, then dispatch it."""
        self.budget -= 1
        d = args[1]
        if d > MAX_EXPANDED_DEPTH:
            raise _node_fail(
                self.rule,
                f"rule is nested too deeply once segments are inlined (more "
                f"than {MAX_EXPANDED_DEPTH} levels)",
            )
        if self.budget < 0:
            raise _node_fail(
                self.rule,
                f"rule is too large once segments are inlined (more than "
                f"{MAX_EXPANDED_NODES} nodes)",
            )
        return super().visit(node, *args)

    def visit_And(self, node: And, stack: tuple[str, ...], d: int, origin: Rule | None) -> Rule:
        kids = tuple(self.visit(c, stack, d + 1, origin) for c in node.children)
        return And(kids, line=node.line, column=node.column)

    def visit_Or(self, node: Or, stack: tuple[str, ...], d: int, origin: Rule | None) -> Rule:
        kids = tuple(self.visit(c, stack, d + 1, origin) for c in node.children)
        return Or(kids, line=node.line, column=node.column)

    def visit_Not(self, node: Not, stack: tuple[str, ...], d: int, origin: Rule | None) -> Rule:
        child = self.visit(node.child, stack, d + 1, origin)
        return Not(child, line=node.line, column=node.column)

    def visit_leaf(self, node: Rule, stack: tuple[str, ...], d: int, origin: Rule | None) -> Rule:
        """Predicates stay as they are."""
        return node

    visit_Compare = visit_Between = visit_InList = visit_leaf
    visit_HasAny = visit_HasAll = visit_IsMissing = visit_leaf

    def visit_SegmentRef(
        self, node: SegmentRef, stack: tuple[str, ...], d: int, origin: Rule | None
    ) -> Rule:
        if node.name in stack:
            cycle = " -> ".join((*stack[stack.index(node.name) :], node.name))
            raise _node_fail(origin or node, f"segment cycle: {cycle}")
        if node.name in self.memo:
            self.budget -= size(self.memo[node.name])
            return self.memo[node.name]
        target = self.resolve(node.name)
        if target is None:
            return node
        out = self.visit(target, (*stack, node.name), d, origin or node)
        self.memo[node.name] = out
        return out


def hidden_reach(
    definitions: Mapping[str, Rule | None], hidden: Collection[str]
) -> dict[str, tuple[str, ...]]:
    """Every visible segment whose definition reaches a hidden one, with the path to it.

    Why: a caller's rule may name only segments it may see, but a rule segment it may see (its
    own, or a global one) can name another advertiser's segment in its *stored* rule (an admin
    wrote it). That rule is inlined, or read from the snapshot where it was materialized, when
    the caller's rule is evaluated; authorization must therefore decide on the rule as it will
    be evaluated, i.e. after expansion. ``definitions`` holds every segment the caller may see,
    archived ones too (a materialized archived segment still counts), name -> its rule or
    ``None`` (a list segment). Result: name -> ``(name, ..., hidden_name)``.
    """
    if not hidden:
        return {}
    refs = {name: sorted(segment_names(r)) for name, r in definitions.items() if r is not None}
    out: dict[str, tuple[str, ...]] = {}
    for start in definitions:
        if start in hidden or start not in refs:
            continue
        parent: dict[str, str] = {start: ""}
        queue = deque([start])
        while queue:  # breadth first: the shortest path, and cycles cannot loop
            name = queue.popleft()
            for ref in refs.get(name, ()):
                if ref in parent:
                    continue
                parent[ref] = name
                if ref in hidden:
                    path = [ref]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    out[start] = tuple(reversed(path))
                    queue.clear()
                    break
                queue.append(ref)
    return out


def refuse_hidden(
    rule: Rule, hidden: Collection[str], reach: Mapping[str, tuple[str, ...]]
) -> None:
    """Raise ``RuleValidationError`` when ``rule``, once rule segments are expanded, would read a
    hidden segment (``reach`` from ``hidden_reach``).

    A hidden name written in the rule itself fails exactly as a missing one; one reached
    through a visible rule segment names that segment and the hidden one it uses, as unknown.
    The one check every route that evaluates or stores a caller's rule goes through.
    """
    if not hidden and not reach:
        return
    for node in walk(rule):
        if not isinstance(node, SegmentRef):
            continue
        if node.name in hidden:
            raise _node_fail(node, f"unknown segment '{node.name}'")
        path = reach.get(node.name)
        if path is not None:
            via = " -> ".join(path)
            raise _node_fail(
                node,
                f"segment '{node.name}' uses unknown segment '{path[-1]}' ({via})",
            )
