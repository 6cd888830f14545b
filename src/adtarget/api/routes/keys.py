"""``/v1/keys``: API keys over HTTP for admins (the same functions as ``adtarget keys``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from adtarget.api.auth import create_key, key_to_dict, list_keys, revoke_key
from adtarget.api.deps import SessionDep, app_key_resolver, require_roles

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Depends(require_roles())])

MAX_ID = 2**31 - 1


class KeyCreate(BaseModel):
    """Body of ``POST /v1/keys``."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "advertiser", "reader", "decisions"]
    advertiser_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    name: str = Field(default="", max_length=200)


@router.post("", status_code=201, summary="Create a key (the key is in this answer only)")
def post_key(body: KeyCreate, session: SessionDep, request: Request) -> dict[str, Any]:
    """Only the SHA-256 of the key is stored; it cannot be shown again."""
    row, key = create_key(
        session=session, role=body.role, advertiser_id=body.advertiser_id, name=body.name
    )
    session.commit()
    app_key_resolver(request.app).invalidate()
    return {**key_to_dict(row), "key": key}


@router.get("", summary="List keys (never the keys themselves)")
def get_keys(session: SessionDep, include_revoked: bool = False) -> dict[str, Any]:
    """Live keys (and revoked ones with ``include_revoked=true``), oldest first."""
    rows = list_keys(session=session, include_revoked=include_revoked)
    return {"keys": [key_to_dict(r) for r in rows]}


@router.delete("/{key_id}", summary="Revoke a key")
def delete_key(
    key_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, request: Request
) -> dict[str, Any]:
    """Revoked at once in this worker, within the key cache TTL (2 s) in the others."""
    row = revoke_key(session=session, key_id=key_id)
    session.commit()
    app_key_resolver(request.app).invalidate()
    return key_to_dict(row)
