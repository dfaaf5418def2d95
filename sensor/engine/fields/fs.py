"""Placeholder: the fs.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("fs", "syscall", "", ())
