"""Catalog CRUD over HTTP: advertisers, campaigns, line items, creatives, segments, dimensions.

Why generated per kind: the six kinds share one shape (create 201, get, list with filters and
``after`` cursor pagination, patch with optional ``version``), and the pydantic models of
``adtarget.catalog.models`` already say what each accepts. Every mutation goes through the
command layer (``CatalogWriter``) so it lands in the actor's undo history; reads use the
request's session directly.

This module deliberately does not use ``from __future__ import annotations``: FastAPI reads the
endpoint signatures built in ``_register`` at runtime, and their body types are closure values.

Advertiser keys see only their own advertiser's objects (a foreign id answers 404, exactly like a
missing one); readers may only GET; dimensions, advertisers and global segments change only
with an admin key.
"""

from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field, create_model
from sqlalchemy.orm import Session, sessionmaker

from adtarget.api.deps import (
    Principal,
    PrincipalDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    allow,
    ensure_advertiser_scope,
)
from adtarget.api.scope import check_rule_text, scrub_conflict
from adtarget.catalog.kinds import EDITABLE, KINDS, Kind, to_json
from adtarget.catalog.ownership import campaign_owner
from adtarget.catalog.service import find, list_creative_ids, page
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.delivery.service import spend_totals_reader
from adtarget.errors import Conflict, Forbidden, InvalidValue, NotFound
from adtarget.settings import Settings

router = APIRouter(
    prefix="/v1",
    tags=["catalog"],
    dependencies=[Depends(allow(read=("reader", "advertiser"), write=("advertiser",)))],
)

StatusFilter = Literal["draft", "active", "paused", "archived"]
MAX_PAGE = 1000
MAX_ID = 2**31 - 1  # catalog ids are 32-bit integers on PostgreSQL
RULE_FIELDS = {"line_item": "targeting", "segment": "rule"}  # fields holding rule text
ObjId = Annotated[int, Path(ge=1, le=MAX_ID, description="Object id")]


def writer(
    session_factory: sessionmaker[Session], settings: Settings, principal: Principal
) -> CatalogWriter:
    """The command-layer writer acting for this caller (its own undo history)."""
    return CatalogWriter(
        session_factory,
        actor=principal.actor,
        depth=settings.history_depth,
        settings=settings,
        spend_totals=spend_totals_reader(settings),
    )


def owner_of(session: Session, kind: str, obj: Any) -> int | None:
    """The advertiser that owns ``obj`` (``None`` for global objects)."""
    if kind == "advertiser":
        return int(obj.id)
    if kind == "line_item":
        return campaign_owner(session, obj.campaign_id)
    if kind == "dimension":
        return None
    value = getattr(obj, "advertiser_id", None)
    return None if value is None else int(value)


def load(session: Session, kind: str, obj_id: int, principal: Principal) -> Any:
    """The row, or 404 when missing or outside the caller's advertiser."""
    obj = find(session=session, kind=kind, obj_id=obj_id)
    if obj is None:
        raise NotFound(f"{kind} {obj_id} does not exist", field="id")
    ensure_advertiser_scope(principal, owner_of(session, kind, obj))
    return obj


def render(kind: str, obj: Any) -> dict[str, Any]:
    """The JSON view of a row (``catalog.kinds.to_json``)."""
    return to_json(obj, kind)


def check_write(kind: Kind, principal: Principal, owner: int | None) -> None:
    """Raise unless ``principal`` may change an object of ``kind`` owned by ``owner``."""
    if principal.is_admin:
        return
    if kind.admin_only_writes or owner is None:
        raise Forbidden(f"only an admin key may change {kind.plural}", field="authorization")
    ensure_advertiser_scope(principal, owner)


#: Fields only an admin key may set: a creative's review outcome is the ad server operator's
#: call, so an advertiser cannot approve a creative an admin rejected (or pre-approve its own).
ADMIN_FIELDS: dict[str, frozenset[str]] = {"creative": frozenset({"approval_status"})}


def check_admin_fields(kind: str, principal: Principal, payload: dict[str, Any]) -> None:
    """Raise 403 naming the field when a non-admin key sets an admin-only field."""
    if principal.is_admin:
        return
    for name in sorted(ADMIN_FIELDS.get(kind, frozenset()) & set(payload)):
        raise Forbidden(f"only an admin key may set {name}", field=name)


