"""What an index rebuild can reuse from the previous one, so a catalog change costs what changed.

Why: every rebuild re-reads all live line items. Without this cache most of a rebuild went to
work whose inputs had not changed: turning stored rule JSON back into ASTs (≈ 45% of the load at
10,000 line items), inlining segments, decoding JSON columns, building the ``LiveLineItem`` and
its ``Facts``, and the DNF and read-set of each rule. With it, an unchanged line item costs a few
dictionary hits.

Correctness comes from the keys, not from discipline elsewhere:
- a parsed rule is keyed by the *stored text itself* (the rule JSON as the database returns it,
  or the rule text), not by the row's ``version``, so a change that bypasses the command layer
  (a raw ``UPDATE``) can never serve a stale rule;
- inlined segments are keyed by the parsed rule under the state of *all* rule-based segments
  (their stored text): editing any segment re-expands every rule that references one;
- a ``LiveLineItem`` is keyed by every column the loader read for it, its creatives and its
  resolved rule; DNF, read-sets and ``Facts`` by the object they derive from (identity, with
  the object pinned by the entry, so its ``id`` cannot be reused while the entry lives).
Values are immutable or never mutated after creation (ASTs, conjunction lists, frozen
dataclasses), so the old and the new index can share them. Bounded: an entry not used by one
rebuild is dropped at the next. Only ``IndexHolder`` rebuilds use a cache, under its rebuild
lock, so there is no locking here.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from adtarget.decision.index import CompiledRule, Facts, compile_item_rule, facts_of
from adtarget.decision.models import LiveLineItem
from adtarget.rules.ast import Rule, segment_names

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

_MISSING: Any = object()


class _TwoGenerations(Generic[K, V]):
    """A memo that keeps what the current and the previous rebuild used, nothing older."""

    def __init__(self) -> None:
        self._old: dict[K, V] = {}
        self._new: dict[K, V] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: K, make: Callable[[], V]) -> V:
        # three hashes of ``key`` at most: keys are row tuples, rehashed on every lookup
        value = self._new.get(key, _MISSING)
        if value is not _MISSING:
            self.hits += 1
            return value  # type: ignore[no-any-return]
        value = self._old.pop(key, _MISSING)
        if value is _MISSING:
            self.misses += 1
            value = make()  # an exception caches nothing: retried next rebuild
        else:
            self.hits += 1
        self._new[key] = value
        return value  # type: ignore[no-any-return]

    def rotate(self) -> None:
        """Start a rebuild: what the last one used becomes the only thing kept for reuse."""
        self._old, self._new = self._new, {}

    def clear(self) -> None:
        self._old, self._new = {}, {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


class _ByIdentity(Generic[T, V]):
    """A ``_TwoGenerations`` keyed by object identity; each entry pins its key object."""

    def __init__(self) -> None:
        self.memo: _TwoGenerations[int, tuple[T, V]] = _TwoGenerations()

    def get(self, obj: T, derive: Callable[[T], V]) -> V:
        entry = self.memo.get(id(obj), lambda: (obj, derive(obj)))
        if entry[0] is not obj:  # unreachable while entries pin their keys; cheap insurance
            return derive(obj)
        return entry[1]


class RebuildCache:
    """Parsed rules, inlined segments, live line items, facts and compiled rules, kept across
    rebuilds of the decision index.

    Use: ``begin_rebuild()``, ``use_segments(...)``, then the loader's lookups, then pass
    ``compiled`` and ``facts`` to ``LineItemIndex`` (``IndexHolder`` does all of this).
    """

    def __init__(self) -> None:
        self._parsed: _TwoGenerations[str, Rule] = _TwoGenerations()
        self._values: _TwoGenerations[tuple[str, Hashable], Any] = _TwoGenerations()
        self._refs: _ByIdentity[Rule, bool] = _ByIdentity()
        self._expanded: _ByIdentity[Rule, Rule] = _ByIdentity()
        self._compiled: _ByIdentity[Rule, CompiledRule] = _ByIdentity()
        self._facts: _ByIdentity[LiveLineItem, Facts] = _ByIdentity()
        self._segments_state: Hashable = _MISSING

    def begin_rebuild(self) -> None:
        """Mark a new rebuild: what the last one used stays reusable, anything older goes."""
        for memo in self._memos():
            memo.rotate()

    def use_segments(self, segments_state: Hashable) -> None:
        """The fingerprint of every rule-based segment for this rebuild; a change drops every
        segment expansion (any segment edit re-inlines every rule that references one)."""
        if segments_state != self._segments_state:
            self._expanded.memo.clear()
            self._segments_state = segments_state

    def parsed(self, stored: str, parse: Callable[[], Rule]) -> Rule:
        """The AST of a stored rule (``stored`` is its exact stored text, prefixed by kind)."""
        return self._parsed.get(stored, parse)

    def value(self, kind: str, key: Hashable, make: Callable[[], T]) -> T:
        """Any other immutable value derived only from ``key`` (decoded columns, whole
        ``LiveLineItem``s keyed by their row); ``kind`` keeps the namespaces apart."""
        result: T = self._values.get((kind, key), make)
        return result

    def references_segments(self, rule: Rule) -> bool:
        """Whether ``rule`` names any ``segment("...")`` (a walk of the tree, memoised)."""
        return self._refs.get(rule, lambda r: bool(segment_names(r)))

    def expanded(self, rule: Rule, expand: Callable[[Rule], Rule]) -> Rule:
        """``rule`` with rule-based segments inlined, under the current segments state."""
        return self._expanded.get(rule, expand)

    def compiled(self, rule: Rule | None) -> CompiledRule:
        """The DNF conjunctions and feature read-set of ``rule`` (``compile_item_rule``)."""
        if rule is None:
            return compile_item_rule(None)
        return self._compiled.get(rule, compile_item_rule)

    def facts(self, item: LiveLineItem) -> Facts:
        """``facts_of(item)``, memoised for line items reused from the previous rebuild."""
        return self._facts.get(item, facts_of)

    def stats(self) -> dict[str, int]:
        """Hits, misses and entries per memo (for tests and the freshness benchmark)."""
        out: dict[str, int] = {}
        for name, memo in zip(
            ("parsed", "values", "refs", "expanded", "compiled", "facts"),
            self._memos(),
            strict=True,
        ):
            out[f"{name}_hits"] = memo.hits
            out[f"{name}_misses"] = memo.misses
            out[f"{name}_entries"] = len(memo)
        return out

    def _memos(self) -> tuple[_TwoGenerations[Any, Any], ...]:
        return (
            self._parsed,
            self._values,
            self._refs.memo,
            self._expanded.memo,
            self._compiled.memo,
            self._facts.memo,
        )
