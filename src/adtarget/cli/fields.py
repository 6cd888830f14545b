"""The fields a catalog kind accepts on create, read from the pydantic model the API validates.

Why from the model and not a list of our own: ``catalog create KIND --help`` must say exactly what
``POST /v1/<kind>s`` accepts. The model's JSON Schema (the same one ``/openapi.json`` publishes)
gives each field's type, range and choices; ``model_fields`` gives which are required and the
defaults. A field added to ``catalog/models.py`` shows up here with nothing else to change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from rich import box
from rich.console import Console
from rich.table import Table

from adtarget.catalog.kinds import Kind
from adtarget.catalog.models import MAX_INT32


@dataclass(frozen=True)
class FieldHelp:
    """One row of a kind's field table."""

    name: str
    type: str
    required: bool
    default: str


def _ref(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        found: dict[str, Any] = defs.get(ref.rsplit("/", 1)[-1], {})
        return found
    return schema


def _bound(value: float) -> str:
    return f"{value:g}"


def _number(schema: dict[str, Any], word: str) -> str:
    """``integer 1..16``, ``number >= 0``, ``integer > 0``; the 32-bit column limit is left out
    (every id and count has it; printing it on each line says nothing)."""
    lo, lo_open = schema.get("minimum"), False
    if "exclusiveMinimum" in schema:
        lo, lo_open = schema["exclusiveMinimum"], True
    hi, hi_open = schema.get("maximum"), False
    if "exclusiveMaximum" in schema:
        hi, hi_open = schema["exclusiveMaximum"], True
    if hi is not None and hi >= MAX_INT32:
        hi = None
    if lo is not None and hi is not None and not lo_open and not hi_open:
        return f"{word} {_bound(lo)}..{_bound(hi)}"
    parts = [word]
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {_bound(lo)}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {_bound(hi)}")
    return " ".join(parts)


def type_text(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A JSON Schema as a short phrase: ``integer 1..16``, ``even | asap``, ``list of string``."""
    schema = _ref(schema, defs)
    options = schema.get("anyOf")
    if isinstance(options, list):
        parts = [_ref(o, defs) for o in options if o.get("type") != "null"]
        if any(p.get("type") == "number" for p in parts):  # Decimal: a number or its string
            parts = [p for p in parts if p.get("type") == "number"]
        return " or ".join(dict.fromkeys(type_text(p, defs) for p in parts)) or "null"
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return str(schema["const"])
    kind = schema.get("type")
    if kind == "integer":
        return _number(schema, "integer")
    if kind == "number":
        return _number(schema, "number")
    if kind == "string":
        if schema.get("format") == "date-time":
            return "date-time (ISO 8601; UTC if no offset)"
        if "pattern" in schema:
            return f"string matching {schema['pattern']}"
        return "string"
    if kind == "array":
        return f"list of {type_text(schema.get('items', {}), defs)}"
    if kind == "object":
        props = schema.get("properties")
        if isinstance(props, dict):
            inner = ", ".join(f"{k}: {type_text(v, defs)}" for k, v in props.items())
            return f"{{{inner}}}"
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return f"object of {type_text(extra, defs)}"
        return "object"
    return str(kind or "any")


def _default(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    if info.is_required():
        return ""
    value = info.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return ""
    return json.dumps(value, default=str)


def create_fields(kind: Kind) -> list[FieldHelp]:
    """The fields ``kind``'s create accepts, in the model's order, with type and required flag."""
    model = kind.create
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    props: dict[str, Any] = schema.get("properties", {})
    return [
        FieldHelp(
            name=name,
            type=type_text(props.get(name, {}), defs),
            required=info.is_required(),
            default=_default(model, name),
        )
        for name, info in model.model_fields.items()
    ]


def fields_table(kind: Kind, width: int = 100) -> str:
    """``create_fields`` as an aligned plain-text table (for the end of a command's help)."""
    table = Table(
        title=f"Fields of a {kind.name} (BODY is a JSON object of these)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("field", no_wrap=True)
    table.add_column("type", overflow="fold")
    table.add_column("required", no_wrap=True)
    table.add_column("default", overflow="fold")
    for f in create_fields(kind):
        table.add_row(f.name, f.type, "yes" if f.required else "", f.default)
    console = Console(width=width, color_system=None, force_terminal=False, highlight=False)
    with console.capture() as out:
        console.print(table)
    return "\n".join(line.rstrip() for line in out.get().splitlines()) + "\n"
