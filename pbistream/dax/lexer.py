"""DAX text → tokens, each with its ``(line, column)``.

A small hand-written scanner: DAX's quoting rules (``'Table'`` and ``[Column]``
with doubled closers, ``"text"`` with doubled quotes, three comment styles) are
easier to state as code than as regular expressions, and the scanner can say
exactly which character it refused and where.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pbistream.dax.errors import DaxError, Position

__all__ = ["Kind", "Token", "tokenize"]


class Kind(enum.Enum):
    """What a token is."""

    NAME = "name"  # an identifier: a function, keyword, unquoted table or variable
    TABLE = "table"  # 'Quoted Table'
    BRACKET = "bracket"  # [Column] or [Measure]
    STRING = "string"  # "text"
    NUMBER = "number"  # 12, 12.5, 1e3
    OP = "operator"  # ( ) , { } and the operators
    END = "end of query"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text (unquoted), and where it starts."""

    kind: Kind
    text: str
    position: Position

    def describe(self) -> str:
        """The token as an error message names it."""
        if self.kind is Kind.END:
            return "the end of the query"
        if self.kind is Kind.TABLE:
            return f"'{self.text}'"
        if self.kind is Kind.BRACKET:
            return f"[{self.text}]"
        if self.kind is Kind.STRING:
            return f'"{self.text}"'
        return f"'{self.text}'"


# Longest first, so "<=" is not read as "<" then "=".
_OPERATORS: tuple[str, ...] = ("&&", "||", "==", "<>", "<=", ">=", "(", ")", ",", "{", "}")
_OPERATORS += ("=", "<", ">", "+", "-", "*", "/", "^", "&")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_PART = _NAME_START | frozenset("0123456789.")
_DIGITS = frozenset("0123456789")
#: Most tokens in one query: keeps a statement within the databases' bound-parameter
#: limits (SQLite 32,766, PostgreSQL 65,535); real queries are a few hundred.
MAX_TOKENS = 20_000


def tokenize(text: str) -> list[Token]:
    """Split a DAX query into tokens, ending with one :attr:`Kind.END` token.

    Raises:
        DaxError: An unknown character, or an unclosed quote, bracket or comment.
    """
    return _Scanner(text).run()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.tokens: list[Token] = []

    def pos(self, index: int | None = None) -> Position:
        at = self.i if index is None else index
        return (self.line, at - self.line_start + 1)

    def advance_to(self, end: int) -> None:
        """Move to ``end``, counting the newlines passed."""
        chunk = self.text[self.i : end]
        newlines = chunk.count("\n")
        if newlines:
            self.line += newlines
            self.line_start = self.i + chunk.rindex("\n") + 1
        self.i = end

    def run(self) -> list[Token]:
        text, n = self.text, len(self.text)
        while True:
            self.skip_space_and_comments()
            if self.i >= n:
                self.tokens.append(Token(Kind.END, "", self.pos()))
                return self.tokens
            if len(self.tokens) >= MAX_TOKENS:
                raise DaxError(f"The query has more than {MAX_TOKENS:,} tokens.", self.pos())
            ch = text[self.i]
            if ch == "'":
                self.quoted("'", "'", Kind.TABLE, "table name")
            elif ch == "[":
                self.quoted("[", "]", Kind.BRACKET, "column name")
            elif ch == '"':
                self.quoted('"', '"', Kind.STRING, "string")
            elif ch in _DIGITS or (ch == "." and text[self.i + 1 : self.i + 2].isdigit()):
                self.number()
            elif ch in _NAME_START:
                end = self.i + 1
                while end < n and text[end] in _NAME_PART:
                    end += 1
                self.tokens.append(Token(Kind.NAME, text[self.i : end], self.pos()))
                self.advance_to(end)
            else:
                for op in _OPERATORS:
                    if text.startswith(op, self.i):
                        self.tokens.append(Token(Kind.OP, op, self.pos()))
                        self.advance_to(self.i + len(op))
                        break
                else:
                    raise DaxError(f"The character {ch!r} is not valid here.", self.pos())

    def skip_space_and_comments(self) -> None:
        text, n = self.text, len(self.text)
        while self.i < n:
            ch = text[self.i]
            if ch.isspace():
                self.advance_to(self.i + 1)
            elif text.startswith(("//", "--"), self.i):
                end = text.find("\n", self.i)
                self.advance_to(n if end < 0 else end)
            elif text.startswith("/*", self.i):
                end = text.find("*/", self.i + 2)
                if end < 0:
                    raise DaxError(
                        "The comment that starts here is never closed with */.", self.pos()
                    )
                self.advance_to(end + 2)
            else:
                return

    def quoted(self, opener: str, closer: str, kind: Kind, what: str) -> None:
        """Read a quoted token; a doubled closer stands for one closer character."""
        text, start = self.text, self.i
        parts: list[str] = []
        j = start + 1
        while True:
            end = text.find(closer, j)
            if end < 0:
                raise DaxError(
                    f"The {what} that starts with {opener} here is never closed with {closer}.",
                    self.pos(start),
                )
            parts.append(text[j:end])
            if text.startswith(closer * 2, end):
                parts.append(closer)
                j = end + 2
                continue
            self.tokens.append(Token(kind, "".join(parts), self.pos(start)))
            self.advance_to(end + 1)
            return

    def number(self) -> None:
        text, n, j = self.text, len(self.text), self.i
        while j < n and text[j] in _DIGITS:
            j += 1
        if j < n and text[j] == "." and j + 1 < n and text[j + 1] in _DIGITS:
            j += 1
            while j < n and text[j] in _DIGITS:
                j += 1
        if j < n and text[j] in "eE":
            k = j + 1
            if k < n and text[k] in "+-":
                k += 1
            if k < n and text[k] in _DIGITS:
                j = k
                while j < n and text[j] in _DIGITS:
                    j += 1
        self.tokens.append(Token(Kind.NUMBER, text[self.i : j], self.pos()))
        self.advance_to(j)
