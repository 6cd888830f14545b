"""Pydantic shapes of catalog objects: ``XCreate`` (input), ``XUpdate`` (partial), ``XRead``.

These check types and single-field ranges; rules that span fields or rows (daily budget ≤ total,
end after start, the format's JSON Schema, targeting against the dimension registry) live in
``catalog/checks.py`` because an update must be checked against the merged row, not the patch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    computed_field,
)

from adtarget.errors import InvalidValue

M = TypeVar("M", bound=BaseModel)


def _to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: A datetime normalised to tz-aware UTC (naive input is taken as UTC).
UTCDatetime = Annotated[datetime, AfterValidator(_to_utc)]
#: Money: exact in Python, a JSON number on the wire (as API.md says).
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=6),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Bid = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=6),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Status = Literal["draft", "active", "paused", "archived"]
PacingMode = Literal["even", "asap"]
Objective = Literal["awareness", "reach", "completion", "clicks", "conversions"]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
#: Competitive category (``"auto"``, ``"telecom"``): trimmed and lower-cased, so ``"Auto"`` and
#: ``"auto"`` are one category when an ad pod keeps competitors apart.
Category = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=64),
]
Priority = Annotated[int, Field(ge=1, le=16)]
MAX_INT32 = 2**31 - 1
"""Catalog integers are 32-bit columns on PostgreSQL: every input integer is bounded by it, so
an out-of-range number is a 422 naming the field, never a database error."""
PositiveInt = Annotated[int, Field(gt=0, le=MAX_INT32)]
Id = Annotated[int, Field(ge=1, le=MAX_INT32)]


class FrequencyCap(BaseModel):
    """At most ``count`` impressions per user in any ``window_seconds``."""

    model_config = ConfigDict(extra="forbid")

    count: PositiveInt
    window_seconds: PositiveInt


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _Capped(_Out):
    frequency_cap_count: int | None = None
    frequency_cap_window_seconds: int | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def frequency_cap(self) -> FrequencyCap | None:
        """The cap as the API's ``{"count", "window_seconds"}`` object."""
        if self.frequency_cap_count is None or self.frequency_cap_window_seconds is None:
            return None
        return FrequencyCap(
            count=self.frequency_cap_count, window_seconds=self.frequency_cap_window_seconds
        )


# --- advertisers -------------------------------------------------------------------------------


class AdvertiserCreate(_In):
    name: Name
    status: Status | None = None
    frequency_cap: FrequencyCap | None = None
    category: Category | None = None


class AdvertiserUpdate(_In):
    name: Name | None = None
    status: Status | None = None
    frequency_cap: FrequencyCap | None = None
    category: Category | None = None


class AdvertiserRead(_Capped):
    id: int
    name: str
    status: str
    category: str | None = None
    version: int
    created_at: datetime
    updated_at: datetime


# --- campaigns ---------------------------------------------------------------------------------


class CampaignCreate(_In):
    advertiser_id: Id
    name: Name
    budget_total: Money
    start: UTCDatetime
    end: UTCDatetime
    status: Status | None = None
    objective: Objective = "awareness"
    currency: Currency = "USD"
    budget_daily: Money | None = None
    timezone: str = "UTC"
    dayparting: dict[str, list[int]] | None = None
    frequency_cap: FrequencyCap | None = None
    pacing_mode: PacingMode = "even"
    category: Category | None = None


class CampaignUpdate(_In):
    name: Name | None = None
    budget_total: Money | None = None
    start: UTCDatetime | None = None
    end: UTCDatetime | None = None
    status: Status | None = None
    objective: Objective | None = None
    currency: Currency | None = None
    budget_daily: Money | None = None
    timezone: str | None = None
    dayparting: dict[str, list[int]] | None = None
    frequency_cap: FrequencyCap | None = None
    pacing_mode: PacingMode | None = None
    category: Category | None = None


class CampaignRead(_Capped):
    id: int
    advertiser_id: int
    name: str
    status: str
    objective: str
    currency: str
    budget_total: Money
    budget_daily: Money | None
    start: datetime
    end: datetime
    timezone: str
    dayparting: dict[str, list[int]] | None
    pacing_mode: str
    category: str | None = None
    version: int
    created_at: datetime
    updated_at: datetime


