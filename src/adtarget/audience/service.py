"""Sizing, overlap and export of audiences: a rule in, exact counts or user ids out.

Why one ``_compile`` step: all three calls parse, validate against the registry (the catalog's
merged with the snapshot's own) and inline rule-based segments the same way, so a rule that
sizes also exports. Privacy: an exact count below ``min_size`` is never returned, and a list of
fewer than ``min_size`` users is never exported.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from adtarget.audience.sharded import AnySnapshot, ShardedSnapshot
from adtarget.audience.sizing import count_rule, overlap_counts
from adtarget.audience.store import SnapshotStore
from adtarget.errors import InvalidValue, NotFound
from adtarget.objectstore import Location, resolve
from adtarget.rules.ast import Rule
from adtarget.rules.eval_bitmap import evaluate
from adtarget.rules.format import from_json
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec
from adtarget.rules.validate import expand_segments, refuse_hidden, validate

RuleInput = str | Rule | Mapping[str, Any]
ExportFormat = Literal["csv", "parquet"]
EXPORT_CHUNK = 1_000_000
Reach = Mapping[str, tuple[str, ...]]


def current_snapshot(store: SnapshotStore) -> AnySnapshot:
    """The live snapshot, or ``NotFound`` (404 / CLI exit 1) before the first upload."""
    snap = store.current()
    if snap is None:
        raise NotFound(
            "no audience snapshot has been published yet; upload features first", field="snapshot"
        )
    return snap


def _compile(
    rule: RuleInput,
    snapshot: AnySnapshot,
    registry: Mapping[str, DimensionSpec] | None,
    segments: Mapping[str, Rule | None] | None,
    hidden: frozenset[str] = frozenset(),
    reach: Reach | None = None,
) -> Rule:
    """Parse, validate and inline rule segments not materialized in the snapshot.

    ``hidden``: segments the caller may not see. The rule is validated as if they did not
    exist, so naming one fails exactly as naming a missing one, on the very rule that would
    otherwise be evaluated. ``reach`` (``rules.validate.hidden_reach``): the visible rule
    segments whose stored rule reaches a hidden one, refused too, whether they are inlined or
    read materialized from the snapshot. Errors name the request field ``rule`` (the parser's
    default is ``targeting``)."""
    try:
        return _compile_checked(rule, snapshot, registry, segments, hidden, reach or {})
    except InvalidValue as exc:
        if exc.field in (None, "targeting"):
            exc.field = "rule"
        raise


def _compile_checked(
    rule: RuleInput,
    snapshot: AnySnapshot,
    registry: Mapping[str, DimensionSpec] | None,
    segments: Mapping[str, Rule | None] | None,
    hidden: frozenset[str],
    reach: Reach,
) -> Rule:
    if isinstance(rule, str):
        parsed = parse(rule)
    elif isinstance(rule, Mapping):
        parsed = from_json(rule)
    else:
        parsed = rule
    merged: dict[str, DimensionSpec] = dict(snapshot.registry)
    if registry:
        merged.update(registry)
    stored = set(snapshot.segment_names()) - hidden
    known: dict[str, Rule | None] = {name: None for name in stored}
    if segments:
        known.update({k: v for k, v in segments.items() if k not in known and k not in hidden})
    validate(parsed, merged, segments=known)
    refuse_hidden(parsed, hidden, reach)
    if segments and any(v is not None for k, v in segments.items() if k not in stored):
        parsed = expand_segments(parsed, lambda n: None if n in stored else known.get(n))
    return parsed


COMPILE_CACHE_SIZE = 1024
_compiled: dict[tuple[Any, ...], Rule] = {}
_compiled_lock = threading.Lock()


def _compile_any(
    rule: RuleInput,
    snapshot: AnySnapshot,
    registry: Mapping[str, DimensionSpec] | None,
    segments: Mapping[str, Rule | None] | None,
    hidden: frozenset[str] = frozenset(),
    reach: Reach | None = None,
) -> Rule:
    """``_compile``, memoized for rule text: parsing and validating cost ~0.4 ms, more than
    sizing itself. The key holds the snapshot's path and version (the segment names it
    materialized are part of what validation sees) and the catalog's registry and segments;
    never the snapshot object, so a cached rule does not keep an old snapshot mapped."""
    if not isinstance(rule, str):
        return _compile(rule, snapshot, registry, segments, hidden, reach)
    key = (
        rule,
        str(snapshot.path),
        snapshot.version,
        frozenset((registry or {}).items()),
        frozenset((segments or {}).items()),
        hidden,
        frozenset((reach or {}).items()),
    )
    hit = _compiled.get(key)
    if hit is None:
        hit = _compile(rule, snapshot, registry, segments, hidden, reach)
        with _compiled_lock:
            if len(_compiled) >= COMPILE_CACHE_SIZE:
                _compiled.clear()
            _compiled[key] = hit
    return hit


def _gate(n: int, min_size: int, version: str) -> dict[str, Any]:
    if n < min_size:
        return {"count": None, "below_threshold": True, "min_size": min_size, "snapshot": version}
    return {"count": n, "snapshot": version}


def _with_shards(answer: dict[str, Any], snapshot: AnySnapshot) -> dict[str, Any]:
    """Answers from a sharded snapshot say over how many shards they were summed."""
    if isinstance(snapshot, ShardedSnapshot):
        answer["shards"] = snapshot.num_shards
    return answer


def size_rule(
    *,
    snapshot: AnySnapshot,
    rule_text: RuleInput,
    registry: Mapping[str, DimensionSpec] | None = None,
    min_size: int = 100,
    segments: Mapping[str, Rule | None] | None = None,
    hidden: frozenset[str] = frozenset(),
    reach: Reach | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Exact number of users matching a rule: ``{"count": N, "snapshot": v}``.

    Args:
        snapshot: the snapshot to size against (``store.current()``).
        rule_text: rule text, its JSON form, or a parsed rule.
        registry: dimension registry (the catalog's); merged over the snapshot's own.
        min_size: counts below it come back as ``count: None, below_threshold: True``.
        segments: catalog segments, name -> rule (rule-based) or ``None`` (list).
        hidden: segments the caller may not see (treated as missing).
        reach: visible rule segments that reach a hidden one (``rules.validate.hidden_reach``).
        use_cache: reuse sub-expression results kept on the snapshot (``audience/results``).
    """
    rule = _compile_any(rule_text, snapshot, registry, segments, hidden, reach)
    if isinstance(snapshot, ShardedSnapshot):
        n = snapshot.fanout.count(rule, use_cache)
    else:
        n = count_rule(rule, snapshot.index, snapshot.results if use_cache else None)
    return _with_shards(_gate(n, min_size, snapshot.version), snapshot)


