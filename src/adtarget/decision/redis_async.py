"""A user's profile and counters read on the event loop, pipelined per Redis node and batched
per loop turn, before the synchronous ``decide``.

Why: with Redis stores the decision route used to write the user's two ``HGETALL`` and block
the event loop until the reply came back (``redis_client.FastPath``): py-spy showed 36 % of
the loop's samples waiting in that read (2026-12-06 05:18), and each request cost Redis a read
and a write syscall of its own. Here each request queues its commands on an asyncio connection
to the node of its user's slot and awaits a future; one callback per loop turn writes every
request queued in that turn at once, and the replies (in order, RESP2, parsed by ``hiredis``)
resolve the futures as they arrive. The worker serves other requests during the round trip and
Redis answers a whole batch per read.

What stays with the synchronous path (``RedisProfileStore.lookup_user``, redis-py behind it):
anything unusual. ``read`` returns ``None`` — and the engine then reads the user itself, through
the node's breaker, with redis-py's redirects, slot-map refresh and bounded retries — when the
node's breaker is not closed, when the slot has no known owner, on an error reply (``MOVED``/
``ASK`` during a slot migration, ``TRYAGAIN``, ``CLUSTERDOWN``, ``LOADING``), a refused or
dropped connection (a dead master, a failover) or a reply later than the store timeout (the
node's connection is then aborted). So a failed node still degrades only its users, through its
own breaker, exactly as before; this path only ever answers from a reply it read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from adtarget.decision.profiles_redis import RedisProfileStore, UserRead

UNSUPPORTED = "unsupported"


def pack(*args: bytes | str) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Pending:
    """One request's replies being collected (``want`` of them, in order)."""

    __slots__ = ("future", "want", "replies", "deadline")

    def __init__(self, future: asyncio.Future[list[Any]], want: int, deadline: float) -> None:
        self.future = future
        self.want = want
        self.replies: list[Any] = []
        self.deadline = deadline


class NodeConnection(asyncio.Protocol):
    """One asyncio connection to one Redis node: requests queued in a loop turn are written in
    one ``transport.write``; replies are matched to requests in order (Redis answers in order
    on a connection)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        import hiredis

        self._loop = loop
        self._timeout = timeout
        self._parser = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._waiting: deque[_Pending] = deque()
        self._flush_armed = False
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.writes = 0  # how many writes carried the requests (batching is visible in tests)
        self.ready: asyncio.Future[None] = loop.create_future()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if self.closed:  # aborted (timed out) while connecting
            transport.abort()  # type: ignore[attr-defined]
            return
        if not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = parser.gets()
            except Exception as exc:  # hiredis.ProtocolError: nothing more can be trusted
                self.abort(ConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.abort(ConnectionError("unexpected Redis reply"))
                return
            head = waiting[0]
            head.replies.append(reply)
            if len(head.replies) == head.want:
                waiting.popleft()
                if not head.future.done():
                    head.future.set_result(head.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("Redis connection closed"))

    # -- requests ----------------------------------------------------------------------------

    def send(self, payload: bytes, want: int) -> asyncio.Future[list[Any]]:
        """Queue ``payload`` (``want`` commands); the future gets their replies in order."""
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        if self.closed:
            future.set_exception(ConnectionError("Redis connection closed"))
            return future
        self._waiting.append(_Pending(future, want, time.monotonic() + self._timeout))
        self._out.append(payload)
        if not self._flush_armed:
            self._flush_armed = True
            self._loop.call_soon(self._flush)
        if self._timer is None:
            self._timer = self._loop.call_later(self._timeout, self._check_late)
        return future

    def _flush(self) -> None:
        self._flush_armed = False
        if not self._out or self.closed:
            return
        if self._transport is None:  # still connecting: flushed when connected
            self.ready.add_done_callback(lambda _f: self._flush())
            return
        out, self._out = self._out, []
        self.writes += 1
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _check_late(self) -> None:
        """One timer per connection, not one per request: the oldest request past its
        deadline aborts the connection (every request on it falls back)."""
        self._timer = None
        if self.closed or not self._waiting:
            return
        now = time.monotonic()
        head = self._waiting[0].deadline
        if now >= head:
            self.abort(TimeoutError("Redis reply later than the store timeout"))
            return
        self._timer = self._loop.call_later(head - now, self._check_late)

    def abort(self, exc: Exception) -> None:
        """Drop the connection, failing whatever is in flight with ``exc``."""
        self._fail(exc)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # retrieved: no "never retrieved" warning
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, deque()
        self._out = []
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(exc)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (nobody else may await it)."""
    if not future.cancelled():
        future.exception()


