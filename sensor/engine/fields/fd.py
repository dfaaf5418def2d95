"""Placeholder: the fd.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("fd", "syscall", "", ())
