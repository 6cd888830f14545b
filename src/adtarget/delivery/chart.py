"""Report rows drawn as time series (one panel per metric, one line per group) to a PNG.

Why a picture: a campaign that stopped delivering on Tuesday is obvious in a line chart and
easy to miss in a table. Matplotlib runs headless (Agg), so this works on servers and in CI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adtarget.errors import InvalidValue

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_SERIES = 12
RATIOS = frozenset({"ctr", "completion_rate", "ecpm"})
MONEY = frozenset({"spend", "ecpm"})
Labels = Mapping[str, Mapping[str, str]]
"""``{group key: {value: name}}``, e.g. ``{"line_item_id": {"12": "Spring US"}}``."""


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
    labels: Labels | None = None,
    currency: str | None = None,
) -> Path:
    """Save a PNG of ``metrics`` over time (``build_figure``) to ``path``."""
    fig = build_figure(
        rows, group_by=group_by, metrics=metrics, title=title, labels=labels, currency=currency
    )
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _series_label(row: dict[str, Any], keys: Sequence[str], labels: Labels) -> str:
    parts = []
    for k in keys:
        value = row.get(k)
        name = labels.get(k, {}).get(str(value))
        parts.append(f"{name} ({value})" if name is not None else str(value))
    return " / ".join(parts) or "all"


def build_figure(
    rows: Sequence[dict[str, Any]],
    *,
    group_by: Sequence[str],
    metrics: Sequence[str],
    title: str = "Delivery",
    labels: Labels | None = None,
    currency: str | None = None,
) -> Figure:
    """A matplotlib figure: one panel per metric, one line per group; ``group_by`` must include
    ``day`` or ``hour``.

    Series are named through ``labels`` (``Spring US (12)``) and listed in the legend in name
    order, so a line item keeps its place from one report to the next; beyond the ``MAX_SERIES``
    largest (by the first metric), the rest are summed into "other", listed last. Money axes
    say the ``currency``.
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
        label = _series_label(row, keys, labels or {})
        point = series.setdefault(label, {}).setdefault(_x(row[time_key], time_key == "hour"), {})
        for m in numeric:
            point[m] = point.get(m, 0.0) + float(row.get(m) or 0.0)
    first = numeric[0]
    ranked = sorted(series, key=lambda s: (-sum(p.get(first, 0.0) for p in series[s].values()), s))
    if len(ranked) > MAX_SERIES:
        other: dict[Any, dict[str, float]] = {}
        for label in ranked[MAX_SERIES - 1 :]:
            for x, point in series.pop(label).items():
                acc = other.setdefault(x, {})
                for m, v in point.items():
                    acc[m] = acc.get(m, 0.0) + v  # ratios summed are meaningless: counts only
        ranked = [*sorted(ranked[: MAX_SERIES - 1], key=str.casefold), "other"]
        series["other"] = other
    else:
        ranked = sorted(ranked, key=str.casefold)

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
        unit = currency if metric in MONEY and currency else None
        ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_title(title)
    if len(ranked) > 1 or keys:
        legend_title = " / ".join(k.removesuffix("_id").replace("_", " ") for k in keys) or None
        axes[0, 0].legend(
            loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title=legend_title
        )
    bottom = axes[-1, 0]
    pattern = "%m-%d %H:00" if time_key == "hour" else "%Y-%m-%d"
    bottom.xaxis.set_major_formatter(mdates.DateFormatter(pattern))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