class AsyncUserReads:
    """``read(user_id)``: the user's profile, its version and counters (``UserRead``), read on
    the running event loop; ``None`` when the synchronous path must answer instead (see the
    module docstring). One ``NodeConnection`` per node (``host:port`` of the pool the store's
    ``FastPath`` would use), opened on first use; connections follow the loop they were made
    on (a new loop, as in tests, opens new ones)."""

    def __init__(self, store: RedisProfileStore, *, timeout: float) -> None:
        self._store = store
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: dict[Any, NodeConnection | str] = {}

    async def read(self, user_id: str) -> UserRead | None:
        """The user as ``RedisProfileStore.lookup_user`` would read them, or ``None``."""
        store = self._store
        try:
            plan = store.plan_read(user_id)
        except Exception:  # the version pointer unreadable, Redis emptied: the sync path says
            return None
        if plan is None:  # no live version: nothing to read, the sync path answers the same
            return None
        _version, key, commands = plan
        name, pool = store.target(key)
        if pool is None or not store.breakers.breaker(name).closed:
            return None
        conn = self._conns.get(pool)  # the common case: open, on this loop, no await
        if (
            not isinstance(conn, NodeConnection)
            or conn.closed
            or not conn.ready.done()
            or self._loop is not asyncio.get_running_loop()
        ):
            conn = await self._conn(pool)
            if conn is None:
                return None
        try:
            replies = await conn.send(b"".join(pack(*c) for c in commands), len(commands))
        except (OSError, TimeoutError, ConnectionError):
            return None
        for reply in replies:
            if isinstance(reply, Exception):  # MOVED, ASK, TRYAGAIN, CLUSTERDOWN, NOSCRIPT...
                return None
        store.breakers.breaker(name).succeeded()
        return store.decode_read(plan, replies)

    async def _conn(self, pool: Any) -> NodeConnection | None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._reset()
            self._loop = loop
        found = self._conns.get(pool)
        if isinstance(found, NodeConnection) and not found.closed:
            if found.ready.done():
                return found
            try:
                await found.ready
            except (OSError, TimeoutError, ConnectionError):
                return None
            return found
        if found == UNSUPPORTED:
            return None
        return await self._open(loop, pool)

    async def _open(self, loop: asyncio.AbstractEventLoop, pool: Any) -> NodeConnection | None:
        kw = pool.connection_kwargs
        if kw.get("ssl") or getattr(pool.connection_class, "__name__", "") not in (
            "Connection",
            "UnixDomainSocketConnection",
        ):
            self._conns[pool] = UNSUPPORTED  # TLS or a custom class: redis-py's path only
            return None
        # a slot-map refresh may bring new pools: forget the connections that died meanwhile
        self._conns = {
            p: c for p, c in self._conns.items() if not (isinstance(c, NodeConnection) and c.closed)
        }
        conn = NodeConnection(loop, self._timeout)
        self._conns[pool] = conn
        hello: list[bytes] = []
        if kw.get("password"):
            user = kw.get("username")
            hello.append(pack("AUTH", *([user] if user else []), kw["password"]))
        if kw.get("db"):
            hello.append(pack("SELECT", str(kw["db"])))
        # queued first, so it goes out before any request that finds this connection opening
        answered = conn.send(b"".join(hello), len(hello)) if hello else None
        if answered is not None:
            answered.add_done_callback(_retrieved)
        try:
            if kw.get("path"):
                opening = loop.create_unix_connection(lambda: conn, kw["path"])
            else:
                opening = loop.create_connection(
                    lambda: conn, kw.get("host", "127.0.0.1"), int(kw.get("port", 6379))
                )
            await asyncio.wait_for(opening, self._timeout * 5)
            if answered is not None:  # AUTH/SELECT answered OK before the first reply is used
                replies = await answered
                if any(isinstance(r, Exception) for r in replies):
                    raise ConnectionError("AUTH/SELECT refused")
        except (OSError, TimeoutError, ConnectionError) as exc:
            conn.abort(ConnectionError(str(exc) or type(exc).__name__))
            return None
        return conn

    def _reset(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            if isinstance(conn, NodeConnection):
                with contextlib.suppress(Exception):
                    conn.abort(ConnectionError("event loop changed"))

    def connections(self) -> list[NodeConnection]:
        """The connections open now (one per node read from)."""
        return [c for c in self._conns.values() if isinstance(c, NodeConnection) and not c.closed]

    def close(self) -> None:
        """Abort every connection (in flight requests fall back)."""
        self._reset()
