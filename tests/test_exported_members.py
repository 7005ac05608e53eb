"""The public API is exactly what `__all__` lists, sorted, and each name is importable."""

from __future__ import annotations

import pbistream
import pbistream.client


def test_all_is_sorted_and_complete() -> None:
    for module in (pbistream, pbistream.client):
        exported = module.__all__
        assert exported == sorted(exported), module.__name__
        for name in exported:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_public_members_are_exported() -> None:
    public = {
        name
        for name, value in vars(pbistream).items()
        if not name.startswith("_")
        and not getattr(value, "__name__", "").startswith("pbistream.")
        and not isinstance(value, type(pbistream))
    }
    assert public - {"annotations", "version", "PackageNotFoundError"} <= set(pbistream.__all__)


def test_the_client_api_users_reach_for() -> None:
    for name in (
        "Client",
        "AsyncClient",
        "BatchOptions",
        "RetryOptions",
        "PacingOptions",
        "BufferOptions",
        "Schema",
        "ValidationError",
        "PbiStreamError",
    ):
        assert name in pbistream.__all__
    assert pbistream.Client.__module__ == "pbistream.client._sync"
