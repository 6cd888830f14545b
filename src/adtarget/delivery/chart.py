"""Report rows drawn as time series (one panel per metric, one line per group) to a PNG.

Why a picture: a campaign that stopped delivering on Tuesday is obvious in a line chart and
easy to miss in a table. Matplotlib runs headless (Agg), so this works on servers and in CI.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from adtarget.errors import InvalidValue

MAX_SERIES = 12
RATIOS = frozenset({"ctr", "completion_rate", "ecpm"})


def _x(value: str, hourly: bool) -> datetime | date:
    if hourly:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return date.fromisoformat(value)


def draw_chart(
    rows: Sequence[dict[str, Any]],
    *,
    group_by: Sequence[str],
    metrics: Sequence[str],
    path: Path,
    title: str = "Delivery",
) -> Path:
    """Save a PNG of ``metrics`` over time; ``group_by`` must include ``day`` or ``hour``.

    Series beyond the ``MAX_SERIES`` largest (by the first metric) are summed into "other".
    """
    time_key = "hour" if "hour" in group_by else "day" if "day" in group_by else None
    if time_key is None:
        raise InvalidValue("chart: group_by needs day or hour for a time axis", field="group_by")
    numeric = [m for m in metrics if m not in group_by]
    if not numeric:
        raise InvalidValue("chart: no metric to draw", field="metrics")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    keys = [g for g in group_by if g != time_key]
    series: dict[str, dict[Any, dict[str, float]]] = {}
    for row in rows:
        label = " / ".join(str(row.get(k)) for k in keys) or "all"
        point = series.setdefault(label, {}).setdefault(_x(row[time_key], time_key == "hour"), {})
        for m in numeric:
            point[m] = point.get(m, 0.0) + float(row.get(m) or 0.0)
    first = numeric[0]
    ranked = sorted(series, key=lambda s: -sum(p.get(first, 0.0) for p in series[s].values()))
    if len(ranked) > MAX_SERIES:
        other: dict[Any, dict[str, float]] = {}
        for label in ranked[MAX_SERIES - 1 :]:
            for x, point in series.pop(label).items():
                acc = other.setdefault(x, {})
                for m, v in point.items():
                    acc[m] = acc.get(m, 0.0) + v  # ratios summed are meaningless: counts only
        series["other"] = other
        ranked = [*ranked[: MAX_SERIES - 1], "other"]

    fig, axes = plt.subplots(
        len(numeric), 1, figsize=(10, 2.8 * len(numeric) + 0.8), sharex=True, squeeze=False
    )
    xs = sorted({x for points in series.values() for x in points})
    for ax, metric in zip(axes[:, 0], numeric, strict=True):
        # a missing point is zero delivery for a count, but unknown for a ratio (a gap)
        gap = 0.0 if metric not in RATIOS else float("nan")
        for label in ranked:
            ys = [series[label][x].get(metric, gap) if x in series[label] else gap for x in xs]
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.6, label=label)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_title(title)
    if len(ranked) > 1 or keys:
        axes[0, 0].legend(
            loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title=" / ".join(keys) or None
        )
    bottom = axes[-1, 0]
    pattern = "%m-%d %H:00" if time_key == "hour" else "%Y-%m-%d"
    bottom.xaxis.set_major_formatter(mdates.DateFormatter(pattern))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
