"""Tokens → a :class:`~pbistream.dax.syntax.Query`: a recursive-descent parser.

Statements (``DEFINE``, ``EVALUATE``, ``ORDER BY``, ``START AT``) are read by
plain recursive descent; expressions by precedence climbing (a Pratt parser),
with DAX's operator precedence, loosest first::

    ||   &&   NOT   = == <> < <= > >= IN   &   + -   * /   ^   unary - +

The parser knows syntax only: which functions exist and what their arguments
mean is the planner's business (:mod:`pbistream.dax.plan`).
"""

from __future__ import annotations

import re

from pbistream.dax.errors import DaxError
from pbistream.dax.lexer import Kind, Token, tokenize
from pbistream.dax.syntax import (
    Binary,
    BracketRef,
    Call,
    ColumnRef,
    Define,
    Evaluate,
    Expr,
    Literal,
    Name,
    Query,
    TableConstructor,
    TableRef,
    Unary,
    VarBlock,
)

__all__ = ["parse_expression", "parse_query"]

# Binding powers of the infix operators (higher binds tighter).
_INFIX = {
    "||": 1,
    "&&": 2,
    "=": 4,
    "==": 4,
    "<>": 4,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "IN": 4,
    "&": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
    "^": 8,
}
_NOT_POWER = 3  # NOT a = b is NOT (a = b); a && NOT b is a && (NOT b)
_UNARY_POWER = 7  # -2^2 is -(2^2), as in DAX; -a*b is (-a)*b
#: Deepest nesting of expressions; past it the query is refused (also keeps the
#: planner's and SQLite's own recursion, limited to 1,000 levels, far away).
MAX_DEPTH = 64
_STATEMENT_WORDS = frozenset({"EVALUATE", "DEFINE", "ORDER", "START", "MEASURE", "VAR", "RETURN"})
# DAX's typed DateTime literal: dt"YYYY-MM-DD", with "Thh:mm:ss" or " hh:mm:ss" after it.
_DT_LITERAL = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}):(\d{2}))?")


def parse_query(text: str) -> Query:
    """Parse a whole DAX query.

    Raises:
        DaxError: The text is not a DAX query this parser can read; the message
            names the token and its position.
    """
    return _Parser(tokenize(text)).query()


