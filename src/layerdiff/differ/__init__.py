"""Differs on mounts: applying layers onto them and computing layers from them."""

from layerdiff.differ.apply import apply_to_mounts
from layerdiff.differ.compare import compare_mounts

__all__ = ["apply_to_mounts", "compare_mounts"]
