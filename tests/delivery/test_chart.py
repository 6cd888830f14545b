"""The report chart: a real PNG with one line per group, and a clear error without a time key."""

from __future__ import annotations

from pathlib import Path

import pytest

from adtarget.delivery.chart import draw_chart
from adtarget.errors import InvalidValue

ROWS = [
    {"campaign_id": c, "day": f"2026-11-{d:02d}", "impressions": d * k, "clicks": d + k}
    for k, c in ((10, "c1"), (3, "c2"))
    for d in range(18, 25)
]


def test_png_is_written(tmp_path: Path) -> None:
    out = draw_chart(
        ROWS,
        group_by=["campaign_id", "day"],
        metrics=["impressions", "clicks"],
        path=tmp_path / "sub" / "chart.png",
    )
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_many_series_fold_into_other(tmp_path: Path) -> None:
    rows = [
        {"creative_id": f"cr{i}", "hour": f"2026-11-24T{h:02d}:00:00Z", "impressions": i + h}
        for i in range(20)
        for h in range(6)
    ]
    out = draw_chart(
        rows, group_by=["creative_id", "hour"], metrics=["impressions"], path=tmp_path / "c.png"
    )
    assert out.stat().st_size > 10_000


def test_needs_a_time_axis(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue) as err:
        draw_chart(ROWS, group_by=["campaign_id"], metrics=["impressions"], path=tmp_path / "x.png")
    assert err.value.field == "group_by"
