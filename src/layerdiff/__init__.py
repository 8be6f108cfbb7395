"""layerdiff: apply container image layers onto file systems and compute them, as containerd."""

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
