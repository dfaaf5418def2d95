"""Placeholder: the fdlist.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("fdlist", "syscall", "", ())
