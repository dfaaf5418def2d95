"""Placeholder: the proc.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("proc", "syscall", "", ())
