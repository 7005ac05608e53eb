"""The ``pbistream`` command line: a thin layer over the library.

Each command family lives in its own module and registers itself on :data:`main`.
"""

from __future__ import annotations

# Importing the modules registers their commands on `main`.
import pbistream.cli.bridge
import pbistream.cli.feeds  # noqa: F401
from pbistream.cli import dataset, demo, push, serve, spool, token  # noqa: F401
from pbistream.cli._group import main

__all__ = ["main"]

# After `dataset`: it adds `dataset forward` to that group.
from pbistream.cli import forward  # noqa: F401
