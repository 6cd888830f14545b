"""Why a rule did not match: the first failing predicate, in the rule's own text form.

Why a separate walk: the compiled evaluator answers only true/false. Explain runs only for line
items that did not match, and only when a request asks, so it may be a slow tree walk; it uses the
per-user semantics of ``rules.eval_python.matches`` so the reason given is the real one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from adtarget.rules.ast import SEGMENTS_FIELD, And, Not, Or, Rule, SegmentRef
from adtarget.rules.eval_python import compile_rule, matches
from adtarget.rules.format import format_value, to_text


def _value_text(rule: Rule, features: Mapping[str, Any]) -> str:
    dim = SEGMENTS_FIELD if isinstance(rule, SegmentRef) else getattr(rule, "dim", None)
    if dim is None:
        return ""
    value = features.get(dim)
    if value is None:
        return f" ({dim} missing)"
    if isinstance(value, frozenset | set | list | tuple):
        shown = ", ".join(format_value(v) for v in sorted(map(str, value))[:5])
        return f" ({dim} = {{{shown}}})"
    if isinstance(value, str | int | float):
        return f" ({dim} = {format_value(value)})"
    return ""


def failed_predicate(rule: Rule, features: Mapping[str, Any]) -> str:
    """Text naming the first predicate that makes ``rule`` false for ``features``.

    ``And`` descends into its first false child; a false ``Or`` or ``Not`` is reported whole
    (no single predicate is to blame). Call only when the rule does not match.
    """
    node = rule
    while isinstance(node, And):
        for child in node.children:
            if not matches(child, features):
                node = child
                break
        else:  # pragma: no cover - caller contract: the rule does not match
            return f"{to_text(rule)} held"
    if isinstance(node, Or | Not):
        return f"{to_text(node)} failed"
    return f"{to_text(node)} failed{_value_text(node, features)}"


Part = tuple[Rule, Callable[[Mapping[str, Any]], bool], str]


def rule_parts(rule: Rule) -> list[Part]:
    """A rule's top-level conjuncts, each compiled and rendered once (cached per index).

    Why: explain runs over every line item that did not match; checking precompiled conjuncts
    costs a few µs per line item where re-walking the tree interpretively costs several times
    more, which is what makes ``explain`` cheap enough to sample in production.
    """
    children = rule.children if isinstance(rule, And) else (rule,)
    return [(c, compile_rule(c), to_text(c)) for c in children]


def failed_part(parts: list[Part], features: Mapping[str, Any]) -> str:
    """``failed_predicate`` over precompiled ``rule_parts`` (same text)."""
    for child, check, text in parts:
        if check(features):
            continue
        if isinstance(child, And):
            return failed_predicate(child, features)
        if isinstance(child, Or | Not):
            return f"{text} failed"
        return f"{text} failed{_value_text(child, features)}"
    return "rule held"  # pragma: no cover - caller contract: the rule does not match
