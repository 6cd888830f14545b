"""Write the files of a staged snapshot: id map, code columns, bitmaps, segments, manifest.

Why ids are resolved first: every other file is indexed by ordinal, so the ordinal of each new
row (kept for existing users on upsert, appended for new ones) and the live-user mask must be
fixed before any column is written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import AbstractBitMap, FrozenBitMap

from adtarget.audience import bsi, numbers
from adtarget.audience.columns import (
    MISSING,
    ColumnChunks,
    Dictionary,
    group_bitmaps,
    owners_of,
)
from adtarget.audience.dense_build import (
    DENSE_MAX,
    bitmap_from_mask,
    set_value_bitmaps,
    value_bitmaps,
)
from adtarget.audience.idhash import hash_ids, offsets_and_data
from adtarget.audience.layout import (
    FORMAT,
    IDS_DATA,
    IDS_HASH,
    IDS_OFFSETS,
    IDS_SORTED,
    MANIFEST,
    SEGMENTS,
    UNIVERSE,
    dim_file,
    file_checksum,
    registry_to_json,
    save_npy,
    write_bitmaps,
    write_json,
)
from adtarget.audience.ordinals import (
    PendingSegment,
    ResolvedIds,
    check_duplicates,
    resolve_ids,
)
from adtarget.audience.snapshot import Snapshot
from adtarget.rules.eval_bitmap import evaluate
from adtarget.rules.format import to_text
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec

if TYPE_CHECKING:
    from adtarget.rules.ast import Rule

__all__ = ["PendingSegment", "ResolvedIds", "SnapshotWriter", "code_dtype", "resolve_ids"]

U32 = np.uint32


def code_dtype(k: int) -> type[np.signedinteger[Any]]:
    """Smallest signed dtype holding codes ``0..k-1`` and ``MISSING`` (-1)."""
    if k < 2**7:
        return np.int8
    if k < 2**15:
        return np.int16
    return np.int32


def _concat(parts: list[npt.NDArray[Any]], dtype: Any) -> npt.NDArray[Any]:
    """Per-batch arrays as one array of ``dtype``, cast while copying (no full-size temporary)."""
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(parts, dtype=dtype, casting="unsafe")


class _Overlay:
    """A ``BitmapIndex`` that sees rule segments materialized earlier in the same build."""

    def __init__(self, inner: Any, extra: dict[str, AbstractBitMap]) -> None:
        self._inner = inner
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def segment(self, name: str) -> AbstractBitMap:
        hit = self._extra.get(name)
        return hit if hit is not None else self._inner.segment(name)


class SnapshotWriter:
    """Writes one staged directory; the manifest goes last, so a partial dir never opens."""

    leave: npt.NDArray[np.uint32] | None = None
    """Ordinals whose base list-segment memberships are not carried (users re-created)."""

    def __init__(
        self,
        *,
        staged: Path,
        registry: dict[str, DimensionSpec],
        resolved: ResolvedIds,
        base: Snapshot | None,
        mode: str,
        now: float,
        link_base: bool = False,
        number_layout: str | None = None,
    ) -> None:
        self.staged = staged
        self.number_layout = number_layout  # None: chosen per dimension (numbers.choose_layout)
        self.registry = registry
        self.r = resolved
        self.base = base
        self.mode = mode
        self.now = now
        self.n = len(resolved.all_ids)
        self.dims_meta: dict[str, dict[str, Any]] = {}
        self.segments_meta: dict[str, dict[str, Any]] = {}
        self._known_sums: dict[str, str] = {}
        self._num_users = int(np.count_nonzero(resolved.alive))
        if link_base:
            self._link_base()
            return
        self._write_ids()
        write_bitmaps(staged / UNIVERSE, [bitmap_from_mask(resolved.alive)])

    def _link_base(self) -> None:
        """Segments-only change: hard-link the base's immutable user files instead of rewriting
        them (a segment upload on 10M users then costs the segment, not the population)."""
        assert self.base is not None
        for src in self.base.path.iterdir():
            if src.name.startswith(MANIFEST) or src.name == SEGMENTS or not src.is_file():
                continue
            try:
                os.link(src, self.staged / src.name)
            except OSError:
                shutil.copy2(src, self.staged / src.name)
        self.dims_meta = dict(self.base.manifest["dims"])
        self._known_sums = {
            k: v for k, v in self.base.manifest.get("checksums", {}).items() if k != SEGMENTS
        }

    def _write_ids(self) -> None:
        """Ids by ordinal, plus (top 32 hash bits, ordinal) pairs sorted for lookups.

        Packing both into one uint64 lets ``np.sort`` (vectorized) replace a much slower
        ``argsort``; lookups compare the id bytes, so 32-bit collisions cost nothing.
        """
        ids = self.r.all_ids
        top = np.uint64(0xFFFFFFFF00000000)
        if self.r.hashes is not None:  # hashed once, by the upload's duplicate check
            packed = self.r.hashes & top
        else:
            packed = hash_ids(ids)
            packed &= top
        step = 1 << 20  # ordinals in slices: no 10M-entry int64 temporary
        for lo in range(0, self.n, step):
            packed[lo : lo + step] |= np.arange(lo, min(lo + step, self.n), dtype=np.uint64)
        packed.sort()
        halves = packed.view(U32)  # little-endian: (ordinal, key) pairs of uint32
        keys = np.ascontiguousarray(halves[1::2])
        order = np.ascontiguousarray(halves[0::2])
        del packed, halves
        offsets, data = offsets_and_data(ids)
        check_duplicates(keys, order, offsets, data)
        save_npy(self.staged / IDS_OFFSETS, offsets)
        with open(self.staged / IDS_DATA, "wb") as fh:
            fh.write(data.data)
        save_npy(self.staged / IDS_HASH, keys)
        save_npy(self.staged / IDS_SORTED, order)

    def _base_dim(self, name: str, type_: str) -> Any:
        if self.base is None or self.mode != "upsert":
            return None
        reader = self.base.dims.get(name)
        return reader if reader is not None and reader.type == type_ else None

    def write_dimensions(
        self, chunks: dict[str, ColumnChunks], dictionaries: dict[str, Dictionary]
    ) -> None:
        """All dimensions, two at a time (numpy sorts and file writes release the GIL)."""
        names = list(chunks)
        with ThreadPoolExecutor(max_workers=2) as pool:
            metas = list(
                pool.map(
                    lambda i: self.write_dimension(
                        names[i], f"d{i}", chunks[names[i]], dictionaries.get(names[i])
                    ),
                    range(len(names)),
                )
            )
        self.dims_meta = dict(zip(names, metas, strict=True))

    def write_dimension(
        self, name: str, slot: str, chunks: ColumnChunks, dictionary: Dictionary | None
    ) -> dict[str, Any]:
        """Final code column + bitmaps of one dimension; returns its manifest entry."""
        spec = self.registry[name]
        provided = chunks.concat_provided()
        base = self._base_dim(name, spec.type)
        # rows -> ordinals is the identity for a plain replace: no 10M-entry gather then
        rows = None if base is None and self._simple(provided) else self.r.row_ordinals[provided]
        meta: dict[str, Any] = {"slot": slot, "type": spec.type}
        if spec.type in ("category", "bool"):
            assert dictionary is not None
            k = len(dictionary.values)
            if rows is None:  # straight to the stored dtype (int8 for most): no int32 copy
                final = _concat(chunks.codes, code_dtype(k))
            else:
                new_codes = _concat(chunks.codes, np.int32)
                final = np.full(self.n, MISSING, dtype=code_dtype(k))
                if base is not None:
                    final[: self.r.n_base] = base.codes
                final[rows] = new_codes[provided]
                final[~self.r.alive] = MISSING
            valid = final >= 0
            if k <= DENSE_MAX:
                bitmaps = value_bitmaps(final, k) + [bitmap_from_mask(valid)]
            else:
                ords = np.flatnonzero(valid).astype(U32)
                bitmaps = group_bitmaps(ords, final[valid], k) + [bsi.bitmap_from_sorted(ords)]
            save_npy(self.staged / dim_file(slot, "codes.npy"), final)
            write_json(self.staged / dim_file(slot, "dict.json"), dictionary.values)
            meta["num_values"] = k
        elif spec.type == "number":
            bitmaps = self._number(slot, chunks, provided, rows, base, meta)
        else:
            assert dictionary is not None
            bitmaps = self._set(slot, chunks, provided, rows, base, len(dictionary.values))
            write_json(self.staged / dim_file(slot, "dict.json"), dictionary.values)
            meta["num_values"] = len(dictionary.values)
        meta["present"] = len(bitmaps[-1])
        offsets = write_bitmaps(self.staged / dim_file(slot, "bm.bin"), bitmaps)
        save_npy(self.staged / dim_file(slot, "bm.off.npy"), offsets)
        return meta

    def _number(
        self,
        slot: str,
        chunks: ColumnChunks,
        provided: Any,
        rows: Any,
        base: Any,
        meta: dict[str, Any],
    ) -> list[FrozenBitMap]:
        is_float = chunks.is_float or (base is not None and base.distinct.dtype.kind == "f")
        dtype = np.float64 if is_float else np.int64
        if rows is None and chunks.codes:
            small = None if is_float else bsi.int_ranks(chunks.codes, chunks.valid)
            if small is not None:  # ranks chunk by chunk, no 10M-entry int64 copies
                distinct, rank_of = small
                codes = np.full(self.n, MISSING, dtype=code_dtype(len(distinct)))
                at = 0
                for part, ok in zip(chunks.codes, chunks.valid, strict=True):
                    seg = codes[at : at + len(part)]
                    seg[ok] = rank_of[part[ok].astype(np.int64) - int(distinct[0])]
                    at += len(part)
                return self._number_files(slot, codes, distinct, dtype, meta)
            vals = _concat(chunks.codes, dtype)
            valid = np.concatenate(chunks.valid)
            return self._number_bitmaps(slot, vals, valid, dtype, meta)
        vals = np.zeros(self.n, dtype=dtype)
        valid = np.zeros(self.n, dtype=bool)
        if base is not None:
            bc = np.asarray(base.codes)
            bv = bc >= 0
            valid[: self.r.n_base] = bv
            vals[: self.r.n_base][bv] = base.distinct[bc[bv]]
        if chunks.codes:
            vals[rows] = np.concatenate(chunks.codes).astype(dtype)[provided]
            valid[rows] = np.concatenate(chunks.valid)[provided]
        valid &= self.r.alive
        return self._number_bitmaps(slot, vals, valid, dtype, meta)

    def _number_bitmaps(
        self, slot: str, vals: Any, valid: Any, dtype: Any, meta: dict[str, Any]
    ) -> list[FrozenBitMap]:
        distinct, ranks = bsi.encode_ranks(vals[valid])
        codes = np.full(self.n, MISSING, dtype=code_dtype(len(distinct)))
        codes[valid] = ranks
        return self._number_files(slot, codes, distinct, dtype, meta)

    def _number_files(
        self, slot: str, codes: Any, distinct: Any, dtype: Any, meta: dict[str, Any]
    ) -> list[FrozenBitMap]:
        """Codes and values files of a number dimension (ranks by ordinal); its bitmaps."""
        k = len(distinct)
        save_npy(self.staged / dim_file(slot, "codes.npy"), codes)
        save_npy(self.staged / dim_file(slot, "values.npy"), distinct.astype(dtype))
        if k and (self.number_layout or numbers.choose_layout(k)) == "range":
            bitmaps, extra = numbers.build_range(codes, k)  # from masks: no ordinals needed
        else:
            ords = np.flatnonzero(codes >= 0)
            ranks = codes[ords].astype(np.int32)
            bitmaps, extra = numbers.build(ords.astype(U32), ranks, k, self.number_layout)
        meta.update(extra, num_values=k, dtype=np.dtype(dtype).name)
        return bitmaps

    def _set(
        self, slot: str, chunks: ColumnChunks, provided: Any, rows: Any, base: Any, k: int
    ) -> list[FrozenBitMap]:
        if rows is None:  # lengths as held (int8 mostly), offsets straight in the stored dtype
            lengths = np.concatenate(chunks.lengths) if chunks.lengths else np.zeros(0, np.int8)
            total = sum(int(part.sum(dtype=np.int64)) for part in chunks.lengths)
            offsets = np.zeros(len(lengths) + 1, dtype=np.uint32 if total < 2**32 else np.int64)
            np.cumsum(lengths, dtype=offsets.dtype, out=offsets[1:])
            flat = _concat(chunks.codes, code_dtype(k))
        else:
            new_len = _concat(chunks.lengths, np.int64)
            new_off = np.zeros(len(new_len) + 1, dtype=np.int64)
            np.cumsum(new_len, out=new_off[1:])
            new_flat = _concat(chunks.codes, np.int32)
            offsets, flat, lengths = self._merge_sets(
                chunks, provided, rows, base, k, new_len, new_flat, new_off
            )
        total = int(offsets[-1])
        off_dtype = np.uint32 if total < 2**32 else np.int64
        save_npy(self.staged / dim_file(slot, "offsets.npy"), offsets.astype(off_dtype, copy=False))
        save_npy(self.staged / dim_file(slot, "codes.npy"), flat)
        owners = owners_of(offsets, lengths)
        present = bitmap_from_mask(lengths > 0)
        if k <= DENSE_MAX:
            return set_value_bitmaps(owners, flat, self.n, k) + [present]
        return group_bitmaps(owners, flat, k) + [present]

    def _simple(self, provided: npt.NDArray[np.bool_]) -> bool:
        """Rows map to ordinals 0..n-1, all carry the column, nobody was removed."""
        return self.mode != "upsert" and bool(provided.all()) and bool(self.r.alive.all())

    def _merge_sets(
        self,
        chunks: ColumnChunks,
        provided: Any,
        rows: Any,
        base: Any,
        k: int,
        new_len: Any,
        new_flat: Any,
        new_off: Any,
    ) -> tuple[Any, Any, Any]:
        """CSR of the final sets: base rows kept, provided rows replaced, removed rows empty."""
        lengths = np.zeros(self.n, dtype=np.int64)
        starts = np.zeros(self.n, dtype=np.int64)
        pieces = []
        shift = 0
        if base is not None:
            boff = np.asarray(base.offsets)
            lengths[: self.r.n_base] = np.diff(boff)
            starts[: self.r.n_base] = boff[:-1]
            pieces.append(np.asarray(base.codes))
            shift = int(boff[-1])
        pieces.append(new_flat)
        lengths[rows] = new_len[provided]
        starts[rows] = shift + new_off[:-1][provided]
        lengths[~self.r.alive] = 0
        offsets = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        combined = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
        return offsets, combined[gather].astype(code_dtype(k)), lengths

    # -- segments and manifest ----------------------------------------------------------

    def _ids_to_ordinals(self, ids: pa.Array) -> npt.NDArray[np.uint32]:
        idx = pc.index_in(ids, value_set=self.r.all_ids).drop_null()
        ords: npt.NDArray[np.uint32] = np.unique(idx.to_numpy(zero_copy_only=False).astype(U32))
        return ords[self.r.alive[ords]]

    def _carry(self, bm: AbstractBitMap) -> npt.NDArray[np.uint32]:
        assert self.base is not None
        ords = np.frombuffer(bm.to_array(), dtype=U32)
        if self.mode == "upsert":
            keep = self.r.alive[ords]
            if self.leave is not None:
                keep &= ~np.isin(ords, self.leave)
            return ords[keep]
        return self._ids_to_ordinals(self.base.user_ids(ords))

    def write_segments(self, pending: dict[str, PendingSegment], rules: dict[str, Rule]) -> None:
        """List segments (carried from base, then set here), then rule segments, manifest."""
        groups: dict[str, list[tuple[int | None, FrozenBitMap]]] = {}
        rule_segments: dict[str, Rule] = {}
        if self.base is not None:
            for name, meta in self.base.manifest["segments"].items():
                if meta.get("kind") == "rule" and name not in pending:
                    rule_segments[name] = parse(meta["rule"])
                    continue
                if name in pending and not pending[name].append:
                    continue
                kept = [
                    (exp, bsi.bitmap_from_sorted(self._carry(bm)))
                    for exp, bm in self.base.segments.groups(name)
                    if exp is None or exp > self.now
                ]
                groups[name] = kept
        for name, seg in pending.items():
            rule_segments.pop(name, None)
            groups.setdefault(name, [])
            for exp, ids in seg.groups:
                groups[name].append((exp, bsi.bitmap_from_sorted(self._ids_to_ordinals(ids))))
        for name, rule in rules.items():
            groups.pop(name, None)
            rule_segments[name] = rule
        blobs: list[FrozenBitMap] = []
        for name, gs in groups.items():
            self.segments_meta[name] = {"kind": "list", "rule": None, "groups": []}
            for exp, bm in gs:
                self.segments_meta[name]["groups"].append({"expires_at": exp, "size": len(bm)})
                blobs.append(bm)
        self._flush_segments(blobs)
        if rule_segments:
            self._materialize_rules(rule_segments, blobs)
        self._write_manifest(final=True)

    def _flush_segments(self, blobs: list[FrozenBitMap]) -> None:
        offsets = write_bitmaps(self.staged / SEGMENTS, blobs)
        i = 0
        for meta in self.segments_meta.values():
            for g in meta["groups"]:
                g["offset"], g["length"] = int(offsets[i]), int(offsets[i + 1] - offsets[i])
                i += 1

    def _materialize_rules(self, rules: dict[str, Rule], blobs: list[FrozenBitMap]) -> None:

        self._write_manifest(final=False)
        index = _Overlay(Snapshot(self.staged).index, {})
        for name, rule in rules.items():
            bm = FrozenBitMap(evaluate(rule, index) & index.universe(), optimize=False)
            index._extra[name] = bm
            self.segments_meta[name] = {
                "kind": "rule",
                "rule": to_text(rule),
                "groups": [{"expires_at": None, "size": len(bm)}],
            }
            blobs.append(bm)
        self._flush_segments(blobs)

    def _write_manifest(self, *, final: bool) -> None:
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": None,
            "created_at": dt.datetime.fromtimestamp(self.now, dt.UTC).isoformat(),
            "mode": self.mode,
            "base_version": self.base.version if self.base is not None else None,
            "num_users": self._num_users,
            "num_ordinals": self.n,
            "registry": registry_to_json(self.registry),
            "dims": self.dims_meta,
            "segments": self.segments_meta,
        }
        if final:
            files = [
                p
                for p in sorted(self.staged.iterdir())
                if p.is_file()
                and not p.name.startswith(MANIFEST)
                and p.name not in self._known_sums
            ]
            with ThreadPoolExecutor(max_workers=2) as pool:
                sums = list(pool.map(file_checksum, files))
            checksums = dict(self._known_sums)
            checksums.update({p.name: c for p, c in zip(files, sums, strict=True)})
            manifest["checksums"] = dict(sorted(checksums.items()))
        tmp = self.staged / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False))
        tmp.replace(self.staged / MANIFEST)
