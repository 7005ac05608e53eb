"""The one error of the DAX package: what went wrong, and where in the query.

Power BI reports a DAX failure as ``Query (line, column) message``; every
:class:`DaxError` carries that position (1-based), so the endpoint can say which
function or token it refused and where.
"""

from __future__ import annotations

__all__ = ["DaxError", "Position"]

#: ``(line, column)``, both counted from 1, as Power BI prints them.
Position = tuple[int, int]


class DaxError(ValueError):
    """A query that cannot be read or is outside the supported subset.

    Attributes:
        message: What is wrong, naming the function or token.
        position: ``(line, column)`` of the offending token, 1-based.
    """

    def __init__(self, message: str, position: Position) -> None:
        self.message = message
        self.position = position
        super().__init__(f"Query ({position[0]}, {position[1]}) {message}")
