"""Load the servable line items from the catalog, denormalised into ``LiveLineItem``s.

The rows come from the catalog's few set-wide queries (``catalog/live.py``: plain column
tuples, the stored rule as text, so ``RebuildCache`` can reuse the AST of every rule that did
not change). Rule-based segments are inlined here (``expand_segments``) so the index
sees plain predicates; list segments stay ``segment("x")``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from adtarget.catalog.repo import LiveCatalog, SqlLiveCatalog
from adtarget.decision.eligibility import parse_dayparting
from adtarget.decision.models import CapLevel, FrequencyCap, LiveLineItem
from adtarget.decision.rebuild_cache import RebuildCache
from adtarget.rules.ast import Rule, segment_names
from adtarget.rules.format import from_json
from adtarget.rules.parse import parse
from adtarget.rules.validate import expand_segments

log = logging.getLogger(__name__)


def _cap(level: CapLevel, owner: int, count: int | None, window: int | None) -> list[FrequencyCap]:
    if count and window:
        return [FrequencyCap(level, owner, int(count), int(window))]
    return []


def _stored_rule(json_text: str | None, text: str | None) -> str | None:
    """The cache key of a stored rule: its exact stored JSON, else its text; None = no rule."""
    if json_text and json_text != "null":
        return "json:" + json_text
    if text and text.strip():
        return "text:" + text
    return None


def _parse_stored(stored: str) -> Rule:
    kind, _, body = stored.partition(":")
    return from_json(json.loads(body)) if kind == "json" else parse(body)


def _segment_rules(source: LiveCatalog, cache: RebuildCache) -> tuple[dict[str, Rule], Hashable]:
    """Rule-based segments' ASTs by name, and a fingerprint of them all (for the cache)."""
    out: dict[str, Rule] = {}
    state: list[tuple[str, str | None]] = []
    for name, text, json_text in source.rule_segment_rows():
        stored = _stored_rule(json_text, text) or "text:"
        state.append((name, stored))
        try:
            out[name] = cache.parsed(stored, partial(_parse_stored, stored))
        except Exception:  # a broken stored segment must not stop every other line item
            log.warning("segment %r has an unreadable rule; references stay unresolved", name)
    return out, tuple(state)


def _tiny_segments(source: LiveCatalog, min_size: int) -> dict[str, int]:
    """Segments whose size at the last publish is below ``min_size`` (never computed: allowed)."""
    if min_size <= 0:
        return {}
    return source.small_segments(min_size)


def _rule_of(
    stored: str | None,
    segments: Mapping[str, Rule],
    cache: RebuildCache,
    tiny: Mapping[str, int] | None = None,
) -> Rule | None:
    if stored is None:
        return None
    rule = cache.parsed(stored, partial(_parse_stored, stored))
    if not (tiny or segments) or not cache.references_segments(rule):
        return rule
    if tiny:
        for name in sorted(segment_names(rule)):
            if name in tiny:
                raise TinySegment(name, tiny[name])
    if not segments:
        return rule
    return cache.expanded(rule, lambda r: expand_segments(r, segments.get))


