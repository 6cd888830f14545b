"""Advertiser scope inside rules: an advertiser key may only name its own (or global) segments.

Why here and not in each route: a rule is a way to *read* a segment (sizing ``segment("x")``
counts x's members; targeting it spends on x's users). Object routes already hide another
advertiser's segment rows (404), so the same key must not reach those users through a rule in a
line item's targeting, a rule segment or an audience query. The check runs on every rule an
advertiser key sends, and answers exactly as for a missing segment, so it reveals nothing.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from adtarget.api.deps import Principal, app_session_factory, get_principal
from adtarget.catalog.tables import Segment
from adtarget.errors import NotFound
from adtarget.rules import from_json, parse
from adtarget.rules.ast import segment_names

#: Body fields of the audience routes that carry rules (a rule, or a list of them).
RULE_FIELDS = ("rule", "rules")


def rule_segments(rule: Any) -> frozenset[str]:
    """Segment names a rule (text or JSON form) references; empty when it does not parse
    (the route itself then reports the syntax error, naming the token)."""
    try:
        parsed = parse(rule) if isinstance(rule, str) else from_json(rule)
    except Exception:  # any malformed rule: the route reports it (naming the token) itself
        return frozenset()
    return segment_names(parsed)


def check_rule_segments(
    session: Session, principal: Principal, rules: list[Any], *, field: str
) -> None:
    """404 naming ``field`` when an advertiser key's rule names another advertiser's segment."""
    if principal.role != "advertiser":
        return
    names: set[str] = set()
    for rule in rules:
        if isinstance(rule, str) and not rule.strip():
            continue
        names |= rule_segments(rule)
    if not names:
        return
    rows = session.execute(
        select(Segment.name, Segment.advertiser_id).where(Segment.name.in_(sorted(names)))
    ).all()
    for name, owner in sorted(rows):
        if owner is not None and owner != principal.advertiser_id:
            raise NotFound(f'segment "{name}" does not exist', field=field)


async def audience_rules_in_scope(request: Request) -> None:
    """Router dependency for the audience routes: the body's ``rule``/``rules`` must only name
    segments the caller may see. Other roles pass through; the route validates the rest."""
    if request.method != "POST":
        return
    principal = get_principal(request)
    if principal.role != "advertiser":
        return
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return  # the route answers 400 invalid_json itself
    if not isinstance(body, dict):
        return
    for name in RULE_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        rules = value if name == "rules" and isinstance(value, list) else [value]
        with app_session_factory(request.app)() as session:
            check_rule_segments(session, principal, rules, field=name)