def overlap_rules(
    *,
    snapshot: AnySnapshot,
    rules: Sequence[RuleInput],
    registry: Mapping[str, DimensionSpec] | None = None,
    min_size: int = 100,
    segments: Mapping[str, Rule | None] | None = None,
    hidden: frozenset[str] = frozenset(),
    reach: Reach | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """N x N matrix of intersection sizes (diagonal = each rule's size), thresholded per cell:
    a cell under ``min_size`` is ``None`` and ``below_threshold[i][j]`` is ``True``.

    Each rule is evaluated once; cells use ``intersection_cardinality`` (no bitmap is built).
    """
    if not rules:
        raise InvalidValue("give at least one rule", field="rules")
    compiled: list[Rule] = []
    for i, r in enumerate(rules):
        try:
            compiled.append(_compile_any(r, snapshot, registry, segments, hidden, reach))
        except InvalidValue as exc:
            exc.details.setdefault("index", i)
            raise
    n = len(compiled)
    counts = (
        snapshot.fanout.overlap(compiled, use_cache)
        if isinstance(snapshot, ShardedSnapshot)
        else overlap_counts(compiled, snapshot.index, snapshot.results if use_cache else None)
    )
    matrix: list[list[int | None]] = [[None] * n for _ in range(n)]
    low_cells: list[list[bool]] = [[False] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            c = counts[i][j]
            low = c < min_size
            matrix[i][j] = matrix[j][i] = None if low else c
            low_cells[i][j] = low_cells[j][i] = low
    answer = {
        "snapshot": snapshot.version,
        "rules": [r if isinstance(r, str) else str(r) for r in rules],
        "sizes": [matrix[i][i] for i in range(n)],
        "matrix": matrix,
        "below_threshold": low_cells,
        "min_size": min_size,
    }
    return _with_shards(answer, snapshot)


def export_rule(
    *,
    snapshot: AnySnapshot,
    rule_text: RuleInput,
    out_path: Path | str,
    fmt: ExportFormat = "csv",
    registry: Mapping[str, DimensionSpec] | None = None,
    min_size: int = 100,
    segments: Mapping[str, Rule | None] | None = None,
    chunk_size: int = EXPORT_CHUNK,
    hidden: frozenset[str] = frozenset(),
    reach: Reach | None = None,
) -> dict[str, Any]:
    """Write the matching user ids (column ``user_id``) to CSV or Parquet, streamed in chunks.

    Raises ``InvalidValue`` (field ``rule``) when fewer than ``min_size`` users match.
    """
    if fmt not in ("csv", "parquet"):
        raise InvalidValue(f"export format {fmt!r} is not csv or parquet", field="format")
    rule = _compile(rule_text, snapshot, registry, segments, hidden, reach)
    if isinstance(snapshot, ShardedSnapshot):
        return _export_sharded(snapshot, rule, out_path, fmt, min_size, chunk_size)
    bm = evaluate(rule, snapshot.index)
    n = len(bm)
    _check_exportable(n, min_size)
    ordinals = np.frombuffer(bm.to_array(), dtype=np.uint32)
    chunks = (
        snapshot.user_ids(ordinals[start : start + chunk_size]) for start in range(0, n, chunk_size)
    )
    _write_ids(chunks, out_path, fmt)
    return {"count": n, "path": str(out_path), "format": fmt, "snapshot": snapshot.version}


def _check_exportable(n: int, min_size: int) -> None:
    if n < min_size:
        raise InvalidValue(
            f"audience is below the minimum size of {min_size} users "
            "(ADTARGET_MIN_AUDIENCE_SIZE) and cannot be exported",
            field="rule",
            below_threshold=True,
        )


def _export_sharded(
    snapshot: ShardedSnapshot,
    rule: Rule,
    out_path: Path | str,
    fmt: ExportFormat,
    min_size: int,
    chunk_size: int,
) -> dict[str, Any]:
    """Count first (the threshold applies to the sum), then stream the shards' ids in turn."""
    n = snapshot.fanout.count(rule)
    _check_exportable(n, min_size)
    written = _write_ids(snapshot.fanout.export(rule, chunk_size), out_path, fmt)
    answer = {"count": written, "path": str(out_path), "format": fmt}
    return _with_shards({**answer, "snapshot": snapshot.version}, snapshot)


def _write_ids(chunks: Iterator[pa.Array], out_path: Path | str, fmt: ExportFormat) -> int:
    """Write id chunks to ``out_path`` (column ``user_id``) via a ``.partial`` file, or streamed
    to an object store (``s3://...``: the object appears only once the upload completes)."""
    schema = pa.schema([("user_id", pa.large_string())])
    target = resolve(out_path)
    if target.local is None:
        return _write_remote(chunks, target, fmt, schema)
    out = target.local
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    writer: Any = (
        pacsv.CSVWriter(str(tmp), schema) if fmt == "csv" else pq.ParquetWriter(str(tmp), schema)
    )
    written = 0
    try:
        for ids in chunks:
            written += len(ids)
            writer.write_table(pa.table({"user_id": ids.cast(pa.large_string())}, schema=schema))
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    tmp.replace(out)
    return written


def _write_remote(
    chunks: Iterator[pa.Array], target: Location, fmt: ExportFormat, schema: pa.Schema
) -> int:
    """Stream the ids to a remote object; a failed write deletes what was uploaded."""
    sink = target.open_output()
    written = 0
    try:
        writer: Any = (
            pacsv.CSVWriter(sink, schema) if fmt == "csv" else pq.ParquetWriter(sink, schema)
        )
        for ids in chunks:
            written += len(ids)
            writer.write_table(pa.table({"user_id": ids.cast(pa.large_string())}, schema=schema))
        writer.close()
        sink.close()
    except OSError as exc:
        sink.close()
        target.delete()
        raise InvalidValue(f"cannot write {target.uri}: {exc}", field="out") from None
    except BaseException:
        sink.close()
        target.delete()
        raise
    return written
