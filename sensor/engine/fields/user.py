"""Placeholder: the user.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("user", "syscall", "", ())
