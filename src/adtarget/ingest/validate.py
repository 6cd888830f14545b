"""Vectorized per-batch validation: type every cell, flag bad rows, pass the good ones on.

Why vectorized: a 10M-row upload must validate in seconds, so each check is one
``pyarrow.compute`` call over a whole column producing a boolean mask. Python only loops over
the (few) rows that failed, to write a readable reason for each. The first problem found in a
row (in column order, id first) is the one reported.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from adtarget.ingest.dedupe import SeenIds
from adtarget.ingest.readers import ReadBatch
from adtarget.rules.registry import DimensionSpec

NUMBER_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
INT_RE = r"^\s*[-+]?\d{1,18}\s*$"
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")
#: Problem codes, in the order a row is checked.
ENCODING, TOO_LONG, WRONG_TYPE, NOT_ALLOWED, MISSING_ID, DUPLICATE_ID, UNKNOWN_COLUMN = range(7)
USER_ID = "user_id"
OUT_TYPES: dict[str, pa.DataType] = {
    "category": pa.string(),
    "number": pa.float64(),
    "set": pa.list_(pa.string()),
    "bool": pa.bool_(),
}


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    """Knobs of validation; defaults match the CLI's."""

    id_column: str = USER_ID
    max_field_chars: int = 256
    set_separator: str = "|"
    check_duplicates: bool = True
    #: reject rows with a value in a column that is not the id or a dimension (a JSONL key
    #: first seen late in the file); segment lists set it False and read only the id
    strict_columns: bool = True
    #: optional regex every id must match (hashed lists: 64 hex digits), and its name in reasons
    id_pattern: str | None = None
    id_kind: str = "string"


@dataclass(frozen=True, slots=True)
class Reject:
    """One rejected row: where it was, which field, why, and the row as it was read."""

    line: int
    field: str | None
    reason: str
    raw: str


@dataclass(slots=True)
class ValidatedBatch:
    """The good rows (``user_id`` + typed dimension columns) and the rejected ones."""

    good: pa.RecordBatch
    rejects: list[Reject] = field(default_factory=list)
    #: ``idhash.hash_ids`` of the good rows' ids (None when duplicates are not checked)
    hashes: np.ndarray[Any, np.dtype[np.uint64]] | None = None


def output_schema(dims: Sequence[DimensionSpec]) -> pa.Schema:
    """The schema of validated batches: ``user_id`` then one typed column per dimension."""
    return pa.schema(
        [pa.field(USER_ID, pa.string())] + [pa.field(d.name, OUT_TYPES[d.type]) for d in dims]
    )


class _Problems:
    """First problem per row: a mask plus (column, code) per row; later checks never overwrite."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.column = np.full(n, -1, dtype=np.int32)
        self.code = np.full(n, -1, dtype=np.int8)

    def add(self, mask: np.ndarray[Any, np.dtype[np.bool_]], column: int, code: int) -> None:
        new = mask & ~self.bad
        if new.any():
            self.column[new] = column
            self.code[new] = code
            self.bad |= new


def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """A boolean arrow array as numpy, null counted as false."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _bad_utf8_rows(arr: pa.Array, offset: int = 0) -> list[int]:
    """Rows of a binary array that are not valid UTF-8, found by bisection (cast is all-or-none)."""
    try:
        arr.cast(pa.string())
        return []
    except pa.ArrowInvalid:
        pass
    if len(arr) <= 32:
        out = []
        for i, v in enumerate(arr.to_pylist()):
            try:
                if v is not None:
                    v.decode("utf-8")
            except UnicodeDecodeError:
                out.append(offset + i)
        return out
    half = len(arr) // 2
    return _bad_utf8_rows(arr.slice(0, half), offset) + _bad_utf8_rows(
        arr.slice(half), offset + half
    )


def _to_text(arr: pa.Array, probs: _Problems, col: int) -> pa.Array:
    """Binary/dictionary/large strings to plain ``string``; bad UTF-8 rows flagged and nulled."""
    if pa.types.is_dictionary(arr.type):
        if pa.types.is_string(arr.type.value_type):
            return arr  # checked on its (small) dictionary; the builder takes it as is
        arr = arr.dictionary_decode()
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        bad = _bad_utf8_rows(arr)
        if bad:
            mask = np.zeros(len(arr), dtype=bool)
            mask[bad] = True
            probs.add(mask, col, ENCODING)
            arr = pc.if_else(pa.array(mask), pa.scalar(None, arr.type), arr)
        return arr.cast(pa.string())
    if pa.types.is_large_string(arr.type):
        return arr.cast(pa.string())
    return arr


BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def _by_code(arr: pa.DictionaryArray, bad_values: BoolArray) -> BoolArray:
    """Rows of a dictionary array whose dictionary entry is flagged in ``bad_values``."""
    codes = np.flatnonzero(bad_values)
    if not len(codes):
        return np.zeros(len(arr), dtype=bool)
    return _mask(pc.is_in(arr.indices, value_set=pa.array(codes, arr.indices.type)))


def _too_long(strings: pa.Array, limit: int) -> BoolArray:
    """Rows of a string array longer than ``limit`` characters.

    Byte lengths come from the offsets alone and bound the character count from above, so the
    UTF-8 scan runs only when some value has more than ``limit`` bytes (rare in real files).
    """
    longest = pc.max(pc.binary_length(strings)).as_py()
    if longest is None or longest <= limit:
        return np.zeros(len(strings), dtype=bool)
    return _mask(pc.greater(pc.utf8_length(strings), limit))


def _blank(strings: pa.Array) -> BoolArray:
    """Rows that ``utf8_trim_whitespace`` would empty (empty or only whitespace).

    Trimming every id copies all of them (a third of validating 10M ids); a string whose first
    byte is ASCII and not a space or control character keeps that character, so only the rest
    (empty, leading space or control byte, non-ASCII start) are trimmed to check exactly.
    """
    n = len(strings)
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    offsets = np.frombuffer(strings.buffers()[1], dtype=width)[
        strings.offset : strings.offset + n + 1
    ]
    buf = strings.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    if not len(data):
        return _mask(pc.equal(pc.utf8_trim_whitespace(strings), ""))
    first = data[np.minimum(offsets[:-1], len(data) - 1)]
    maybe = (offsets[1:] == offsets[:-1]) | (first <= 0x20) | (first >= 0x7F)
    out = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(maybe)
    if len(rows):
        picked = strings.take(pa.array(rows))
        out[rows] = _mask(pc.equal(pc.utf8_trim_whitespace(picked), ""))
    return out


def _check_length(arr: pa.Array, limit: int, probs: _Problems, col: int) -> None:
    if pa.types.is_dictionary(arr.type):
        long_values = _too_long(arr.dictionary, limit)
        if long_values.any():
            probs.add(_by_code(arr, long_values), col, TOO_LONG)
    elif pa.types.is_string(arr.type):
        probs.add(_too_long(arr, limit), col, TOO_LONG)
    elif pa.types.is_list(arr.type) and pa.types.is_string(arr.type.value_type):
        flat = pc.list_flatten(arr)
        if len(flat):
            long_elems = _too_long(flat, limit)
            if long_elems.any():
                parents = pc.list_parent_indices(arr).to_numpy()
                mask = np.zeros(len(arr), dtype=bool)
                mask[parents[long_elems]] = True
                probs.add(mask, col, TOO_LONG)


def _wrong(
    arr: pa.Array,
    probs: _Problems,
    col: int,
    out_type: pa.DataType,
    ok: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
) -> pa.Array:
    """Flag non-null rows not in ``ok`` (all when None) as wrong type; null them in the output."""
    present = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    bad = present if ok is None else present & ~ok
    probs.add(bad, col, WRONG_TYPE)
    if ok is None:
        return pa.nulls(len(arr), out_type)
    return arr if not bad.any() else pc.if_else(pa.array(bad), pa.scalar(None, arr.type), arr)


