"""Placeholder (being written)."""

CONFIG_KEYS = ()
