"""Placeholder: the ka.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("ka", "k8s_audit", "", ())
