"""The catalog's object kinds, defined once: table, pydantic models, URL names, who may write.

Why one registry: the API's generated routes, the CLI's ``catalog`` commands, the command
layer's undo snapshots and the services' validation all ask "what is a line item" (its table,
its fields with their types and which are required, its JSON view). Each used to keep its own
list; a kind added in one place and not another failed at run time. The fields, types and
required flags are the pydantic ``create`` / ``update`` / ``read`` models of ``models.py``.

``to_json`` is the one row → JSON converter: the kind's ``read`` model in JSON mode, as the API
shows it (the CLI prints the same, the commands return it). ``jsonable`` makes the loose values
around it (command payloads, raw table rows kept for undo) JSON-safe the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from adtarget.catalog import models
from adtarget.catalog.tables import (
    AdFormat,
    Advertiser,
    Base,
    Campaign,
    Creative,
    Dimension,
    LineItem,
    Segment,
)
from adtarget.errors import InvalidValue


@dataclass(frozen=True)
class Kind:
    """One kind of catalog object."""

    name: str
    """The kind's name everywhere in code and in ``command_log``: ``line_item``."""
    table: type[Base]
    create: type[BaseModel]
    """Fields accepted on create, with their types and which are required."""
    read: type[BaseModel]
    """The JSON view of a row (``to_json``)."""
    update: type[BaseModel] | None
    """Fields that may change; ``None``: not changed through commands (ad formats)."""
    path: str
    """URL segment under ``/v1``: ``line-items``."""
    plural: str
    """List key in answers: ``line_items``."""
    filters: tuple[str, ...] = ()
    """List filters besides ``status``."""
    admin_only_writes: bool = False

    @property
    def required(self) -> tuple[str, ...]:
        """The fields a create must carry."""
        return tuple(n for n, f in self.create.model_fields.items() if f.is_required())


_ALL = (
    Kind(
        "advertiser",
        Advertiser,
        models.AdvertiserCreate,
        models.AdvertiserRead,
        models.AdvertiserUpdate,
        "advertisers",
        "advertisers",
        admin_only_writes=True,
    ),
    Kind(
        "campaign",
        Campaign,
        models.CampaignCreate,
        models.CampaignRead,
        models.CampaignUpdate,
        "campaigns",
        "campaigns",
        ("advertiser_id",),
    ),
    Kind(
        "line_item",
        LineItem,
        models.LineItemCreate,
        models.LineItemRead,
        models.LineItemUpdate,
        "line-items",
        "line_items",
        ("campaign_id", "advertiser_id"),
    ),
    Kind(
        "creative",
        Creative,
        models.CreativeCreate,
        models.CreativeRead,
        models.CreativeUpdate,
        "creatives",
        "creatives",
        ("advertiser_id", "format"),
    ),
    Kind(
        "segment",
        Segment,
        models.SegmentCreate,
        models.SegmentRead,
        models.SegmentUpdate,
        "segments",
        "segments",
        ("advertiser_id", "kind"),
    ),
    Kind(
        "dimension",
        Dimension,
        models.DimensionCreate,
        models.DimensionRead,
        models.DimensionUpdate,
        "dimensions",
        "dimensions",
        ("type",),
        admin_only_writes=True,
    ),
    Kind(
        "ad_format",
        AdFormat,
        models.AdFormatCreate,
        models.AdFormatRead,
        None,
        "ad-formats",
        "ad_formats",
        admin_only_writes=True,
    ),
)

KINDS: Mapping[str, Kind] = {k.name: k for k in _ALL}
"""Every kind by name."""

EDITABLE: tuple[Kind, ...] = tuple(k for k in _ALL if k.update is not None)
"""The kinds created and changed through commands (undoable), in API order."""

EDITABLE_NAMES: tuple[str, ...] = tuple(k.name for k in EDITABLE)

_BY_TABLE: Mapping[type[Base], Kind] = {k.table: k for k in _ALL}


def kind_named(name: str, *, editable: bool = False) -> Kind:
    """The kind called ``name``; ``InvalidValue`` (field ``kind``) listing the choices if none.

    Args:
        name: a kind name such as ``line_item``.
        editable: only accept the kinds changed through commands.
    """
    found = KINDS.get(name)
    if found is None or (editable and found.update is None):
        allowed = EDITABLE_NAMES if editable else tuple(KINDS)
        raise InvalidValue(
            f"kind must be one of {', '.join(allowed)}, got {name!r}",
            field="kind",
            allowed=allowed,
        )
    return found


def kind_of_row(obj: object) -> Kind | None:
    """The kind of an ORM row, ``None`` for rows that are not catalog objects (links, logs)."""
    return _BY_TABLE.get(type(obj))  # type: ignore[arg-type]


def jsonable(value: Any) -> Any:
    """``value`` with datetimes, Decimals and pydantic models made JSON-safe."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def to_json(obj: object, kind: str | None = None) -> dict[str, Any]:
    """A catalog row as the API shows it: its kind's read model in JSON mode."""
    found = kind_named(kind) if kind is not None else kind_of_row(obj)
    if found is None:
        raise InvalidValue(f"{type(obj).__name__} is not a catalog object", field="kind")
    out: dict[str, Any] = found.read.model_validate(obj).model_dump(mode="json")
    return out
