"""Placeholder: the container.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("container", "syscall", "", ())
