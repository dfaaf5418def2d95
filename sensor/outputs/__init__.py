"""Output channels (being written)."""

CONFIG_KEYS = ()
