"""Placeholder: the dataset command is being written (see the open issues)."""
