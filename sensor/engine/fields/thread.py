"""Placeholder: the thread.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("thread", "syscall", "", ())
