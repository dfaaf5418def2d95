"""Placeholder: the jevt.* field class (being written)."""

from sensor.engine.fields.base import FieldClass

CLASS = FieldClass("jevt", "k8s_audit", "", ())
