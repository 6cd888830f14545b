"""Explain's precompiled path names the same failed predicate as the interpretive tree walk."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from adtarget.decision.explain import failed_part, failed_predicate, rule_parts
from adtarget.rules.ast import Rule
from adtarget.rules.eval_python import compile_rule
from adtarget.rules.parse import parse

from .strategies import rules, users


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), users())
def test_failed_part_equals_failed_predicate(rule: Rule, user: dict[str, Any]) -> None:
    if compile_rule(rule)(user):
        return
    assert failed_part(rule_parts(rule), user) == failed_predicate(rule, user)


def test_failed_part_names_the_first_false_conjunct() -> None:
    rule = parse('country = "US" and age >= 18 and (device = "tv" or device = "pc")')
    parts = rule_parts(rule)
    assert failed_part(parts, {"country": "US", "age": 12}) == "age >= 18 failed (age = 12)"
    assert failed_part(parts, {"country": "US", "age": 30, "device": "phone"}) == (
        'device = "tv" or device = "pc" failed'
    )
