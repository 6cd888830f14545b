"""Catalog as code: the YAML file format, read into checked declarations.

Why nested: names are unique per parent in the catalog (a campaign's name within its
advertiser, a line item's within its campaign), so nesting campaigns and creatives under their
advertiser and line items under their campaign lets names alone link objects, with no ids in
the file. A line item lists the creatives it may show by name (creatives of its advertiser);
a segment names its advertiser with ``advertiser:``. Every field is a field of the kind's
``XCreate`` model (``catalog/models.py``), minus the parent id.

Errors name the file, the object (``campaign 'Acme / Spring'``) and the field, and are raised
before anything touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from adtarget.catalog.kinds import KINDS
from adtarget.catalog.models import field_path
from adtarget.errors import AdtargetError, InvalidValue

#: The order objects are created in: what a later kind may reference comes first (line item
#: targeting may name dimensions and segments; creatives are attached to line items).
APPLY_ORDER = ("dimension", "advertiser", "segment", "creative", "campaign", "line_item")
#: The key of each kind in the file, and the parent id its ``XCreate`` model wants.
SECTION = {
    "dimension": "dimensions",
    "advertiser": "advertisers",
    "segment": "segments",
    "creative": "creatives",
    "campaign": "campaigns",
    "line_item": "line_items",
}
PARENT_FIELD = {
    "campaign": "advertiser_id",
    "creative": "advertiser_id",
    "line_item": "campaign_id",
}
#: Keys in the file that are not model fields: children and name references.
CHILDREN = {"advertiser": ("campaigns", "creatives"), "campaign": ("line_items",)}
REFS = {"line_item": ("creatives",), "segment": ("advertiser",)}
FORMAT_VERSION = 1


class CatalogFileError(InvalidValue):
    """The catalog file is not valid: names the file, the object and the field."""

    code = "invalid_catalog_file"


@dataclass(frozen=True)
class Decl:
    """One object declared in the file.

    ``path`` is its names from the top (``("Acme", "Spring", "US adults")``): the parent is
    ``path[:-1]`` for campaigns, creatives and line items. ``fields`` holds exactly the fields
    written in the file, checked by the kind's create model.
    """

    kind: str
    path: tuple[str, ...]
    fields: dict[str, Any]
    #: Creative names a line item may show; ``None`` (key absent): links left as they are.
    creatives: tuple[str, ...] | None = None
    advertiser: str | None = None

    @property
    def name(self) -> str:
        """The object's own name."""
        return self.path[-1]

    @property
    def label(self) -> str:
        """``campaign 'Acme / Spring'``: how errors and plans name the object."""
        return f"{self.kind} {' / '.join(self.path)!r}"


@dataclass
class CatalogSpec:
    """Every declaration of one file, in apply order, plus where it came from."""

    source: str
    decls: list[Decl] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Decl]:
        """The declarations of ``kind``, in file order."""
        return [d for d in self.decls if d.kind == kind]

    def ordered(self) -> list[Decl]:
        """Declarations in ``APPLY_ORDER`` (file order within a kind)."""
        return [d for k in APPLY_ORDER for d in self.of_kind(k)]

    def paths(self, kind: str) -> set[tuple[str, ...]]:
        """The paths declared for ``kind``."""
        return {d.path for d in self.of_kind(kind)}


def fail(source: str, where: str, message: str, field: str | None = None) -> CatalogFileError:
    """The one error shape: ``FILE: OBJECT: FIELD: message``."""
    prefix = f"{source}: {where}: " + (f"{field}: " if field else "")
    return CatalogFileError(prefix + message, field=field, file=source, object=where)


def dump_yaml(doc: dict[str, Any]) -> str:
    """The document as YAML, keys in the order written, long rules unwrapped."""
    import yaml

    header = "# adtarget catalog (adtarget export-catalog); apply with: adtarget apply -f FILE\n"
    return header + str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000))


def read_document(path: str | Path) -> Any:
    """The file's YAML as plain dicts and lists (timestamps as ISO text); errors name the file
    and, for YAML syntax, the line and column."""
    import yaml

    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogFileError(f"{source}: cannot read: {exc.strerror}", field="file") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise CatalogFileError(
            f"{source}: {where}: not valid YAML: {exc.problem}", field="file"
        ) from None
    except yaml.YAMLError as exc:
        raise CatalogFileError(f"{source}: not valid YAML: {exc}", field="file") from None
    return _plain(doc if doc is not None else {})


def load_file(path: str | Path) -> CatalogSpec:
    """Read and check a catalog YAML file (``CatalogFileError`` names what is wrong)."""
    return parse_document(read_document(path), source=str(path))


