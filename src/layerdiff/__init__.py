"""layerdiff: apply container image layers onto file systems and compute them, as containerd."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from layerdiff.applier import apply_layer
    from layerdiff.comparer import diff_trees
    from layerdiff.compression import Compression
    from layerdiff.diff import ApplyOptions, DiffOptions, WhiteoutMode
    from layerdiff.errors import LayerdiffError
    from layerdiff.oci import Descriptor

__all__ = [
    "ApplyOptions",
    "Compression",
    "Descriptor",
    "DiffOptions",
    "LayerdiffError",
    "WhiteoutMode",
    "apply_layer",
    "diff_trees",
]
__version__ = "0.1.0"

#: Where each public name lives. They are imported on first use (PEP 562): importing
#: any ``layerdiff.*`` module runs this file, and the command line's start-up should not
#: pay for the applier when it computes a layer, nor for both when it prints its help.
_HOMES = {
    "ApplyOptions": "layerdiff.diff",
    "Compression": "layerdiff.compression",
    "Descriptor": "layerdiff.oci",
    "DiffOptions": "layerdiff.diff",
    "LayerdiffError": "layerdiff.errors",
    "WhiteoutMode": "layerdiff.diff",
    "apply_layer": "layerdiff.applier",
    "diff_trees": "layerdiff.comparer",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'layerdiff' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
