"""Placeholder: the demo command is being written (see the open issues)."""
