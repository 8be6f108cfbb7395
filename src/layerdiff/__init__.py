"""layerdiff: apply container image layers onto file systems, as containerd does."""

from layerdiff.applier import apply_layer
from layerdiff.diff import ApplyOptions, WhiteoutMode
from layerdiff.errors import LayerdiffError
from layerdiff.oci import Descriptor

__all__ = ["ApplyOptions", "Descriptor", "LayerdiffError", "WhiteoutMode", "apply_layer"]
__version__ = "0.1.0"
