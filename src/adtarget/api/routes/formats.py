"""``/v1/ad-formats``: the registry of ad types over HTTP (the same functions as
``adtarget catalog formats`` / ``add-format``).

Why: a new ad type is a row with a JSON Schema, not a release, so whoever adds one should not
need shell access to the catalog machine; and tools that build creatives need the list and each
format's schema. Every key but a decisions key may read; only admins may add (a format is
global, and the registry only grows: see ``cli/catalog.py`` ``add-format`` for why it is not an
undoable command). Decision workers see a new format within their 5 s format cache.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from adtarget.api.deps import SessionDep, allow
from adtarget.catalog.kinds import to_json
from adtarget.catalog.models import AdFormatCreate
from adtarget.catalog.service import create_ad_format, get_ad_format, list_ad_formats

router = APIRouter(
    prefix="/v1/ad-formats",
    tags=["catalog"],
    dependencies=[Depends(allow(read=("reader", "advertiser"), write=()))],
)

FormatName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Format name")]


def _read(fmt: Any) -> dict[str, Any]:
    return to_json(fmt, "ad_format")


@router.get("", summary="List the ad formats creatives and line items may use")
def get_formats(session: SessionDep) -> dict[str, Any]:
    """Every registered format with its attribute schema, by name."""
    return {"ad_formats": [_read(f) for f in list_ad_formats(session=session)]}


@router.get("/{name}", summary="Read one ad format")
def get_format(name: FormatName, session: SessionDep) -> dict[str, Any]:
    """404 naming the format when it is not registered."""
    return _read(get_ad_format(session=session, name=name))


@router.post("", status_code=201, summary="Register a new ad type (admin keys only)")
def post_format(body: AdFormatCreate, session: SessionDep) -> dict[str, Any]:
    """409 if the name exists; 422 naming ``json_schema`` if the schema is not a valid one."""
    fmt = create_ad_format(session=session, data=body)
    session.commit()
    return _read(fmt)