def _coerce(
    arr: pa.Array, spec: DimensionSpec, opts: ValidationOptions, probs: _Problems, col: int
) -> pa.Array:
    """The column as the spec's output type; cells that do not fit are flagged and nulled."""
    if pa.types.is_dictionary(arr.type) and spec.type != "category":
        arr = arr.dictionary_decode()
    t = arr.type
    if spec.type == "category":
        if pa.types.is_string(t) or pa.types.is_dictionary(t):
            return arr
        if pa.types.is_integer(t) or pa.types.is_boolean(t):
            return arr.cast(pa.string())
        return _wrong(arr, probs, col, pa.string())
    if spec.type == "number":
        if pa.types.is_integer(t):
            return arr.cast(pa.int64())
        if pa.types.is_floating(t):
            floats = arr.cast(pa.float64())
            finite = pc.is_finite(floats)
            if pc.all(finite).as_py() is False:  # NaN / inf is no number a rule can compare
                return _wrong(floats, probs, col, pa.float64(), _mask(finite))
            return floats
        if pa.types.is_string(t):
            ok = _mask(pc.match_substring_regex(arr, NUMBER_RE))
            checked = _wrong(arr, probs, col, pa.float64(), ok)
            ints = _mask(pc.match_substring_regex(checked, INT_RE)).sum()
            target = pa.int64() if ints == len(checked) - checked.null_count else pa.float64()
            return pc.utf8_trim_whitespace(checked).cast(target)
        return _wrong(arr, probs, col, pa.float64())
    if spec.type == "bool":
        if pa.types.is_boolean(t):
            return arr
        if pa.types.is_string(t) or pa.types.is_integer(t):
            low = pc.utf8_lower(pc.utf8_trim_whitespace(arr.cast(pa.string())))
            is_true = _mask(pc.is_in(low, value_set=pa.array(TRUE_WORDS)))
            is_false = _mask(pc.is_in(low, value_set=pa.array(FALSE_WORDS)))
            _wrong(arr, probs, col, pa.bool_(), is_true | is_false)
            valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            return pa.array(is_true, mask=~(valid & (is_true | is_false)))
        return _wrong(arr, probs, col, pa.bool_())
    # set
    if pa.types.is_string(t):
        return pc.split_pattern(arr, pattern=opts.set_separator)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        vt = t.value_type
        if pa.types.is_dictionary(vt):
            arr = arr.cast(pa.list_(vt.value_type))
        if pa.types.is_string(vt) or pa.types.is_large_string(vt) or pa.types.is_integer(vt):
            return arr.cast(pa.list_(pa.string()))
    return _wrong(arr, probs, col, pa.list_(pa.string()))


def _check_allowed(arr: pa.Array, spec: DimensionSpec, probs: _Problems, col: int) -> None:
    if not spec.allowed_values:
        return
    allowed = pa.array(sorted(spec.allowed_values), pa.string())
    if spec.type == "category" and pa.types.is_dictionary(arr.type):
        bad_values = ~_mask(pc.is_in(arr.dictionary, value_set=allowed))
        if bad_values.any():
            probs.add(_by_code(arr, bad_values), col, NOT_ALLOWED)
        return
    if spec.type == "category":
        present = _mask(arr.is_valid())
        probs.add(present & ~_mask(pc.is_in(arr, value_set=allowed)), col, NOT_ALLOWED)
        return
    flat = pc.list_flatten(arr)
    if len(flat):
        bad_elems = ~_mask(pc.is_in(flat, value_set=allowed))
        if bad_elems.any():
            mask = np.zeros(len(arr), dtype=bool)
            mask[pc.list_parent_indices(arr).to_numpy()[bad_elems]] = True
            probs.add(mask, col, NOT_ALLOWED)


