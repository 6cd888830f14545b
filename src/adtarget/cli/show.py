"""Catalog objects printed for people: aligned Rich tables, names beside ids, no Python reprs.

Why a module of its own: ``catalog show/list/create/update/bulk`` and ``undo`` print the same
objects; each used to print ``str(value)`` (``None``, ``{'media_url': ...}``) and every field of
the read model, so a cap appeared twice (``frequency_cap_count`` and ``frequency_cap``). Here a
value is formatted once (``text``), fields that repeat another are left out (``HIDDEN``), and
``*_id`` fields name their object (``Spring (3)``). ``--json`` output does not come here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

REFS: Mapping[str, str] = {
    "advertiser_id": "advertiser",
    "campaign_id": "campaign",
    "line_item_id": "line_item",
    "creative_id": "creative",
}
"""Fields holding the id of another catalog object, and its kind."""
HIDDEN = frozenset({"frequency_cap_count", "frequency_cap_window_seconds", "targeting_json"})
"""Fields shown through another (``frequency_cap``, ``targeting``), never on their own line."""
MONEY = frozenset({"budget_total", "budget_daily", "bid_cpm", "spend"})
LIST_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "advertiser": ("id", "name", "status", "frequency_cap"),
    "campaign": (
        "id",
        "name",
        "status",
        "advertiser_id",
        "budget_total",
        "currency",
        "start",
        "end",
    ),
    "line_item": ("id", "name", "status", "campaign_id", "priority", "bid_cpm", "targeting"),
    "creative": ("id", "name", "status", "advertiser_id", "format", "approval_status"),
    "segment": ("id", "name", "kind", "status", "advertiser_id", "last_size", "rule"),
    "dimension": ("id", "name", "type", "status", "allowed_values"),
}
"""The columns of ``catalog list`` per kind (``show`` prints every field)."""

_ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|\+00:00)$")

Names = Mapping[str, Mapping[int, str]]
"""``{kind: {id: name}}`` for the ``*_id`` values being printed."""
NameLookup = Callable[[str, Iterable[int]], Mapping[int, str]]


def _window(seconds: int) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{seconds} s"


def money(value: float) -> str:
    """``1,000.00``, ``0.0165``: two decimals at least, up to six (bids and spend are small)."""
    whole = f"{value:,.6f}".rstrip("0")
    decimals = len(whole.partition(".")[2])
    return whole + "0" * max(0, 2 - decimals)


def text(field: str, value: Any, names: Names | None = None) -> str:
    """One value as people read it: ``-`` for none, lists joined, objects as ``key: value``
    lines, caps as ``3 per 1 day``, money with two decimals at least, ids with their name."""
    if value is None or value in ("", [], {}):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if field in REFS and isinstance(value, int) and names is not None:
        name = names.get(REFS[field], {}).get(value)
        return f"{name} ({value})" if name is not None else str(value)
    if field == "frequency_cap" and isinstance(value, Mapping):
        return f"{value.get('count')} per {_window(int(value.get('window_seconds') or 0))}"
    if field in MONEY and isinstance(value, int | float | str):
        try:
            return money(float(value))  # a Decimal arrives as a string from undo's diff
        except ValueError:
            return str(value)
    if isinstance(value, Mapping):
        return "\n".join(f"{k}: {_inline(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_inline(v) for v in value)
    if isinstance(value, str) and _ISO_UTC.match(value):  # 2026-01-01T00:00:00.123Z
        return value[:16].replace("T", " ") + " UTC"
    return str(value)


def _inline(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "-"
    return json.dumps(value, default=str)


def collect_names(rows: Iterable[Mapping[str, Any]], lookup: NameLookup) -> Names:
    """Look up, one query per kind, the names of every ``*_id`` value in ``rows``."""
    wanted: dict[str, set[int]] = {}
    for row in rows:
        for field, kind in REFS.items():
            value = row.get(field)
            if isinstance(value, int):
                wanted.setdefault(kind, set()).add(value)
    return {kind: lookup(kind, ids) for kind, ids in wanted.items()}


def _label(field: str) -> str:
    return field.removesuffix("_id") if field in REFS else field


def object_table(kind: str, obj: Mapping[str, Any], names: Names | None = None) -> Table:
    """One object as a two-column table (field, value), titled ``kind id name``."""
    title = " ".join(str(p) for p in (kind, obj.get("id"), obj.get("name")) if p is not None)
    table = Table(title=title, title_justify="left", box=box.SIMPLE, show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for field, value in obj.items():
        if field not in HIDDEN:
            table.add_row(_label(field), Text(text(field, value, names)))
    return table


def objects_table(
    kind: str, rows: Sequence[Mapping[str, Any]], names: Names | None = None
) -> Table:
    """Objects of one kind, one per line, with the kind's ``LIST_COLUMNS``."""
    present = {k for r in rows for k in r}
    columns = [c for c in LIST_COLUMNS.get(kind, ("id", "name", "status")) if c in present]
    table = Table(box=box.SIMPLE_HEAD)
    for c in columns:
        right = c in MONEY or c in ("id", "priority", "last_size")
        folds = c in ("name", "targeting", "rule", "allowed_values")
        table.add_column(
            _label(c),
            justify="right" if right else "left",
            overflow="fold",
            no_wrap=not folds,
            min_width=12 if folds else None,
        )
    for r in rows:
        table.add_row(*(Text(text(c, r.get(c), names)) for c in columns))
    return table


def console() -> Console:
    """The console objects print on: stdout at the terminal's width, or 120 columns when
    piped (a file or a pager has no width to fit, and folded cells read worse)."""
    found = Console(highlight=False)
    return found if found.is_terminal else Console(width=max(found.width, 120), highlight=False)
