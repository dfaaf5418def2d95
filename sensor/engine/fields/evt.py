"""Placeholder: the evt.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("evt", "syscall", "", ())
