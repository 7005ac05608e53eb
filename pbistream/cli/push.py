"""Placeholder: the push command is being written (see the open issues)."""
