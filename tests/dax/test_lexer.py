"""The DAX scanner: quoting rules, comments, numbers and positions."""

from __future__ import annotations

import pytest

from pbistream.dax import DaxError
from pbistream.dax.lexer import Kind, tokenize


def kinds_and_texts(text: str) -> list[tuple[Kind, str]]:
    return [(t.kind, t.text) for t in tokenize(text)][:-1]


def test_quoted_names_strings_and_doubled_closers() -> None:
    assert kinds_and_texts("'My ''Table'''[Col]]x] \"say \"\"hi\"\"\"") == [
        (Kind.TABLE, "My 'Table'"),
        (Kind.BRACKET, "Col]x"),
        (Kind.STRING, 'say "hi"'),
    ]


def test_numbers_names_and_operators() -> None:
    assert kinds_and_texts("12 3.5 .5 1e3 2E-2 PERCENTILE.INC a_b <= <> == && || >=") == [
        (Kind.NUMBER, "12"),
        (Kind.NUMBER, "3.5"),
        (Kind.NUMBER, ".5"),
        (Kind.NUMBER, "1e3"),
        (Kind.NUMBER, "2E-2"),
        (Kind.NAME, "PERCENTILE.INC"),
        (Kind.NAME, "a_b"),
        (Kind.OP, "<="),
        (Kind.OP, "<>"),
        (Kind.OP, "=="),
        (Kind.OP, "&&"),
        (Kind.OP, "||"),
        (Kind.OP, ">="),
    ]


def test_comments_are_skipped_and_positions_count_lines() -> None:
    tokens = tokenize("// first\nEVALUATE -- note\n  /* a\nb */ 'T'")
    assert [(t.text, t.position) for t in tokens] == [
        ("EVALUATE", (2, 1)),
        ("T", (4, 6)),
        ("", (4, 9)),
    ]
    assert tokens[-1].kind is Kind.END


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("EVALUATE 'T", (1, 10), "never closed with '"),
        ("EVALUATE T[c", (1, 11), "never closed with ]"),
        ('ROW("a', (1, 5), 'never closed with "'),
        ("EVALUATE /* x", (1, 10), "*/"),
        ("EVALUATE\n  T @", (2, 5), "'@'"),
    ],
)
def test_errors_name_the_character_and_position(
    text: str, position: tuple[int, int], fragment: str
) -> None:
    with pytest.raises(DaxError) as caught:
        tokenize(text)
    assert caught.value.position == position
    assert fragment in caught.value.message
    assert str(caught.value).startswith(f"Query ({position[0]}, {position[1]}) ")