class BatchValidator:
    """Validates batches of one file in order; remembers ids to catch duplicates across batches."""

    def __init__(
        self,
        registry: Mapping[str, DimensionSpec],
        columns: Sequence[str],
        *,
        options: ValidationOptions,
        raw_delimiter: str | None = None,
    ) -> None:
        self.options = options
        self.raw_delimiter = raw_delimiter  # CSV: rebuild the raw row with this delimiter
        self.dims = [registry[c] for c in columns if c != options.id_column]
        self.schema = output_schema(self.dims)
        self._seen = SeenIds()

    def validate(self, rb: ReadBatch) -> ValidatedBatch:
        """Split one read batch into good typed rows and rejects (parse rejects included)."""
        batch, n = rb.batch, rb.batch.num_rows
        rejects = [Reject(r.line, r.field, r.reason, r.raw) for r in rb.rejects]
        if n == 0:
            return ValidatedBatch(pa.RecordBatch.from_pylist([], self.schema), rejects)
        probs = _Problems(n)
        names = [self.options.id_column] + [d.name for d in self.dims]
        out: list[pa.Array] = []
        ids = self._ids(batch, probs)
        out.append(ids)
        for col, spec in enumerate(self.dims, start=1):
            if spec.name in batch.schema.names:
                arr = _to_text(batch.column(spec.name), probs, col)
                _check_length(arr, self.options.max_field_chars, probs, col)
                typed = _coerce(arr, spec, self.options, probs, col)
                _check_allowed(typed, spec, probs, col)
            else:
                typed = pa.nulls(n, OUT_TYPES[spec.type])
            out.append(typed)
        extra = (
            [c for c in batch.schema.names if c not in names] if self.options.strict_columns else []
        )
        for j, name in enumerate(extra, start=len(names)):
            probs.add(_mask(batch.column(name).is_valid()), j, UNKNOWN_COLUMN)
        hashes = self._duplicates(ids, probs)
        if probs.bad.any():
            rejects.extend(self._describe(batch, rb.lines, probs, [*names, *extra]))
        names[0] = USER_ID
        good = pa.RecordBatch.from_arrays(out, names=names)
        if probs.bad.any():
            good = good.filter(pa.array(~probs.bad))
            if hashes is not None:
                hashes = hashes[~probs.bad]
        return ValidatedBatch(good, rejects, hashes)

    def forget_ids(self) -> None:
        """Drop the ids remembered for the duplicate check (the file is read: frees memory)."""
        self._seen.clear()

    def _ids(self, batch: pa.RecordBatch, probs: _Problems) -> pa.Array:
        idc = self.options.id_column
        if idc not in batch.schema.names:
            probs.add(np.ones(batch.num_rows, dtype=bool), 0, MISSING_ID)
            return pa.nulls(batch.num_rows, pa.string())
        arr = _to_text(batch.column(idc), probs, 0)
        if pa.types.is_integer(arr.type):
            arr = arr.cast(pa.string())
        if not pa.types.is_string(arr.type):
            probs.add(_mask(arr.is_valid()), 0, WRONG_TYPE)
            return pa.nulls(batch.num_rows, pa.string())
        _check_length(arr, self.options.max_field_chars, probs, 0)
        if self.options.id_pattern:
            ok = _mask(pc.match_substring_regex(arr, self.options.id_pattern))
            probs.add(_mask(arr.is_valid()) & ~ok, 0, WRONG_TYPE)
        probs.add(_blank(arr) | ~_mask(arr.is_valid()), 0, MISSING_ID)
        return arr

    def _duplicates(
        self, ids: pa.Array, probs: _Problems
    ) -> np.ndarray[Any, np.dtype[np.uint64]] | None:
        """First occurrence in the file wins; later ones are rejected (see ``ingest.dedupe``).

        Returns the id hashes (zero where the id is unusable), reused as the snapshot's keys.
        """
        if not self.options.check_duplicates:
            return None
        usable = _mask(ids.is_valid()) & ~(probs.bad & (probs.column == 0))
        if usable.all():
            dup, hashes = self._seen.offer_hashed(ids)
        else:
            idx = np.flatnonzero(usable)
            dup = np.zeros(len(ids), dtype=bool)
            hashes = np.zeros(len(ids), dtype=np.uint64)
            dup[idx], hashes[idx] = self._seen.offer_hashed(ids.take(pa.array(idx)))
        probs.add(dup, 0, DUPLICATE_ID)
        return hashes

    def _describe(
        self, batch: pa.RecordBatch, lines: np.ndarray[Any, Any], probs: _Problems, names: list[str]
    ) -> list[Reject]:
        """A reason per bad row; the only per-row Python loop, over bad rows only."""
        rows = np.flatnonzero(probs.bad)
        sub = batch.take(pa.array(rows)).to_pylist()
        out = []
        for i, row in zip(rows.tolist(), sub, strict=True):
            name = names[int(probs.column[i])]
            value = row.get(name)
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="backslashreplace")
            out.append(
                Reject(
                    int(lines[i]),
                    name,
                    self._reason(int(probs.code[i]), name, value),
                    self._raw(row),
                )
            )
        return out

    def _reason(self, code: int, name: str, value: Any) -> str:
        spec = next((d for d in self.dims if d.name == name), None)
        if code == ENCODING:
            return "bad UTF-8 encoding"
        if code == TOO_LONG:
            return f"value longer than {self.options.max_field_chars} characters"
        if code == WRONG_TYPE:
            kind = spec.type if spec else self.options.id_kind
            return f"wrong type: {value!r} is not a {kind}"
        if code == NOT_ALLOWED:
            allowed = ", ".join(sorted(spec.allowed_values or ())) if spec else ""
            return f"value {value!r} is not allowed (allowed: {allowed})"
        if code == MISSING_ID:
            return "missing user id"
        if code == UNKNOWN_COLUMN:
            return f"column {name!r} is not a dimension of this upload (declare it with --schema)"
        return f"duplicate user id {value!r} (an earlier row has it)"

    def _raw(self, row: dict[str, Any]) -> str:
        def text(v: Any) -> str:
            if v is None:
                return ""
            if isinstance(v, bytes):
                return v.decode("utf-8", errors="backslashreplace")
            return str(v)

        if self.raw_delimiter is not None:
            buf = io.StringIO()
            csv.writer(buf, delimiter=self.raw_delimiter, lineterminator="").writerow(
                [text(v) for v in row.values()]
            )
            return buf.getvalue()
        clean = {k: text(v) if isinstance(v, bytes) else v for k, v in row.items()}
        return orjson.dumps(clean, default=str).decode()
