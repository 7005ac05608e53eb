"""Placeholder: the serve command is being written (see the open issues)."""
