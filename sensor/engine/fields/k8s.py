"""Placeholder: the k8s.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("k8s", "syscall", "", ())
