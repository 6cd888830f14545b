"""Input models: field-level refusals become InvalidValue naming the JSON path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from adtarget.catalog.models import CampaignCreate, LineItemCreate, field_path, parse_input
from adtarget.errors import InvalidValue


def test_field_path() -> None:
    assert field_path(("formats", 0)) == "formats[0]"
    assert field_path(("frequency_cap", "count")) == "frequency_cap.count"


def test_datetimes_become_utc_and_money_exact() -> None:
    plus2 = timezone(timedelta(hours=2))
    c = parse_input(
        CampaignCreate,
        {
            "advertiser_id": 1,
            "name": "  x ",
            "budget_total": "0.10",
            "start": "2026-01-01T00:00:00",
            "end": datetime(2026, 1, 2, 2, tzinfo=plus2),
        },
    )
    assert c.start == datetime(2026, 1, 1, tzinfo=UTC) and c.start.tzinfo is UTC
    assert c.end == datetime(2026, 1, 2, tzinfo=UTC)
    assert c.budget_total == Decimal("0.10") and c.name == "x"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"bid_cpm": "1.1234567"}, "bid_cpm"),
        ({"bid_cpm": "abc"}, "bid_cpm"),
        ({"name": ""}, "name"),
        ({"formats": "video_30s"}, "formats"),
        ({"frequency_cap": {"count": 1}}, "frequency_cap.window_seconds"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_refusals_name_the_path(data: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"campaign_id": 1, "name": "li", "bid_cpm": "1"}
    with pytest.raises(InvalidValue) as info:
        parse_input(LineItemCreate, {**base, **data})
    assert info.value.field == field
    assert info.value.message.startswith(field)
