"""One circuit breaker per Redis node, so a failed shard degrades only the users it holds.

Why: a Redis Cluster spreads users over its masters by the hash tag in their keys. With one
breaker per store, three failures on one dead master would open it for every user, and a third
of a fleet's failures would degrade all of it. Here a store asks ``node_of(client, key)`` for the
node of the user's slot and runs the command through that node's breaker; after a failover the
slot maps to the promoted replica, a different (closed) breaker, so its users recover as soon
as redis-py has refreshed its slot map. A single Redis is one node named ``""``.

The engine sees a ``NodeBreakers`` where it would put a store-wide breaker: ``call`` runs the
store call unguarded (the store guards each node itself) and ``state`` sums the nodes up.

Why our ``CircuitBreaker`` and not pybreaker (issue 21): the decision path calls a breaker two
to four times per request. Measured 2026-12-05 09:27 UTC on this box (``timeit``, closed
breaker around ``lambda: 1``, best of 5 × 200,000): ours 0.097 µs per call, pybreaker 1.4.1
1.153 µs (a lock and listener dispatch on every call), bare call 0.024 µs; ours takes no lock
while closed. Both give the same three states; ours is 100 lines with its own tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from adtarget.decision.breaker import CircuitBreaker

T = TypeVar("T")


class NodeBreakers:
    """``CircuitBreaker``s by node name, made on first use; thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._by_node: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()
        self.configure(failure_threshold=failure_threshold, cooldown_s=cooldown_s, clock=clock)

    def configure(
        self, *, failure_threshold: int, cooldown_s: float, clock: Callable[[], float]
    ) -> None:
        """Take the engine's breaker settings (breakers made later use them)."""
        self._kw = {
            "failure_threshold": failure_threshold,
            "cooldown_s": cooldown_s,
            "clock": clock,
        }
        with self._lock:
            self._by_node.clear()

    def breaker(self, node: str) -> CircuitBreaker:
        """The breaker of ``node`` (``""`` = a single Redis)."""
        found = self._by_node.get(node)
        if found is None:
            with self._lock:
                found = self._by_node.get(node)
                if found is None:
                    label = f"{self.name}@{node}" if node else self.name
                    found = self._by_node[node] = CircuitBreaker(label, **self._kw)  # type: ignore[arg-type]
        return found

    def guard(self, node: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` through ``node``'s breaker (raises ``CircuitOpen`` while it is open)."""
        return self.breaker(node).call(fn)

    def call(self, fn: Callable[[], T]) -> T:
        """For the engine: run ``fn`` as is; the store guards each node inside it."""
        return fn()

    def states(self) -> dict[str, str]:
        """Each known node's breaker state."""
        return {node: b.state for node, b in sorted(self._by_node.items())}

    @property
    def state(self) -> str:
        """``closed`` when every node is, ``open`` when every node is open, else ``partial``."""
        states = set(self.states().values())
        if not states or states == {"closed"}:
            return "closed"
        if states == {"open"}:
            return "open"
        return "partial"
