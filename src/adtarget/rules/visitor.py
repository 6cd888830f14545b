"""The one way to walk a rule: ``visit_<Node>`` methods, dispatched on the node's class.

Why a shared visitor (the shape of sqlglot's and Ibis's compilers): the evaluators, the
formatters, validation and the decision index each walk the same ten node types. With a chain
of ``isinstance`` checks per walker, a node type added to ``ast.py`` and not taught to one of
them fell through to whatever that walker did last. Here a walker names the nodes it handles;
any other node — a new type it was not taught, or an object that is not a rule node at all —
raises ``UnknownRuleNode`` naming the walker and the node, never a silent default.

Dispatch is a dict lookup by exact class, built once per visitor class, so it costs about as
much as the first ``isinstance`` of the old chains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from adtarget.rules.ast import NODE_TYPES, Rule, UnknownRuleNode

__all__ = ["RuleVisitor", "UnknownRuleNode"]

R = TypeVar("R")


class RuleVisitor(Generic[R]):
    """Base class of every rule walker: define ``visit_And``, ``visit_Compare``, ... .

    ``visit(node, *args)`` calls ``self.visit_<ClassName>(node, *args)``. Leaves that share
    handling may point several names at one method (``visit_HasAny = visit_HasAll = _set``).
    """

    _methods: ClassVar[dict[type, Callable[..., Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._methods = {
            node_type: method
            for node_type in NODE_TYPES
            if (method := getattr(cls, f"visit_{node_type.__name__}", None)) is not None
        }

    def visit(self, node: Rule, *args: Any) -> R:
        """Dispatch ``node`` to its ``visit_<Node>`` method; ``UnknownRuleNode`` if none."""
        method = self._methods.get(type(node))
        if method is None:
            raise UnknownRuleNode(node, walker=type(self).__name__)
        result: R = method(self, node, *args)
        return result