def parse_expression(text: str) -> Expr:
    """Parse one DAX expression (no ``EVALUATE``); used by tests and tools."""
    parser = _Parser(tokenize(text))
    expr = parser.expression()
    parser.expect_end()
    return expr


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    # --- token helpers ---------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.tokens[self.i]
        if token.kind is not Kind.END:
            self.i += 1
        return token

    def is_word(self, word: str, token: Token | None = None) -> bool:
        token = token or self.tok
        return token.kind is Kind.NAME and token.text.upper() == word

    def is_op(self, op: str) -> bool:
        return self.tok.kind is Kind.OP and self.tok.text == op

    def expect_op(self, op: str, context: str) -> Token:
        if not self.is_op(op):
            raise self.error(f"Expected '{op}' {context}, found {self.tok.describe()}.")
        return self.take()

    def expect_word(self, word: str, context: str) -> Token:
        if not self.is_word(word):
            raise self.error(f"Expected {word} {context}, found {self.tok.describe()}.")
        return self.take()

    def expect_end(self) -> None:
        if self.tok.kind is not Kind.END:
            raise self.error(f"The syntax for {self.tok.describe()} is incorrect here.")

    def error(self, message: str, token: Token | None = None) -> DaxError:
        return DaxError(message, (token or self.tok).position)

    # --- statements ------------------------------------------------------------------
    def query(self) -> Query:
        defines: list[Define] = []
        if self.is_word("DEFINE"):
            self.take()
            while self.is_word("MEASURE") or self.is_word("VAR"):
                defines.append(self.define())
            if not defines:
                raise self.error(
                    f"Expected MEASURE or VAR after DEFINE, found {self.tok.describe()}."
                )
        evaluates: list[Evaluate] = []
        while self.is_word("EVALUATE"):
            evaluates.append(self.evaluate())
        if not evaluates:
            raise self.error(
                f"A query starts with EVALUATE (or DEFINE), found {self.tok.describe()}."
            )
        self.expect_end()
        return Query(tuple(defines), tuple(evaluates))

    def define(self) -> Define:
        start = self.take()
        kind = start.text.upper()
        if kind == "MEASURE":
            table_token = self.take()
            if table_token.kind not in (Kind.TABLE, Kind.NAME):
                raise self.error(
                    f"Expected the measure's table after MEASURE, found {table_token.describe()}.",
                    table_token,
                )
            if self.tok.kind is not Kind.BRACKET:
                raise self.error(f"Expected the measure's [Name], found {self.tok.describe()}.")
            name = self.take().text
            self.expect_op("=", "after the measure's name")
            return Define("MEASURE", name, table_token.text, self.expression(), start.position)
        name_token = self.take()
        if name_token.kind is not Kind.NAME or name_token.text.upper() in _STATEMENT_WORDS:
            raise self.error(
                f"Expected a variable name after VAR, found {name_token.describe()}.", name_token
            )
        self.expect_op("=", "after the variable's name")
        return Define("VAR", name_token.text, None, self.expression(), start.position)

    def evaluate(self) -> Evaluate:
        start = self.take()
        table = self.expression()
        order: list[tuple[Expr, bool]] = []
        start_at: list[Expr] = []
        if self.is_word("ORDER"):
            self.take()
            self.expect_word("BY", "after ORDER")
            while True:
                expr = self.expression()
                ascending = True
                if self.is_word("ASC") or self.is_word("DESC"):
                    ascending = self.take().text.upper() == "ASC"
                order.append((expr, ascending))
                if not self.is_op(","):
                    break
                self.take()
            if self.is_word("START"):
                at = self.take()
                self.expect_word("AT", "after START")
                while True:
                    start_at.append(self.expression())
                    if not self.is_op(","):
                        break
                    self.take()
                if len(start_at) > len(order):
                    raise self.error(
                        f"START AT has {len(start_at)} values but ORDER BY only "
                        f"{len(order)} expressions.",
                        at,
                    )
        return Evaluate(table, tuple(order), tuple(start_at), start.position)

    # --- expressions -----------------------------------------------------------------
    def expression(self, min_power: int = 0) -> Expr:
        self.depth += 1
        try:
            return self._expression(min_power)
        finally:
            self.depth -= 1

    def _expression(self, min_power: int) -> Expr:
        if self.depth > MAX_DEPTH:
            raise self.error(f"The query nests expressions more than {MAX_DEPTH} levels deep.")
        left = self.prefix()
        chain = 0
        while True:
            token = self.tok
            op = token.text.upper() if token.kind in (Kind.OP, Kind.NAME) else ""
            if token.kind is Kind.NAME and op not in ("IN",):
                # NOT IN is not DAX; a bare name here is a missing operator.
                break
            power = _INFIX.get(op)
            if power is None or power <= min_power:
                break
            self.take()
            if op == "IN":
                right = self.prefix()
                if not isinstance(right, TableConstructor):
                    raise self.error("IN needs a list in braces, like IN {1, 2}.", token)
            else:
                # ^ is right-associative; the others associate to the left.
                right = self.expression(power - 1 if op == "^" else power)
            left = Binary(op, left, right, token.position)
            chain += 1
            if chain + self.depth > MAX_DEPTH:
                # a + b + c ... nests to the left: as deep for the planner as parentheses.
                raise self.error(
                    f"The query nests expressions more than {MAX_DEPTH} levels deep.", token
                )
        return left

    def prefix(self) -> Expr:
        token = self.take()
        kind = token.kind
        if kind is Kind.NUMBER:
            text = token.text
            is_int = text.isdigit()
            return Literal(int(text) if is_int else float(text), token.position)
        if kind is Kind.STRING:
            return Literal(token.text, token.position)
        if kind is Kind.TABLE:
            if self.tok.kind is Kind.BRACKET:
                return ColumnRef(token.text, self.take().text, token.position)
            return TableRef(token.text, token.position)
        if kind is Kind.BRACKET:
            return BracketRef(token.text, token.position)
        if kind is Kind.NAME:
            return self.named(token)
        if kind is Kind.OP:
            if token.text == "(":
                inner = self.expression()
                if self.is_op(","):
                    raise self.error("Row tuples like (a, b) are not supported.")
                self.expect_op(")", "to close the parenthesis")
                return inner
            if token.text in ("-", "+"):
                return Unary(token.text, self.expression(_UNARY_POWER), token.position)
            if token.text == "{":
                return self.table_constructor(token)
        raise self.error(f"The syntax for {token.describe()} is incorrect.", token)

    def named(self, token: Token) -> Expr:
        word = token.text.upper()
        if self.is_op("("):
            self.take()
            args: list[Expr] = []
            if not self.is_op(")"):
                while True:
                    args.append(self.expression())
                    if not self.is_op(","):
                        break
                    self.take()
            self.expect_op(")", f"to close {word}(")
            return Call(word, tuple(args), token.position)
        if self.tok.kind is Kind.BRACKET:
            return ColumnRef(token.text, self.take().text, token.position)
        if word == "DT" and self.tok.kind is Kind.STRING:
            return self.datetime_literal(token)
        if word == "NOT":
            return Unary("NOT", self.expression(_NOT_POWER), token.position)
        if word == "VAR":
            return self.var_block(token)
        if word in _STATEMENT_WORDS or word in ("BY", "AT", "IN"):
            raise self.error(f"The syntax for {token.describe()} is incorrect here.", token)
        return Name(token.text, token.position)

    def datetime_literal(self, start: Token) -> Expr:
        """``dt"2026-05-19"``, ``dt"2026-05-19T13:05:00"`` or ``dt"2026-05-19 13:05:00"``."""
        text = self.take()
        match = _DT_LITERAL.fullmatch(text.text)
        if match is None:
            raise self.error(
                f'dt"{text.text}" is not a DateTime literal; write dt"YYYY-MM-DD", '
                'dt"YYYY-MM-DDThh:mm:ss" or dt"YYYY-MM-DD hh:mm:ss".',
                text,
            )
        parts = [int(g) if g is not None else 0 for g in match.groups()]
        args = tuple(Literal(part, start.position) for part in parts)
        return Call("DATETIME", args, start.position)

    def var_block(self, start: Token) -> Expr:
        bindings: list[tuple[str, Expr]] = []
        while True:
            name = self.take()
            if name.kind is not Kind.NAME or name.text.upper() in _STATEMENT_WORDS:
                raise self.error(
                    f"Expected a variable name after VAR, found {name.describe()}.", name
                )
            self.expect_op("=", "after the variable's name")
            bindings.append((name.text, self.expression()))
            if self.is_word("VAR"):
                self.take()
                continue
            self.expect_word("RETURN", "after the VAR definitions")
            return VarBlock(tuple(bindings), self.expression(), start.position)

    def table_constructor(self, start: Token) -> Expr:
        values: list[Expr] = []
        if not self.is_op("}"):
            while True:
                values.append(self.expression())
                if not self.is_op(","):
                    break
                self.take()
        self.expect_op("}", "to close the list")
        return TableConstructor(tuple(values), start.position)