class TinySegment(Exception):
    """A line item names a segment that shrank below the minimum audience size since it was
    written (writes are refused then; this catches the segment shrinking afterwards)."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__(f"segment {name!r} has {size} users, below the minimum audience size")
        self.name = name


class ForeignSegment(Exception):
    """A line item whose targeting, once rule segments are expanded, reads a segment owned by
    another advertiser (an admin wrote that segment's rule, or the targeting itself). Writes by
    advertiser keys are refused at the API; this is the serving side of the same rule, decided
    on the rule the engine will use, whoever wrote it."""

    def __init__(self, path: tuple[str, ...], owner: int, advertiser: int) -> None:
        via = " -> ".join(path)
        super().__init__(
            f"targeting reaches segment {path[-1]!r} of advertiser {owner}, not of advertiser "
            f"{advertiser} ({via})"
        )


def _foreign_path(
    rule: Rule, advertiser: int, owners: Mapping[str, int], segments: Mapping[str, Rule]
) -> tuple[tuple[str, ...], int] | None:
    """The shortest path from ``rule`` to a segment another advertiser owns, through rule
    segments' definitions (breadth first, so cycles cannot loop), and that owner."""
    queue: list[tuple[str, ...]] = [(name,) for name in sorted(segment_names(rule))]
    seen = {path[0] for path in queue}
    while queue:
        path = queue.pop(0)
        owner = owners.get(path[-1])
        if owner is not None and owner != advertiser:
            return path, owner
        definition = segments.get(path[-1])
        for ref in sorted(segment_names(definition)) if definition is not None else ():
            if ref not in seen:
                seen.add(ref)
                queue.append((*path, ref))
    return None


def _check_owners(
    stored: str | None,
    advertiser: int,
    owners: Mapping[str, int],
    segments: Mapping[str, Rule],
    cache: RebuildCache,
    memo: dict[tuple[str, int], tuple[tuple[str, ...], int] | None],
) -> None:
    """Raise ``ForeignSegment`` when the stored rule reaches another advertiser's segment.

    ``memo`` lives for one rebuild: the answer depends on every segment's owner and rule."""
    if stored is None or not owners:
        return
    rule = cache.parsed(stored, partial(_parse_stored, stored))
    if not cache.references_segments(rule):
        return
    key = (stored, advertiser)
    if key not in memo:
        memo[key] = _foreign_path(rule, advertiser, owners, segments)
    found = memo[key]
    if found is not None:
        raise ForeignSegment(found[0], found[1], advertiser)


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


NotLive = tuple[int, str, str]
"""``(line_item_id, reason, detail)`` of a catalog line item that cannot serve at all."""


@dataclass(frozen=True, slots=True)
class LoadedCatalog:
    """The live set plus, for ``explain``, why every other line item is not in it."""

    items: list[LiveLineItem]
    not_live: list[NotLive] = field(default_factory=list)


def _as_source(catalog: LiveCatalog | Session) -> LiveCatalog:
    return SqlLiveCatalog(catalog) if isinstance(catalog, Session) else catalog


def load_live_line_items(
    catalog: LiveCatalog | Session, *, cache: RebuildCache | None = None
) -> list[LiveLineItem]:
    """Line items and campaigns both ``active`` with at least one approved, active creative.

    A line item whose stored rule cannot be read is skipped with a warning (it cannot be served
    correctly, and must not take the others down). ``cache`` (kept by ``IndexHolder`` across
    rebuilds) skips re-parsing rules whose stored text did not change.
    """
    return _load_live(_as_source(catalog), {}, cache)


def load_catalog(
    catalog: LiveCatalog | Session,
    *,
    min_segment_size: int = 0,
    cache: RebuildCache | None = None,
    ids: Collection[int] | None = None,
) -> LoadedCatalog:
    """``load_live_line_items`` and the first reason each other line item cannot serve.

    Reasons: ``status`` (line item or campaign not active), ``no_creative`` (no approved, active
    creative in its formats), ``invalid`` (stored rule or dayparting unreadable). One extra
    query over ids and statuses, so explain can name them without touching the request path.
    ``ids`` restricts everything to those line items (an index patch: ``decision/patching.py``).
    """
    skipped: dict[int, str] = {}
    tiny: dict[int, str] = {}
    foreign: dict[int, str] = {}
    source = _as_source(catalog)
    tiny_segments = _tiny_segments(source, min_segment_size)
    items = _load_live(source, skipped, cache, tiny_segments, tiny, ids, foreign)
    live = {it.id for it in items}
    not_live: list[NotLive] = []
    statuses = source.line_item_statuses() if ids is None else source.line_item_statuses(ids)
    for li_id, li_status, camp_id, camp_status in statuses:
        if li_id in live:
            continue
        if li_status != "active":
            not_live.append((li_id, "status", f"line item is {li_status}"))
        elif camp_status != "active":
            not_live.append((li_id, "status", f"campaign {camp_id} is {camp_status}"))
        elif li_id in foreign:
            not_live.append((li_id, "foreign_segment", foreign[li_id]))
        elif li_id in tiny:
            not_live.append((li_id, "segment_below_minimum", tiny[li_id]))
        elif li_id in skipped:
            not_live.append((li_id, "invalid", skipped[li_id]))
        else:
            not_live.append(
                (li_id, "no_creative", "no approved, active creative in the line item's formats")
            )
    return LoadedCatalog(items, not_live)


def _json_list(text: str | None) -> tuple[str, ...]:
    value = json.loads(text) if text else None
    return tuple(value) if isinstance(value, list) else ()


def _dayparting(text: str | None) -> frozenset[int] | None:
    return parse_dayparting(json.loads(text) if text else None)


def _duration(text: str | None) -> float | None:
    """``attributes.duration`` of a creative when it is a positive, finite number of seconds."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    found = value.get("duration") if isinstance(value, dict) else None
    if isinstance(found, bool) or not isinstance(found, int | float):
        return None
    return float(found) if 0 < found < math.inf else None


def _attributes(text: str | None) -> Mapping[str, Any]:
    """A creative's ``attributes`` as registered (an object; anything else reads as empty)."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _category(campaign: str | None, advertiser: str | None) -> str | None:
    """The competitive category a line item competes in: its campaign's, else its advertiser's
    (the catalog stores both trimmed and lower-cased)."""
    return campaign or advertiser or None


def _live_item(
    row: Sequence[Any],
    campaign: Sequence[Any],
    rule: Rule | None,
    formats: tuple[str, ...],
    creatives: dict[str, tuple[int, ...]],
    daypart: frozenset[int] | None,
    durations: dict[int, float],
    attributes: dict[int, Mapping[str, Any]],
) -> LiveLineItem:
    (
        li_id, priority, bid_cpm, _formats, start, end, budget_total, pacing_mode,
        cap_count, cap_window, _text, _json, _campaign_id,
    ) = row  # fmt: skip
    (
        camp_id, camp_start, camp_end, camp_budget_total, camp_budget_daily, camp_pacing_mode,
        camp_timezone, _daypart, camp_cap_count, camp_cap_window,
        adv_id, adv_cap_count, adv_cap_window, camp_category, adv_category,
    ) = campaign  # fmt: skip
    caps = (
        _cap("line_item", li_id, cap_count, cap_window)
        + _cap("campaign", camp_id, camp_cap_count, camp_cap_window)
        + _cap("advertiser", adv_id, adv_cap_count, adv_cap_window)
    )
    return LiveLineItem(
        id=li_id,
        campaign_id=camp_id,
        advertiser_id=adv_id,
        priority=priority,
        bid_cpm=float(bid_cpm),
        rule=rule,
        formats=formats,
        creatives=creatives,
        caps=tuple(caps),
        start=start,
        end=end,
        campaign_start=camp_start,
        campaign_end=camp_end,
        budget_total=_f(budget_total),
        campaign_budget_total=_f(camp_budget_total),
        campaign_budget_daily=_f(camp_budget_daily),
        pacing_mode="asap" if pacing_mode == "asap" else "even",
        campaign_pacing_mode="asap" if camp_pacing_mode == "asap" else "even",
        timezone=camp_timezone or "UTC",
        dayparting=daypart,
        category=_category(camp_category, adv_category),
        durations=durations,
        attributes=attributes,
    )


def _load_live(
    source: LiveCatalog,
    skipped: dict[int, str],
    cache: RebuildCache | None = None,
    tiny_segments: Mapping[str, int] | None = None,
    tiny: dict[int, str] | None = None,
    ids: Collection[int] | None = None,
    foreign: dict[int, str] | None = None,
) -> list[LiveLineItem]:
    cache = cache if cache is not None else RebuildCache()
    cache.begin_rebuild()
    segments, segments_state = _segment_rules(source, cache)
    owners = source.segment_owners()
    memo: dict[tuple[str, int], tuple[tuple[str, ...], int] | None] = {}
    cache.use_segments((segments_state, tuple(sorted(owners.items()))))
    if ids is None:
        creatives_of = source.live_creatives()
        rows = source.live_rows()
        campaigns = source.live_campaigns()
    else:  # a patch: the same queries for a few line items and their campaigns
        creatives_of = source.live_creatives(ids)
        rows = source.live_rows(ids)
        campaigns = source.live_campaigns({r[12] for r in rows})
    out: list[LiveLineItem] = []
    for row in rows:
        li_id, formats_text, targeting, targeting_json, campaign_id = (
            row[0], row[3], row[10], row[11], row[12]
        )  # fmt: skip
        campaign = campaigns.get(campaign_id)
        if campaign is None:  # the campaign changed status between the two queries
            continue
        daypart_text = campaign[7]
        formats = cache.value("formats", formats_text, partial(_json_list, formats_text))
        grouped: dict[str, list[int]] = {}
        durations: dict[int, float] = {}
        attrs: dict[int, Mapping[str, Any]] = {}
        texts: list[tuple[int, str | None]] = []
        for creative_id, fmt, attributes in creatives_of.get(li_id, ()):
            if not formats or fmt in formats:
                grouped.setdefault(fmt, []).append(creative_id)
                seconds = cache.value("duration", attributes, partial(_duration, attributes))
                if seconds is not None:
                    durations[creative_id] = seconds
                attrs[creative_id] = cache.value(
                    "attributes", attributes, partial(_attributes, attributes)
                )
                texts.append((creative_id, attributes))
        if not grouped:
            continue
        creatives = {k: tuple(v) for k, v in grouped.items()}
        stored = _stored_rule(targeting_json, targeting)
        try:
            _check_owners(stored, campaign[10], owners, segments, cache, memo)
            rule = _rule_of(stored, segments, cache, tiny_segments)
            daypart = cache.value("dayparting", daypart_text, partial(_dayparting, daypart_text))
        except TinySegment as exc:
            if tiny is not None:
                tiny[li_id] = str(exc)
            continue
        except ForeignSegment as exc:
            log.warning("line item %s not served: %s", li_id, exc)
            if foreign is not None:
                foreign[li_id] = str(exc)
            continue
        except Exception as exc:
            log.warning("line item %s skipped: %s", li_id, exc)
            skipped[li_id] = f"unreadable targeting or dayparting: {exc}"
            continue
        key = (tuple(row), campaign, tuple(creatives.items()), tuple(texts), id(rule))
        make = partial(
            _live_item, row, campaign, rule, formats, creatives, daypart, durations, attrs
        )
        item = cache.value("item", key, make)
        if item.rule is not rule:  # the key pins nothing of the rule's; never trust an id alone
            item = make()
        out.append(item)
    return out
