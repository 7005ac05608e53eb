"""Datasets, tables and columns: the shapes both the client and the server speak.

These are plain values. The server's strict checking of a create-dataset body (unknown
properties, name patterns, limits) lives in ``pbistream.server.definitions``; here
a table can be built from Power BI JSON leniently and turned back into it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pbistream.values import DataType, RowRules, parse_data_type, parse_field_type

__all__ = ["Column", "Dataset", "Mode", "Retention", "Schema", "Table"]


class Mode(enum.Enum):
    """A dataset's ``defaultMode``: Push stores rows, Streaming only feeds live tiles."""

    PUSH = "Push"
    STREAMING = "Streaming"
    PUSH_STREAMING = "PushStreaming"

    @classmethod
    def parse(cls, text: str) -> Mode:
        """Case-insensitive lookup (the docs spell it both ``PushStreaming`` and ``pushStreaming``).

        Raises:
            ValueError: Not one of Push, Streaming, PushStreaming.
        """
        for mode in cls:
            if mode.value.lower() == text.lower():
                return mode
        raise ValueError(f"unknown defaultMode {text!r}; use Push, Streaming or PushStreaming")

    @property
    def stores_rows(self) -> bool:
        """True when rows are kept (Push and PushStreaming), not only cached for tiles."""
        return self is not Mode.STREAMING

    @property
    def has_push_url(self) -> bool:
        """True for the modes a streaming Push URL can feed."""
        return self is not Mode.PUSH


class Retention(enum.Enum):
    """``defaultRetentionPolicy``: None keeps up to 5,000,000 rows, basicFIFO about 200,000."""

    NONE = "None"
    BASIC_FIFO = "basicFIFO"

    @classmethod
    def parse(cls, text: str) -> Retention:
        """Case-insensitive lookup (``basicFifo`` is seen in real traces).

        Raises:
            ValueError: Not None or basicFIFO.
        """
        for policy in cls:
            if policy.value.lower() == text.lower():
                return policy
        raise ValueError(f"unknown defaultRetentionPolicy {text!r}; use None or basicFIFO")


@dataclass(frozen=True, slots=True)
class Column:
    """One column: a name, a data type, and any other Power BI properties verbatim."""

    name: str
    data_type: DataType
    properties: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Power BI's column JSON."""
        return {"name": self.name, "dataType": self.data_type.value, **self.properties}


@dataclass(frozen=True, slots=True)
class Table:
    """One table: its columns, plus measures and other properties kept verbatim."""

    name: str
    columns: tuple[Column, ...]
    properties: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Table:
        """Build a table from Power BI JSON (lenient; the server checks strictly first).

        Raises:
            ValueError: A column has no name or an unknown dataType.
        """
        columns = tuple(
            Column(
                str(col["name"]),
                parse_data_type(col["dataType"]),
                {k: v for k, v in col.items() if k not in ("name", "dataType")},
            )
            for col in data.get("columns") or ()
        )
        props = {k: v for k, v in data.items() if k not in ("name", "columns", "rows")}
        return cls(str(data["name"]), columns, props)

    def to_json(self, *, with_columns: bool = True) -> dict[str, Any]:
        """Power BI's table JSON."""
        out: dict[str, Any] = {"name": self.name}
        if with_columns:
            out["columns"] = [c.to_json() for c in self.columns]
            out.update(self.properties)
        return out

    def column(self, name: str) -> Column | None:
        """The column called ``name`` (case-sensitive), if any."""
        return next((c for c in self.columns if c.name == name), None)

    def rules(
        self,
        *,
        unknown: Literal["error", "ignore"] = "error",
        naive: Literal["utc", "local"] = "utc",
        text_numbers: bool = True,
    ) -> RowRules:
        """The value rules for this table's rows (see :class:`~pbistream.values.RowRules`)."""
        return RowRules(
            ((c.name, c.data_type) for c in self.columns),
            unknown=unknown,
            naive=naive,
            text_numbers=text_numbers,
        )


class Schema(Table):
    """A table declared in code, for the client: ``Schema("RealTimeData", temp="Double")``.

    A convenience over :class:`Table`; field types may use the UI's names (Text, Number).
    """

    __slots__ = ()

    def __init__(
        self,
        name: str = "RealTimeData",
        fields: Mapping[str, str | DataType] | Iterable[tuple[str, str | DataType]] = (),
        /,
        **types: str | DataType,
    ) -> None:
        pairs = list(fields.items() if isinstance(fields, Mapping) else fields) + list(
            types.items()
        )
        columns = tuple(
            Column(n, t if isinstance(t, DataType) else parse_field_type(t)) for n, t in pairs
        )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "properties", {})


@dataclass(slots=True)
class Dataset:
    """A dataset as stored by the server.

    ``group_id`` is ``None`` for "My workspace" (``/v1.0/myorg``); ``push_key`` is the
    secret of the streaming Push URL (``None`` for plain Push datasets).
    """

    id: str
    name: str
    mode: Mode
    retention: Retention
    tables: list[Table]
    group_id: str | None = None
    push_key: str | None = None
    created_at: float = 0.0
    properties: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> Table | None:
        """The table called ``name`` (case-sensitive, as in Power BI), if any."""
        return next((t for t in self.tables if t.name == name), None)