def parse_document(doc: Any, *, source: str = "catalog") -> CatalogSpec:
    """Check a loaded document (dicts and lists) and return its declarations."""
    if not isinstance(doc, Mapping):
        raise fail(source, "top level", "the file must be a mapping of sections")
    allowed = {"version", "advertisers", "dimensions", "segments"}
    for key in doc:
        if key not in allowed:
            raise fail(
                source, "top level", f"unknown section (use {', '.join(sorted(allowed))})", str(key)
            )
    version = doc.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise fail(
            source, "top level", f"format version {version!r} is not supported (1 is)", "version"
        )
    spec = CatalogSpec(source=source)
    for kind in ("dimension", "advertiser", "segment"):
        for item in _section(doc, SECTION[kind], source, "top level"):
            _walk(spec, kind, item, (), source)
    _check_refs(spec)
    spec.decls = spec.ordered()
    return spec


def _section(doc: Mapping[str, Any], key: str, source: str, where: str) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise fail(source, where, "must be a list of objects", key)
    return value


def _walk(spec: CatalogSpec, kind: str, item: Any, parent: tuple[str, ...], source: str) -> None:
    where = f"{kind} #{len(spec.of_kind(kind)) + 1}" + (
        f" under {' / '.join(parent)!r}" if parent else ""
    )
    if not isinstance(item, Mapping):
        raise fail(source, where, "must be a mapping of fields")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail(source, where, "every object needs a name", "name")
    path = (*parent, name.strip())
    decl_label = f"{kind} {' / '.join(path)!r}"
    if path in spec.paths(kind):
        raise fail(
            source, decl_label, "declared twice (names are unique within their parent)", "name"
        )
    children = CHILDREN.get(kind, ())
    refs = REFS.get(kind, ())
    fields = {k: _plain(v) for k, v in item.items() if k not in children and k not in refs}
    _check_fields(kind, fields, source, decl_label)
    creatives: tuple[str, ...] | None = None
    advertiser: str | None = None
    if kind == "line_item" and "creatives" in item:
        raw = item.get("creatives") or []
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            raise fail(source, decl_label, "must be a list of creative names", "creatives")
        creatives = tuple(raw)
    if kind == "segment" and item.get("advertiser") is not None:
        if not isinstance(item["advertiser"], str):
            raise fail(source, decl_label, "must be an advertiser's name", "advertiser")
        advertiser = item["advertiser"]
    spec.decls.append(Decl(kind, path, fields, creatives, advertiser))
    for key in children:
        child_kind = {"campaigns": "campaign", "creatives": "creative", "line_items": "line_item"}[
            key
        ]
        for child in _section(item, key, source, decl_label):
            _walk(spec, child_kind, child, path, source)


def _plain(value: Any) -> Any:
    """YAML's own timestamps as ISO text, so the models parse them like JSON input."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_fields(kind: str, fields: dict[str, Any], source: str, where: str) -> None:
    """Validate against the create model, with a placeholder for the parent id."""
    model = KINDS[kind].create
    parent = PARENT_FIELD.get(kind)
    if parent is not None and parent in fields:
        raise fail(source, where, "ids do not belong in the file; nesting names the parent", parent)
    if kind == "segment" and "advertiser_id" in fields:
        raise fail(source, where, "name the advertiser with 'advertiser:' instead", "advertiser_id")
    data = {**fields, **({parent: 1} if parent else {})}
    try:
        model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        fld = field_path(tuple(first["loc"])) or None
        msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise fail(source, where, msg, fld) from None


def _check_refs(spec: CatalogSpec) -> None:
    """Names the file uses must be declared in the file (it is the whole catalog)."""
    creatives = spec.paths("creative")
    advertisers = spec.paths("advertiser")
    for d in spec.of_kind("line_item"):
        for name in d.creatives or ():
            if (d.path[0], name) not in creatives:
                raise fail(
                    spec.source,
                    d.label,
                    f"no creative named {name!r} is declared under advertiser {d.path[0]!r}",
                    "creatives",
                )
    for d in spec.of_kind("segment"):
        if d.advertiser is not None and (d.advertiser,) not in advertisers:
            raise fail(
                spec.source,
                d.label,
                f"no advertiser named {d.advertiser!r} is declared",
                "advertiser",
            )


def normalized(kind: str, values: Mapping[str, Any], *, only_set: bool) -> dict[str, Any]:
    """``values`` as the create model would store them, in JSON form (for comparing).

    ``only_set`` keeps just the keys present in ``values`` (a file's fields); otherwise every
    create field is returned (an existing row).
    """
    model: type[BaseModel] = KINDS[kind].create
    parent = PARENT_FIELD.get(kind)
    data = dict(values)
    if parent:
        data[parent] = 1
    if kind == "segment":
        data.pop("advertiser_id", None)
    parsed = model.model_validate(data)
    out = parsed.model_dump(mode="json", exclude_unset=only_set)
    out.pop(parent or "", None)
    out.pop("advertiser_id", None) if kind == "segment" else None
    return out


def wrap(source: str, where: str, err: AdtargetError) -> AdtargetError:
    """``err`` (raised while applying ``where``) as the same error type, prefixed with the file
    and the object so the person knows which declaration to fix."""
    if str(err.message).startswith(f"{source}: "):
        return err
    field = err.field
    prefix = f"{source}: {where}: " + (
        f"{field}: " if field and f"{field}" not in err.message[:40] else ""
    )
    out = type(err)(prefix + err.message, field=field, **err.details)
    return out