def owner_of_payload(session: Session, kind: str, payload: dict[str, Any]) -> int | None:
    """The advertiser a new object would belong to (404 when its parent does not exist)."""
    if kind == "line_item":
        owner = campaign_owner(session, payload.get("campaign_id"))
        if owner is None:
            raise NotFound(
                f"campaign {payload.get('campaign_id')} does not exist", field="campaign_id"
            )
        return owner
    value = payload.get("advertiser_id")
    return None if value is None else int(value)


def check_rules(
    session: Session,
    kind: str,
    principal: Principal,
    body: dict[str, Any],
    own_name: str | None = None,
) -> None:
    """An advertiser key's rule text may only name its own or global segments: another
    advertiser's fails exactly as a missing one (``api/scope.py``)."""
    field = RULE_FIELDS.get(kind)
    if field is not None:
        check_rule_text(session, principal, body.get(field), field=field, own_name=own_name)


def created_id(result: dict[str, Any]) -> Any:
    """The id of the object a create command made (from the command layer's report)."""
    for candidate in (result, result.get("object"), result.get("row")):
        if isinstance(candidate, dict) and candidate.get("id") is not None:
            return candidate["id"]
    for row in result.get("rows", []):
        if isinstance(row, dict) and isinstance(row.get("row"), dict):
            return row["row"].get("id")
    raise InvalidValue("the command layer did not report the new object's id", field="id")


def _filters(kind: Kind, request: Request) -> dict[str, Any]:
    """The kind's list filters given in the query, parsed (ids checked as 32-bit integers)."""
    params = request.query_params
    out: dict[str, Any] = {}
    for name in kind.filters:
        raw = params.get(name)
        if raw is None:
            continue
        if name.endswith("_id"):
            try:
                value: Any = int(raw)
            except ValueError:
                value = -1
            if not 0 <= value <= MAX_ID:
                raise InvalidValue(f"{name} must be an integer id, got {raw!r}", field=name)
        else:
            value = raw
        out[name] = value
    return out


