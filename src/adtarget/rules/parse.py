"""Text → AST: a hand-written recursive-descent parser for the public rule grammar.

Hand-written (not a parser generator) so every error can name the offending token, its line and
column, and suggest a fix; and so nesting depth is bounded before Python's own stack is at risk.

    expr      := term ('or' term)*
    term      := factor ('and' factor)*
    factor    := 'not' factor | '(' expr ')' | predicate
    predicate := DIM ('=' | '!=') VALUE | DIM ('<' | '<=' | '>' | '>=') NUMBER
               | DIM 'between' NUMBER 'and' NUMBER | DIM ['not'] 'in' '(' VALUE (',' VALUE)* ')'
               | DIM 'has' ('any' | 'all') '(' VALUE (',' VALUE)* ')' | DIM 'is' ['not'] 'missing'
               | 'segment' '(' STRING ')'
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal, NoReturn, cast

from adtarget.errors import RuleSyntaxError
from adtarget.rules.ast import (
    KEYWORDS,
    MAX_DEPTH,
    MAX_LIST_VALUES,
    MAX_NODES,
    MAX_TEXT_LENGTH,
    And,
    Between,
    Compare,
    CompareOp,
    HasAll,
    HasAny,
    InList,
    IsMissing,
    Not,
    Or,
    Rule,
    SegmentRef,
    Value,
    number_ok,
)

TokKind = Literal["ident", "string", "number", "op", "eof"]

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![A-Za-z0-9_.]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op><=|>=|!=|[=<>(),])
  | (?P<quote>["'])
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "\\": "\\",
    '"': '"',
    "'": "'",
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "0": "\0",
}
_OPERATOR_WORDS = ("between", "in", "not", "has", "is")


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokKind
    text: str  # source text (for strings: the decoded value)
    offset: int
    value: Value | None = None

    def is_kw(self, word: str) -> bool:
        return self.kind == "ident" and self.text.lower() == word

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of rule"
        if self.kind == "string":
            return f"string {self.text!r}"
        return f"'{self.text}'"


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text

    def position(self, offset: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, offset) + 1
        start = self.text.rfind("\n", 0, offset) + 1
        return line, offset - start + 1

    def fail(self, message: str, offset: int) -> NoReturn:
        line, col = self.position(offset)
        where = f"column {col}" if line == 1 else f"line {line}, column {col}"
        raise RuleSyntaxError(f"{message} at {where}", line=line, column=col)

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        text, pos, n = self.text, 0, len(self.text)
        while pos < n:
            m = _TOKEN_RE.match(text, pos)
            if m is None:
                if text[pos] == "-" or text[pos].isdigit():
                    end = pos + 1
                    while end < n and (text[end].isalnum() or text[end] in "._-+"):
                        end += 1
                    self.fail(f"invalid number '{text[pos:end]}'", pos)
                self.fail(f"unexpected character {text[pos]!r}", pos)
            kind = m.lastgroup
            if kind == "ws":
                pos = m.end()
            elif kind == "quote":
                tok, pos = self._string(pos)
                out.append(tok)
            elif kind == "number":
                raw = m.group()
                if len(raw) > 400:
                    self.fail("number is too long", pos)
                num: int | float = float(raw) if any(c in raw for c in ".eE") else int(raw)
                if not number_ok(num):
                    self.fail(f"number '{raw}' is out of range", pos)
                out.append(Token("number", raw, pos, num))
                pos = m.end()
            else:
                out.append(Token("ident" if kind == "ident" else "op", m.group(), pos))
                pos = m.end()
        out.append(Token("eof", "", n))
        return out

    def _string(self, start: int) -> tuple[Token, int]:
        text, quote = self.text, self.text[start]
        pos, parts = start + 1, []
        while True:
            end = pos
            while end < len(text) and text[end] not in (quote, "\\"):
                end += 1
            parts.append(text[pos:end])
            if end >= len(text):
                self.fail("unterminated string", start)
            if text[end] == quote:
                value = "".join(parts)
                return Token("string", value, start, value), end + 1
            esc = text[end + 1 : end + 2]
            if esc == "u":
                digits = text[end + 2 : end + 6]
                if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    self.fail("invalid \\u escape (need 4 hex digits)", end)
                parts.append(chr(int(digits, 16)))
                pos = end + 6
            elif esc in _ESCAPES:
                parts.append(_ESCAPES[esc])
                pos = end + 2
            else:
                self.fail(f"invalid escape '\\{esc}'", end)


class _Parser:
    def __init__(self, text: str) -> None:
        self.lexer = _Lexer(text)
        self.toks = self.lexer.tokens()
        self.i = 0
        self.nodes = 0

    # -- helpers -----------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def advance(self) -> Token:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def fail(self, message: str, tok: Token) -> NoReturn:
        self.lexer.fail(message, tok.offset)

    def pos(self, tok: Token) -> dict[str, int]:
        line, col = self.lexer.position(tok.offset)
        return {"line": line, "column": col}

    def count_node(self, tok: Token) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.fail(f"rule is too large (more than {MAX_NODES} nodes)", tok)

    def expect_op(self, op: str, context: str) -> Token:
        tok = self.peek()
        if tok.kind != "op" or tok.text != op:
            self.fail(f"expected '{op}' {context} but found {tok.describe()}", tok)
        return self.advance()

    # -- grammar -----------------------------------------------------------------------------
    def parse(self) -> Rule:
        rule = self.expr(0)
        tok = self.peek()
        if tok.kind != "eof":
            self.fail(f"unexpected {tok.describe()} (expected 'and', 'or' or end of rule)", tok)
        return rule

    def expr(self, depth: int) -> Rule:
        first = self.peek()
        items = [self.term(depth)]
        while self.peek().is_kw("or"):
            self.advance()
            items.append(self.term(depth))
        if len(items) == 1:
            return items[0]
        self.count_node(first)
        return Or(tuple(items), **self.pos(first))

    def term(self, depth: int) -> Rule:
        first = self.peek()
        items = [self.factor(depth)]
        while self.peek().is_kw("and"):
            self.advance()
            items.append(self.factor(depth))
        if len(items) == 1:
            return items[0]
        self.count_node(first)
        return And(tuple(items), **self.pos(first))

    def factor(self, depth: int) -> Rule:
        tok = self.peek()
        if depth >= MAX_DEPTH:
            self.fail(f"rule is nested too deeply (more than {MAX_DEPTH} levels)", tok)
        if tok.is_kw("not"):
            self.advance()
            self.count_node(tok)
            return Not(self.factor(depth + 1), **self.pos(tok))
        if tok.kind == "op" and tok.text == "(":
            self.advance()
            inner = self.expr(depth + 1)
            self.expect_op(")", f"to close '(' from column {self.pos(tok)['column']}")
            return inner
        if tok.is_kw("segment") and self.peek(1).text == "(":
            return self.segment()
        return self.predicate()

    def segment(self) -> Rule:
        tok = self.advance()
        self.advance()  # '('
        name = self.peek()
        if name.kind != "string":
            self.fail(f"expected a quoted segment name but found {name.describe()}", name)
        self.advance()
        self.expect_op(")", "after the segment name")
        self.count_node(tok)
        return SegmentRef(name.text, **self.pos(tok))

    def predicate(self) -> Rule:
        dim = self.peek()
        if dim.kind != "ident" or dim.text.lower() in KEYWORDS:
            self.fail(
                f"expected a dimension name, 'not', 'segment(...)' or '(' but found "
                f"{dim.describe()}",
                dim,
            )
        self.advance()
        self.count_node(dim)
        pos = self.pos(dim)
        op = self.peek()
        if op.kind == "op" and op.text in ("=", "!="):
            self.advance()
            value, vcol = self.value(f"after '{op.text}'")
            return Compare(dim.text, cast(CompareOp, op.text), value, value_columns=(vcol,), **pos)
        if op.kind == "op" and op.text in ("<", "<=", ">", ">="):
            self.advance()
            num, vcol = self.number(f"after '{op.text}'")
            return Compare(dim.text, cast(CompareOp, op.text), num, value_columns=(vcol,), **pos)
        if op.is_kw("between"):
            self.advance()
            low, lcol = self.number("after 'between'")
            and_tok = self.peek()
            if not and_tok.is_kw("and"):
                self.fail(f"expected 'and' in 'between' but found {and_tok.describe()}", and_tok)
            self.advance()
            high, hcol = self.number("after 'between ... and'")
            return Between(dim.text, low, high, value_columns=(lcol, hcol), **pos)
        if op.is_kw("not") and self.peek(1).is_kw("in"):
            self.advance()
            self.advance()
            values, cols = self.value_list("after 'not in'")
            return InList(dim.text, values, True, value_columns=cols, **pos)
        if op.is_kw("in"):
            self.advance()
            values, cols = self.value_list("after 'in'")
            return InList(dim.text, values, False, value_columns=cols, **pos)
        if op.is_kw("has"):
            self.advance()
            which = self.peek()
            if not (which.is_kw("any") or which.is_kw("all")):
                self.fail(
                    f"expected 'any' or 'all' after 'has' but found {which.describe()}", which
                )
            self.advance()
            values, cols = self.value_list(f"after 'has {which.text.lower()}'")
            cls = HasAny if which.is_kw("any") else HasAll
            return cls(dim.text, values, value_columns=cols, **pos)
        if op.is_kw("is"):
            self.advance()
            negated = self.peek().is_kw("not")
            if negated:
                self.advance()
            miss = self.peek()
            if not miss.is_kw("missing"):
                self.fail(f"expected 'missing' after 'is' but found {miss.describe()}", miss)
            self.advance()
            return IsMissing(dim.text, negated, **pos)
        hint = ""
        if op.kind == "ident":
            close = difflib.get_close_matches(op.text.lower(), _OPERATOR_WORDS, n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean '{close[0]}'?)"
        self.fail(
            f"expected an operator (=, !=, <, <=, >, >=, between, in, not in, has any, has all, "
            f"is missing) after '{dim.text}' but found {op.describe()}{hint}",
            op,
        )

    def value(self, context: str) -> tuple[Value, int]:
        tok = self.peek()
        col = self.pos(tok)["column"]
        if tok.kind in ("string", "number"):
            self.advance()
            assert tok.value is not None
            return tok.value, col
        if tok.is_kw("true") or tok.is_kw("false"):
            self.advance()
            return tok.is_kw("true"), col
        hint = ""
        if tok.kind == "ident":
            hint = f' (strings need quotes: "{tok.text}")'
        elif tok.kind == "op" and tok.text == "=":
            hint = " (use a single '=')"
        self.fail(
            f"expected a value (string, number, true or false) {context} but found "
            f"{tok.describe()}{hint}",
            tok,
        )

    def number(self, context: str) -> tuple[int | float, int]:
        tok = self.peek()
        if tok.kind != "number":
            self.fail(f"expected a number {context} but found {tok.describe()}", tok)
        self.advance()
        assert isinstance(tok.value, int | float)
        return tok.value, self.pos(tok)["column"]

    def value_list(self, context: str) -> tuple[tuple[Value, ...], tuple[int, ...]]:
        open_tok = self.expect_op("(", context)
        values: list[Value] = []
        cols: list[int] = []
        if self.peek().kind == "op" and self.peek().text == ")":
            self.advance()  # empty list: a validation error, reported with its column there
            return (), ()
        while True:
            v, c = self.value("in the list")
            values.append(v)
            cols.append(c)
            if len(values) > MAX_LIST_VALUES:
                self.fail(f"list has more than {MAX_LIST_VALUES} values", open_tok)
            tok = self.peek()
            if tok.kind == "op" and tok.text == ",":
                self.advance()
                continue
            if tok.kind == "op" and tok.text == ")":
                self.advance()
                return tuple(values), tuple(cols)
            self.fail(f"expected ',' or ')' in the list but found {tok.describe()}", tok)


def parse(text: str) -> Rule:
    """Parse rule text into an AST; raises ``RuleSyntaxError`` naming the token, line, column.

    Syntax only: dimension names, types and allowed values are checked by ``validate``.
    """
    if not isinstance(text, str):
        raise RuleSyntaxError(f"rule must be text, not {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise RuleSyntaxError(f"rule text is longer than {MAX_TEXT_LENGTH} characters")
    if not text.strip():
        raise RuleSyntaxError("rule is empty at column 1")
    return _Parser(text).parse()
