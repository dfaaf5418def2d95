"""Placeholder: the group.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("group", "syscall", "", ())