# --- line items --------------------------------------------------------------------------------


class LineItemCreate(_In):
    campaign_id: Id
    name: Name
    targeting: str = Field(default="", max_length=20_000)
    priority: Priority = 8
    bid_cpm: Bid
    status: Status | None = None
    pacing_mode: PacingMode = "even"
    frequency_cap: FrequencyCap | None = None
    start: UTCDatetime | None = None
    end: UTCDatetime | None = None
    budget_total: Money | None = None
    formats: list[str] = Field(default_factory=list)


class LineItemUpdate(_In):
    name: Name | None = None
    targeting: str | None = Field(default=None, max_length=20_000)
    priority: Priority | None = None
    bid_cpm: Bid | None = None
    status: Status | None = None
    pacing_mode: PacingMode | None = None
    frequency_cap: FrequencyCap | None = None
    start: UTCDatetime | None = None
    end: UTCDatetime | None = None
    budget_total: Money | None = None
    formats: list[str] | None = None


class LineItemRead(_Capped):
    id: int
    campaign_id: int
    name: str
    status: str
    priority: int
    bid_cpm: Bid
    pacing_mode: str
    start: datetime | None
    end: datetime | None
    budget_total: Money | None
    targeting: str
    targeting_json: dict[str, Any] | None
    formats: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


# --- ad formats and creatives ------------------------------------------------------------------


class AdFormatCreate(_In):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    media: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,15}$")]
    description: str = ""
    json_schema: dict[str, Any]


class AdFormatRead(_Out):
    name: str
    media: str
    description: str
    json_schema: dict[str, Any]
    added_at: datetime


class CreativeCreate(_In):
    advertiser_id: Id
    name: Name
    format: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    approval_status: Literal["pending", "approved", "rejected"] = "approved"
    status: Status | None = None


class CreativeUpdate(_In):
    name: Name | None = None
    format: str | None = None
    attributes: dict[str, Any] | None = None
    approval_status: Literal["pending", "approved", "rejected"] | None = None
    status: Status | None = None


class CreativeRead(_Out):
    id: int
    advertiser_id: int
    name: str
    format: str
    attributes: dict[str, Any]
    approval_status: str
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


# --- segments and dimensions -------------------------------------------------------------------


class SegmentCreate(_In):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,199}$")]
    kind: Literal["rule", "list"]
    rule: str | None = Field(default=None, max_length=20_000)
    advertiser_id: Id | None = None
    status: Status | None = None
    ttl_seconds: PositiveInt | None = None


class SegmentUpdate(_In):
    """What a caller may change. ``last_size``/``last_snapshot``/``last_computed_at`` are derived
    (measured on the snapshot at every publish) and read-only: a writable size would let a tiny
    segment pass the minimum audience size."""

    rule: str | None = Field(default=None, max_length=20_000)
    status: Status | None = None
    ttl_seconds: PositiveInt | None = None


class SegmentRead(_Out):
    id: int
    name: str
    kind: str
    rule: str | None
    rule_json: dict[str, Any] | None
    advertiser_id: int | None
    status: str
    ttl_seconds: int | None
    last_size: int | None
    last_snapshot: str | None
    last_computed_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class DimensionCreate(_In):
    name: str
    type: Literal["category", "number", "set", "bool"]
    description: str = ""
    allowed_values: list[str] | None = None
    status: Status | None = None


class DimensionUpdate(_In):
    description: str | None = None
    allowed_values: list[str] | None = None
    status: Status | None = None


class DimensionRead(_Out):
    id: int
    name: str
    type: str
    description: str
    allowed_values: list[str] | None
    status: str
    version: int
    added_at: datetime
    updated_at: datetime


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("formats", 0)`` → ``formats[0]``; ``("frequency_cap", "count")`` → dotted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_input(model: type[M], data: M | BaseModel | Any) -> M:
    """Validate ``data`` (a model or a mapping) as ``model``; errors become ``InvalidValue``."""
    if isinstance(data, model):
        return data
    if isinstance(data, BaseModel):
        data = data.model_dump(exclude_unset=True)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = field_path(tuple(first["loc"])) or None
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown field"
        raise InvalidValue(f"{field or 'input'}: {msg}", field=field) from None
