"""The forecast replays a logged ad break as a break: a proposal in the category of a
higher-ranked line item that is in every break is forecast no impression, one in another
category fills a slot of each break, and one without a creative duration none."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adtarget.decision.eligibility import ZeroSpend
from adtarget.decision.forecast import forecast
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import (
    Decision,
    DecisionRequest,
    DecisionResult,
    LiveLineItem,
    PodSpec,
)
from adtarget.decision.profiles import MemoryProfileStore
from adtarget.decision.request_log import RequestLog
from adtarget.decision.request_store import ParquetRequestStore

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FLIGHT_START = datetime(2026, 3, 9, tzinfo=UTC)
FLIGHT_END = FLIGHT_START + timedelta(days=1)
USERS = [f"u{i}" for i in range(40)]


def _item(li: int, adv: int, category: str | None, priority: int, **kw: object) -> LiveLineItem:
    base: dict[str, object] = {
        "id": li,
        "campaign_id": 100 + li,
        "advertiser_id": adv,
        "priority": priority,
        "bid_cpm": 5.0,
        "rule": None,
        "formats": ("video",),
        "creatives": {"video": (1000 + li,)},
        "durations": {1000 + li: 30.0},
        "category": category,
    }
    base.update(kw)
    return LiveLineItem(**base)  # type: ignore[arg-type]


def _logged(root: Path, pod: PodSpec | None) -> None:
    log = RequestLog(ParquetRequestStore(root), sample_rate=1.0, retention_days=100_000)
    monday = datetime(2026, 3, 2, tzinfo=UTC) - timedelta(days=7)  # the flight's weekday
    served = DecisionResult([Decision(1, 101, 1001, 1, 5.0)], snapshot=None)
    for i, user in enumerate(USERS):
        ts = (monday + timedelta(minutes=10 * i)).timestamp()
        request = DecisionRequest(user, {}, pod.slots if pod else 1, ("video",), pod=pod)
        log.record(request, served, ts=ts)
    log.flush()


def _forecast(root: Path, proposal: LiveLineItem) -> float:
    live = LineItemIndex([_item(1, adv=1, category="auto", priority=1)])
    out = forecast(
        proposal=proposal,
        live=live,
        store=ParquetRequestStore(root),
        profiles=MemoryProfileStore({u: {} for u in USERS}),
        spend=ZeroSpend(),
        now=NOW,
    )
    return float(out["forecast_impressions"])


def test_a_logged_break_is_replayed_with_separation_and_durations(tmp_path: Path) -> None:
    _logged(tmp_path, PodSpec(2, 60.0))
    proposal = _item(
        50,
        adv=2,
        category="auto",
        priority=3,
        start=FLIGHT_START,
        end=FLIGHT_END,
        creatives={"video": (0,)},
        durations={0: 15.0},
    )
    assert _forecast(tmp_path, proposal) == 0  # the auto slot is taken by line item 1
    other = replace(proposal, category="telecom")
    assert _forecast(tmp_path, other) == len(USERS)  # 30 s + 15 s fit in 60 s, once a break
    assert _forecast(tmp_path, replace(other, durations={})) == 0  # no duration, no slot


def test_plain_logged_requests_still_forecast_as_single_ads(tmp_path: Path) -> None:
    _logged(tmp_path, None)
    proposal = _item(
        50, adv=2, category="auto", priority=3, start=FLIGHT_START, end=FLIGHT_END, durations={}
    )
    assert _forecast(tmp_path, proposal) == 0  # limit 1: line item 1 outranks it
    assert _forecast(tmp_path, replace(proposal, priority=1, bid_cpm=9.0)) == len(USERS)
