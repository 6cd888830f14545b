"""The decision engine: features → index match → eligibility → caps → ranked decisions.

Why this shape: the index returns matches already in rank order (priority, -bid, id), so the
engine walks them and stops after ``limit`` servable items — the common request touches a handful
of line items beyond the bitmap work. Every store call goes through a circuit breaker and any
store failure becomes a *degraded* answer, never an exception:

- profiles down → context-only features, and only line items whose rules read nothing but
  request context may match (a rule on a profile dimension does not match: never a match the
  rules would not allow for this user);
- counters down → frequency-capped line items are not served (conservative), uncapped ones are;
- spend down → line items with a budget are not served (budgets cannot be checked); spend is
  read only for line items that have one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.store import SnapshotStore
from adtarget.catalog.repo import CatalogReader, SqlCatalogReader
from adtarget.decision.bits import Matches
from adtarget.decision.breaker import CircuitBreaker
from adtarget.decision.counters import CounterStore, cap_key
from adtarget.decision.eligibility import (
    SpendSource,
    ZeroSpend,
    budget_reason,
    has_budget,
    timing_reason,
    utc,
)
from adtarget.decision.explain import failed_part
from adtarget.decision.factory import counters_from_settings, profiles_from_settings
from adtarget.decision.index import DecisionIndex, LineItemIndex
from adtarget.decision.index_holder import IndexHolder
from adtarget.decision.models import (
    NO_ATTRIBUTES,
    Decision,
    DecisionRequest,
    DecisionResult,
    LiveLineItem,
    PodSpec,
    new_decision_id,
)
from adtarget.decision.node_breakers import NodeBreakers
from adtarget.decision.pods import PodFill
from adtarget.decision.profiles import ProfileStore, merge_features
from adtarget.decision.profiles_redis import UserRead
from adtarget.settings import Settings

if TYPE_CHECKING:
    from adtarget.decision.index_holder import RebuildHook

PREFETCH_MIN = 8
PREFETCH_PER_LIMIT = 4
"""When a capped item is about to serve, the counters of the capped items among the first
max(8, 4 × limit) matched line items are read with it in one round trip."""


class IndexSource(Protocol):
    """Anything holding the current index (``decision.index_holder.IndexHolder``)."""

    def current(self) -> DecisionIndex:
        """The index to answer this request with (one reference read)."""
        ...


class StaticIndex:
    """A fixed index (tests, benchmarks, embedding without a catalog)."""

    def __init__(self, index: LineItemIndex) -> None:
        self.index = index

    def current(self) -> LineItemIndex:
        """The fixed index."""
        return self.index


class _Request:
    """Per-request scratch state (kept off the engine so ``decide`` is thread-safe)."""

    __slots__ = (
        "degraded",
        "not_served",
        "pending",
        "counts",
        "all_counts",
        "counters_down",
        "spend_down",
    )

    def __init__(self) -> None:
        self.degraded = False
        self.all_counts = False  # counts holds every counter of the user (read with the profile)
        self.counters_down = False
        self.spend_down = False
        self.not_served: list[dict[str, Any]] | None = None
        self.pending: dict[str, int] = {}  # impressions this answer adds, per cap key
        self.counts: dict[str, int] = {}  # counter values read from the store, per cap key

    def reason(self, item: LiveLineItem, reason: str, detail: str) -> None:
        if self.not_served is not None:
            self.not_served.append({"line_item_id": item.id, "reason": reason, "detail": detail})


class DecisionEngine:
    """Answers ``DecisionRequest``s; thread-safe; share one per process.

    Args:
        index_holder: gives the current ``LineItemIndex``.
        profiles: user features by id (snapshot or Redis).
        counters: frequency-cap counters.
        spend: delivered spend for budgets and pacing (``ZeroSpend`` when omitted).
        clock: current time as an aware datetime (tests pin it); ``decide(now=...)`` overrides.
        failure_threshold / cooldown_s: circuit breaker settings for each store.
        explain_max: at most this many ``not_served`` entries per explained request.
    """

    def __init__(
        self,
        *,
        index_holder: IndexSource,
        profiles: ProfileStore,
        counters: CounterStore,
        spend: SpendSource | None = None,
        clock: Callable[[], datetime] | None = None,
        failure_threshold: int = 3,
        cooldown_s: float = 2.0,
        breaker_clock: Callable[[], float] = time.monotonic,
        explain_max: int = 1000,
    ) -> None:
        self.index_holder = index_holder
        self.profiles = profiles
        self.counters = counters
        self.spend = spend if spend is not None else ZeroSpend()
        self.clock = clock
        self.explain_max = explain_max
        kw: dict[str, Any] = {
            "failure_threshold": failure_threshold,
            "cooldown_s": cooldown_s,
            "clock": breaker_clock,
        }
        self.profile_breaker = _breaker(profiles, "profiles", kw)
        self.counter_breaker = _breaker(counters, "counters", kw)
        self.spend_breaker = CircuitBreaker("spend", **kw)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        session_factory: sessionmaker[Session],
        spend: SpendSource,
        snapshot_store: SnapshotStore | None = None,
        poll_seconds: float | None = None,
        on_index_rebuild: RebuildHook | None = None,
        catalog: CatalogReader | None = None,
        index_hooks: dict[str, Any] | None = None,
    ) -> DecisionEngine:
        """The engine the service runs: stores picked by ``ADTARGET_PROFILE_STORE`` /
        ``ADTARGET_COUNTER_STORE`` (Redis at ``ADTARGET_REDIS_URL``), timeouts from
        ``store_timeout_ms``, ``spend`` handed in by the caller (the delivery log's
        ``DeliverySpend`` in the app), and an index that follows the catalog (read through
        ``catalog``, by default ``SqlCatalogReader(session_factory)``).
        """
        catalog = catalog if catalog is not None else SqlCatalogReader(session_factory)

        holder = IndexHolder.from_catalog(
            catalog,
            poll_seconds=poll_seconds if poll_seconds is not None else settings.index_poll_seconds,
            min_segment_size=settings.min_audience_size,
            freeze_gc=settings.index_freeze_gc,
            on_rebuild=on_index_rebuild,
            check_seconds=settings.index_check_seconds,
            **(index_hooks or {}),
        )
        counters = counters_from_settings(settings)
        engine = cls(
            index_holder=holder,
            profiles=profiles_from_settings(
                settings, snapshot_store, published=catalog.published_snapshot, counters=counters
            ),
            counters=counters,
            spend=spend,
        )
        holder.start()
        return engine

    def status(self) -> dict[str, Any]:
        """Readiness: index size/generation and each store's breaker state."""
        index = self.index_holder.current()
        return {
            "ok": True,
            "line_items": len(index),
            "index": index.version,
            "profiles": self.profile_breaker.state,
            "counters": self.counter_breaker.state,
            "spend": self.spend_breaker.state,
        }

    def close(self) -> None:
        """Stop the index refresh thread and release store connections."""
        for obj in (self.index_holder, self.profiles, self.counters):
            for name in ("stop", "close"):
                fn = getattr(obj, name, None)
                if callable(fn):
                    fn()

    # -- stores, behind breakers -----------------------------------------------------------

    def _profile(
        self, user_id: str, st: _Request, user: UserRead | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        if user is not None:  # read already, on the event loop (decision/redis_async.py)
            profile, version, counts = user
            if counts is not None:
                st.counts, st.all_counts = counts, True
            return profile, version
        with_counts = getattr(self.profiles, "lookup_user", None)
        if with_counts is not None:  # profile and every counter of the user in one round trip
            try:
                profile, version, counts = self.profile_breaker.call(partial(with_counts, user_id))
            except Exception:
                st.degraded = True
                return None, None
            if counts is not None:
                st.counts, st.all_counts = counts, True
            return profile, version
        lookup = getattr(self.profiles, "lookup", None)
        fetch: Callable[[], tuple[dict[str, Any] | None, str | None]]
        if lookup is not None:  # one snapshot handle for both (SnapshotProfileStore)
            fetch = partial(lookup, user_id)
        else:
            fetch = lambda: (self.profiles.get(user_id), self.profiles.version())  # noqa: E731
        try:
            found: tuple[dict[str, Any] | None, str | None] = self.profile_breaker.call(fetch)
        except Exception:  # any store failure: answer degraded, never raise
            st.degraded = True
            return None, None
        return found

    def _eligibility(
        self, item: LiveLineItem, now: datetime, st: _Request
    ) -> tuple[str, str] | None:
        why = timing_reason(item, now)
        if why is not None or not has_budget(item):
            return why
        if st.spend_down:
            return "budget", "spend unavailable"
        try:
            return self.spend_breaker.call(lambda: budget_reason(item, self.spend, now))
        except Exception:
            st.degraded = st.spend_down = True
            return "budget", "spend unavailable"

    def _cap_reason(
        self,
        item: LiveLineItem,
        keys: list[str],
        ts: float,
        st: _Request,
        ahead: Iterable[LiveLineItem],
        user_id: str,
    ) -> str | None:
        """Why a capped item may not serve (cap reached, counters down), else ``None``.

        Counters are read only when a capped item is about to serve (an answer whose items are
        all uncapped costs no counter round trip); that read also fetches the keys of the
        capped items among the next few candidates (``ahead``), so a walk past a capped-out
        item usually needs no second round trip. A store that can list a user's counters in one
        read (``user_counts``, SQLite) is asked once for all of them: a break that walks past
        several capped candidates then costs one read, not one per candidate.
        """
        if st.counters_down:
            return "counters unavailable"
        counts = st.counts
        missing = [] if st.all_counts else [k for k in keys if k not in counts]
        per_user = getattr(self.counters, "user_counts", None) if missing else None
        if per_user is not None:
            try:
                counts = st.counts = self.counter_breaker.call(partial(per_user, user_id, ts))
            except Exception:
                st.degraded = st.counters_down = True
                return "counters unavailable"
            st.all_counts, missing = True, []
        if missing:
            for other in ahead:
                if other.caps:
                    missing.extend(
                        k for c in other.caps if (k := cap_key(c, user_id, ts)) not in counts
                    )
            try:
                got = self.counter_breaker.call(lambda: self.counters.counts(missing, ts))
            except Exception:
                st.degraded = st.counters_down = True
                return "counters unavailable"
            counts.update(zip(missing, got, strict=True))
        pending = st.pending
        for cap, key in zip(item.caps, keys, strict=True):
            if counts.get(key, 0) + pending.get(key, 0) >= cap.count:
                return f"{cap.level} {cap.owner_id}: {cap.count} per {cap.window_seconds}s reached"
        return None

    def _record(
        self, served: list[tuple[LiveLineItem, list[str]]], ts: float, st: _Request
    ) -> set[int]:
        """Record the impressions; the ids of items another process capped out meanwhile.

        The read-then-record of a cap is not atomic across processes, but each ``INCR`` is:
        an item whose increment came back above its cap lost the race and is withdrawn, so
        decision processes sharing the counters never exceed a cap together; the increments
        of a withdrawn item are released, so its other caps do not count an unserved slot.
        """
        by_window: dict[int, list[str]] = {}
        owners: dict[int, list[tuple[int, int]]] = {}
        for item, keys in served:
            for cap, key in zip(item.caps, keys, strict=True):
                by_window.setdefault(cap.window_seconds, []).append(key)
                owners.setdefault(cap.window_seconds, []).append((item.id, cap.count))
        over: set[int] = set()
        for window, keys in by_window.items():
            try:
                counts = self.counter_breaker.call(partial(self.counters.record, keys, ts, window))
            except Exception:
                st.degraded = True
                continue
            for (item_id, limit), count in zip(owners[window], counts or (), strict=False):
                if count > limit:
                    over.add(item_id)
        if over:  # give back every slot a withdrawn item took, on all of its caps
            self._release([k for item, keys in served if item.id in over for k in keys], ts, st)
        return over

    def _release(self, keys: list[str], ts: float, st: _Request) -> None:
        try:
            self.counter_breaker.call(partial(self.counters.release, keys, ts))
        except Exception:
            st.degraded = True

    def record_served(self, items: Iterable[LiveLineItem], user_id: str, ts: float) -> None:
        """Count impressions of ``items`` served to ``user_id`` at ``ts`` in the frequency caps,
        through the same ``_record`` as ``decide``.

        Why: the forecast replays without the proposal only where it can differ from the replay
        with it (``decision/forecast.py``); until a user's answers part, the twin engine is
        told what the first one served instead of deciding it again.
        """
        served = [(it, [cap_key(c, user_id, ts) for c in it.caps]) for it in items if it.caps]
        if served:
            self._record(served, ts, _Request())

    # -- the request -----------------------------------------------------------------------

    def serve_matched(
        self,
        index: DecisionIndex,
        matched: Matches,
        user_id: str,
        ts: float,
        formats: frozenset[str] | None,
        single: str | None,
        limit: int,
        pod: PodSpec | None = None,
    ) -> list[tuple[LiveLineItem, int]]:
        """What ``decide`` serves once the match is known: ``(item, creative)`` in rank order,
        the frequency caps counted (``formats``/``single`` from ``formats_of``).

        Why public: the forecast replays logged requests whose profile, features and match it
        already holds (``decision/forecast.py``); it calls the same walk — eligibility, pods,
        creatives, caps, recording — without the profile read, the ``Decision`` objects and their
        ids, so the engine that decides is the engine that forecasts.
        """
        fill, limit = _break_of(pod, limit)
        return self._serve(
            index, matched, user_id, ts, None, formats, single, limit, fill, _Request(), None
        )

    def _serve(
        self,
        index: DecisionIndex,
        matched: Matches,
        user_id: str,
        ts: float,
        now_dt: datetime | None,
        formats: frozenset[str] | None,
        single: str | None,
        limit: int,
        pod: PodFill | None,
        st: _Request,
        context_keys: frozenset[str] | None,
    ) -> list[tuple[LiveLineItem, int]]:
        """Walk ``matched`` in rank order and pick up to ``limit`` servable items (``decide``'s
        hot path; ``context_keys``: the profile was unavailable, only rules reading nothing
        but these keys may serve). Their caps are recorded; an item another process capped out
        meanwhile is withdrawn."""
        explaining = st.not_served is not None
        served: list[tuple[LiveLineItem, list[str]]] = []
        picks: list[tuple[LiveLineItem, int]] = []
        items, facts = index.items, index.facts
        head = list(islice(matched, max(PREFETCH_MIN, PREFETCH_PER_LIMIT * limit)))
        walk: Iterable[int] = chain(head, islice(matched, len(head), None))
        for i, pos in enumerate(walk):
            full = len(picks) >= limit or (pod is not None and pod.full(len(picks)))
            if full and not explaining:
                break
            item = items[pos]
            if context_keys is not None and not index.rule_dims[pos] <= context_keys:
                st.reason(
                    item,
                    "targeting",
                    "profile unavailable: rule reads "
                    + ", ".join(sorted(index.rule_dims[pos] - context_keys)),
                )
                continue
            if pod is not None and not full:  # two dict lookups: before the eligibility work
                conflict = pod.conflict(item)
                if conflict is not None:
                    st.reason(item, *conflict)
                    continue
            lo, hi, slow, by_format, any_creative = facts[pos]
            if slow or not lo <= ts < hi:
                if now_dt is None:
                    now_dt = datetime.fromtimestamp(ts, UTC)
                why = self._eligibility(item, now_dt, st)
                if why is not None:
                    st.reason(item, *why)
                    continue
            if formats is None:
                creative = any_creative
            elif single is not None:
                creative = by_format.get(single)
            else:
                found = [by_format[f] for f in formats if f in by_format]
                creative = min(found) if found else None
            if creative is None:
                st.reason(
                    item,
                    "format",
                    "no creative in " + (", ".join(sorted(formats)) if formats else "any format"),
                )
                continue
            if full:
                st.reason(item, "rank", f"outranked ({'break full' if pod else f'limit {limit}'})")
                continue
            if pod is not None:
                picked = pod.creative(item, formats)
                if isinstance(picked, tuple):
                    st.reason(item, *picked)
                    continue
                creative = picked
            if item.caps:
                keys = [cap_key(c, user_id, ts) for c in item.caps]
                ahead = (items[p] for p in head[i + 1 :])
                capped = self._cap_reason(item, keys, ts, st, ahead, user_id)
                if capped is not None:
                    if pod is not None:
                        pod.skip("frequency_cap", capped)
                    st.reason(item, "frequency_cap", capped)
                    continue
                for k in keys:
                    st.pending[k] = st.pending.get(k, 0) + 1
                served.append((item, keys))
            if pod is not None:
                pod.add(item, creative)
            picks.append((item, creative))
        if pod is not None and picks and pod.below_minimum():  # nothing served or counted
            pod.short, picks, served = True, [], []
        if served:
            over = self._record(served, ts, st)
            if over:  # capped out by another process between our read and our increment
                picks = [p for p in picks if p[0].id not in over]
                if pod is not None and pod.lost(over):  # the rest is below min_duration
                    picks = []
                    self._release([k for it, ks in served if it.id not in over for k in ks], ts, st)
        return picks

    def decide(
        self, request: DecisionRequest, now: datetime | None = None, user: UserRead | None = None
    ) -> DecisionResult:
        """Answer one ad request (never raises for store failures; see module docstring).

        ``user``: the user's profile, version and counters when the caller read them already
        (the HTTP route reads them on the event loop, ``decision/redis_async.py``, exactly as
        the profile store's ``lookup_user`` would); else the engine reads them itself.

        Hot path: per candidate, the flight is two float compares on precomputed epoch bounds
        (``LineItemIndex.facts``) and the creative one dict lookup; the full eligibility check
        (with its aware datetime) runs only for items with dayparting or a budget, or to word
        a reason.
        """
        now_dt: datetime | None = None
        if now is None and self.clock is None:
            ts = time.time()
        else:
            now_dt = utc(now if now is not None else (self.clock() if self.clock else None))
            ts = now_dt.timestamp()
        index = self.index_holder.current()
        st = _Request()
        explaining = request.explain
        if explaining:
            st.not_served = []
        user_id = request.user_id
        profile, snapshot = self._profile(user_id, st, user)
        profile_down = st.degraded
        features = merge_features(profile, request.context)
        context_keys = frozenset(request.context) if profile_down else None
        formats, single = formats_of(request.formats)
        matched = index.match(features)
        pod, limit = _break_of(request.pod, request.limit)
        picks = self._serve(
            index, matched, user_id, ts, now_dt, formats, single, limit, pod, st, context_keys
        )
        decisions = [
            Decision(
                item.id,
                item.campaign_id,
                creative,
                item.priority,
                item.bid_cpm,
                new_decision_id(),
                item.advertiser_id,
                item.format_of(creative),
                item.attributes.get(creative, NO_ATTRIBUTES),
            )
            for item, creative in picks
        ]
        explain = None
        if st.not_served is not None:
            explain = self._explain(index, matched, features, st.not_served, profile_down)
        summary = pod.summary(len(decisions)) if pod is not None else None
        return DecisionResult(decisions, snapshot, st.degraded, explain, summary)

    def _explain(
        self,
        index: DecisionIndex,
        matched: Matches,
        features: Mapping[str, Any],
        not_served: list[dict[str, Any]],
        profile_down: bool,
    ) -> dict[str, Any]:
        out = not_served[: self.explain_max]
        hit = set(matched.tolist())
        for pos, item in index.live_positions():
            if len(out) >= self.explain_max:
                break
            if pos in hit:
                continue
            rule = item.rule
            detail = failed_part(index.explain_parts(pos), features) if rule is not None else ""
            if profile_down:
                detail += " (profile unavailable: context only)"
            out.append({"line_item_id": item.id, "reason": "targeting", "detail": detail})
        for li_id, reason, detail in index.not_live:
            if len(out) >= self.explain_max:
                break
            out.append({"line_item_id": li_id, "reason": reason, "detail": detail})
        total = len(index) - len(matched) + len(not_served) + len(index.not_live)
        return {"not_served": out, "truncated": len(out) < total}


def _break_of(pod: PodSpec | None, limit: int) -> tuple[PodFill | None, int]:
    """The break being filled and how many ads to pick: a pod's slots replace ``limit``."""
    if pod is None:
        return None, max(0, limit)
    return PodFill(pod), pod.slots


def formats_of(asked: tuple[str, ...] | None) -> tuple[frozenset[str] | None, str | None]:
    """The formats a request asks as a set (``None``: any), and the one format when only one
    is asked (one dict lookup per candidate instead of a scan)."""
    if asked is None:
        return None, None
    formats = frozenset(asked)
    return formats, asked[0] if len(formats) == 1 else None


def _breaker(store: object, name: str, kw: dict[str, Any]) -> Any:
    """The store's own per-node breakers (Redis, ``decision/node_breakers.py``) when it has
    them, so one failed cluster node degrades only its users; else one breaker for the store."""
    own = getattr(store, "breakers", None)
    if isinstance(own, NodeBreakers):
        own.configure(**kw)
        return own
    return CircuitBreaker(name, **kw)