def _register(kind: Kind) -> None:
    create_model_cls = kind.create
    read_model = kind.read
    assert kind.update is not None
    patch_model: type[BaseModel] = create_model(
        f"{kind.update.__name__}Patch",
        __base__=kind.update,
        version=(int | None, Field(default=None, ge=1, le=MAX_ID)),
    )
    page_model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{read_model.__name__}Page",
        **{kind.plural: (list[read_model], ...)},  # type: ignore[valid-type]
        next_after=(int | None, None),
    )
    label = kind.name.replace("_", " ")

    def create_endpoint(
        body: create_model_cls,  # type: ignore[valid-type]
        session: SessionDep,
        factory: SessionFactoryDep,
        settings: SettingsDep,
        principal: PrincipalDep,
    ) -> dict[str, Any]:
        payload = cast(BaseModel, body).model_dump(exclude_unset=True, mode="json")
        if kind.name == "segment" and principal.role == "advertiser":
            payload.setdefault("advertiser_id", principal.advertiser_id)
        check_write(kind, principal, owner_of_payload(session, kind.name, payload))
        check_admin_fields(kind.name, principal, payload)
        own = payload.get("name") if kind.name == "segment" else None
        check_rules(session, kind.name, principal, payload, own_name=own)
        try:
            result = writer(factory, settings, principal).create(kind.name, payload)
        except Conflict as err:
            raise scrub_conflict(
                err, session=session, principal=principal, kind=kind.name
            ) from None
        session.expire_all()
        return render(kind.name, load(session, kind.name, created_id(result), principal))

    def get_endpoint(obj_id: ObjId, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
        return render(kind.name, load(session, kind.name, obj_id, principal))

    def list_endpoint(
        request: Request,
        session: SessionDep,
        principal: PrincipalDep,
        status: Annotated[StatusFilter | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after: Annotated[
            int | None, Query(ge=0, le=MAX_ID, description="Return ids greater than this")
        ] = None,
    ) -> dict[str, Any]:
        rows: list[Any] = page(
            session=session,
            kind=kind.name,
            limit=limit,
            status=status,
            after=after,
            filters=_filters(kind, request),
            scoped=principal.role == "advertiser",
            advertiser_id=principal.advertiser_id,
        )
        next_after = int(rows[-1].id) if len(rows) == limit else None
        return {kind.plural: [render(kind.name, r) for r in rows], "next_after": next_after}

    def patch_endpoint(
        obj_id: ObjId,
        body: patch_model,  # type: ignore[valid-type]
        session: SessionDep,
        factory: SessionFactoryDep,
        settings: SettingsDep,
        principal: PrincipalDep,
    ) -> dict[str, Any]:
        obj = load(session, kind.name, obj_id, principal)
        check_write(kind, principal, owner_of(session, kind.name, obj))
        changes = cast(BaseModel, body).model_dump(exclude_unset=True, mode="json")
        version = changes.pop("version", None)
        if not changes:
            raise InvalidValue("nothing to change: send at least one field", field="body")
        check_admin_fields(kind.name, principal, changes)
        own = obj.name if kind.name == "segment" else None
        check_rules(session, kind.name, principal, changes, own_name=own)
        try:
            writer(factory, settings, principal).update(
                kind.name, obj_id, changes, expected_version=version
            )
        except Conflict as err:
            raise scrub_conflict(
                err, session=session, principal=principal, kind=kind.name
            ) from None
        session.expire_all()
        return render(kind.name, load(session, kind.name, obj_id, principal))

    for name, value in (
        ("create", create_endpoint),
        ("get", get_endpoint),
        ("list", list_endpoint),
        ("patch", patch_endpoint),
    ):
        value.__name__ = f"{name}_{kind.name}"

    filters_doc = ", ".join(("status", *kind.filters))
    router.add_api_route(
        f"/{kind.path}",
        create_endpoint,
        methods=["POST"],
        status_code=201,
        response_model=read_model,
        summary=f"Create a {label} (a command: undoable)",
    )
    router.add_api_route(
        f"/{kind.path}",
        list_endpoint,
        methods=["GET"],
        response_model=page_model,
        summary=f"List {kind.plural.replace('_', ' ')} (filters: {filters_doc}; `after` cursor)",
    )
    router.add_api_route(
        f"/{kind.path}/{{obj_id}}",
        get_endpoint,
        methods=["GET"],
        response_model=read_model,
        summary=f"Read one {label}",
    )
    router.add_api_route(
        f"/{kind.path}/{{obj_id}}",
        patch_endpoint,
        methods=["PATCH"],
        response_model=read_model,
        summary=f"Change a {label}; optional `version` for optimistic concurrency (409)",
    )


for _kind in EDITABLE:
    _register(_kind)


class AttachCreative(BaseModel):
    """Body of ``POST /v1/line-items/{id}/creatives``."""

    creative_id: int = Field(ge=1, le=MAX_ID)


@router.post(
    "/line-items/{line_item_id}/creatives",
    status_code=201,
    summary="Attach a creative to a line item (a command: undoable)",
)
def attach_creative(
    line_item_id: ObjId,
    body: AttachCreative,
    session: SessionDep,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Both must belong to the same advertiser, and to the caller's when it is an advertiser."""
    item = load(session, "line_item", line_item_id, principal)
    creative: Any = find(session=session, kind="creative", obj_id=body.creative_id)
    if creative is None:
        raise NotFound(f"creative {body.creative_id} does not exist", field="creative_id")
    try:
        ensure_advertiser_scope(principal, int(creative.advertiser_id))
    except NotFound:
        raise NotFound(f"creative {body.creative_id} does not exist", field="creative_id") from None
    owner = owner_of(session, "line_item", item)
    check_write(KINDS["line_item"], principal, owner)
    if owner != creative.advertiser_id:
        raise InvalidValue(
            f"creative {body.creative_id} belongs to another advertiser than line item "
            f"{line_item_id}",
            field="creative_id",
        )
    writer(factory, settings, principal).attach_creative(line_item_id, body.creative_id)
    return {"line_item_id": line_item_id, "creative_id": body.creative_id}


@router.get("/line-items/{line_item_id}/creatives", summary="The creatives attached to a line item")
def list_attached_creatives(
    line_item_id: ObjId, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """``{"line_item_id", "creatives": [creative, ...]}`` (ascending id)."""
    load(session, "line_item", line_item_id, principal)
    ids = list_creative_ids(session=session, line_item_id=line_item_id)
    return {
        "line_item_id": line_item_id,
        "creatives": [
            render("creative", find(session=session, kind="creative", obj_id=i)) for i in ids
        ],
    }


@router.delete(
    "/line-items/{line_item_id}/creatives/{creative_id}",
    summary="Detach a creative from a line item (a command: undoable)",
)
def detach_creative(
    line_item_id: ObjId,
    creative_id: ObjId,
    session: SessionDep,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """The line item must be the caller's; a link that does not exist is a 404 naming it."""
    item = load(session, "line_item", line_item_id, principal)
    check_write(KINDS["line_item"], principal, owner_of(session, "line_item", item))
    writer(factory, settings, principal).detach_creative(line_item_id, creative_id)
    return {"line_item_id": line_item_id, "creative_id": creative_id, "attached": False}
