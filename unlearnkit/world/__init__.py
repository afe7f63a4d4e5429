"""The miniature world (generator) and loaders for TOFU-format data."""

from .generator import (
           ATTRIBUTES,
           QUICK,
           RELATED_QUICK,
           TEMPLATES,
           TOFU_SIZED,
           WORLDS,
           World,
           WorldConfig,
           make_related_world,
           make_world,
)
from .loaders import DataError, load_tofu, qa_dataset, validate_rows

__all__ = ["ATTRIBUTES", "QUICK", "TEMPLATES", "TOFU_SIZED", "WORLDS", "World", "WorldConfig", "make_world", "RELATED_QUICK", "make_related_world", "DataError",
           "load_tofu", "qa_dataset", "validate_rows"]
