"""Reports read by people: names beside ids, the window said, the spend currency on the chart.

Why here and not in ``delivery/``: report rows carry ids (the event log knows nothing else); the
names and currencies live in the catalog, which the CLI reads through its services. ``report``
and ``demo`` both print reports and draw charts, so both use these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from adtarget.catalog.service import campaign_currencies, names_by_id
from adtarget.cli.container import cli_container
from adtarget.cli.show import REFS, console, money

Labels = dict[str, dict[str, str]]
"""``{group key: {id as text: name}}`` (report ids are text: the event log's)."""


def report_labels(rows: Sequence[Mapping[str, Any]], groups: Sequence[str]) -> Labels:
    """Names of the catalog objects the ``*_id`` group keys of ``rows`` point to."""
    out: Labels = {}
    keys = [g for g in groups if g in REFS]
    if not keys or not rows:
        return out
    with cli_container().session_factory() as session:
        for key in keys:
            ids = {int(v) for r in rows if str(v := r.get(key, "")).isdigit()}
            found = names_by_id(session=session, kind=REFS[key], ids=ids)
            out[key] = {str(i): str(name) for i, name in found.items()}
    return out


def report_currency(advertiser_id: str | None = None) -> str | None:
    """The currency spend is in: the campaigns' one currency, ``None`` if they mix several."""
    adv = int(advertiser_id) if advertiser_id and advertiser_id.isdigit() else None
    with cli_container().session_factory() as session:
        found = campaign_currencies(session=session, advertiser_id=adv)
    return next(iter(found)) if len(found) == 1 else None


def window_text(first: date | str, last: date | str) -> str:
    """``2026-11-29 to 2026-12-05 (UTC)``."""
    return f"{first} to {last} (UTC)"


def chart_title(groups: Sequence[str], metrics: Sequence[str], first: Any, last: Any) -> str:
    """What and when: ``impressions, spend by line item and day, 2026-11-29 to 2026-12-05``."""
    by = " and ".join(g.removesuffix("_id").replace("_", " ") for g in groups)
    return f"{', '.join(metrics)} by {by}, {window_text(first, last)}"


def report_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    labels: Labels,
    *,
    title: str | None = None,
    currency: str | None = None,
) -> Table:
    """Rows as an aligned table; each ``*_id`` column is followed by the object's name."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    shown: list[tuple[str, str | None]] = []  # (column, key whose name it shows)
    for c in columns:
        left = c in ("day", "hour", "country", "device") or c in REFS
        head = f"{c} ({currency})" if c == "spend" and currency else c
        table.add_column(head, justify="left" if left else "right", no_wrap=True)
        shown.append((c, None))
        if c in labels:
            table.add_column(REFS[c].replace("_", " "), overflow="fold")
            shown.append((c, c))
    for r in rows:
        cells = []
        for c, named in shown:
            value = r.get(c)
            if named is not None:
                cells.append(labels[named].get(str(value), ""))
            elif value is None:
                cells.append("-")
            elif isinstance(value, float):
                cells.append(money(value) if c == "spend" else f"{value:g}")
            elif isinstance(value, int):
                cells.append(f"{value:,}")
            else:
                cells.append(str(value))
        table.add_row(*(Text(cell) for cell in cells))
    return table


def print_report_table(table: Table) -> None:
    """Print on stdout (``show.console``: the terminal's width, 120 columns when piped)."""
    console().print(table)
