"""Placeholder: the spool command is being written (see the open issues)."""
