"""What a layer or an image does, without applying it: ``layerdiff inspect``.

``inspect_layer(source)`` reads one layer blob; ``inspect_image(image_source)`` reads an
image's layers in order against their flattened state (``Flattener``), so that each entry
is known as added or modified and the bytes later layers overwrite or delete are counted.
"""

from layerdiff.inspect.flatten import Flattener, Waste
from layerdiff.inspect.report import (
    CHANGES,
    SCHEMA_VERSION,
    Entry,
    ImageReport,
    LayerReport,
    directories,
    largest,
    layer_json,
)
from layerdiff.inspect.scan import EntryCounter, inspect_image, inspect_layer

__all__ = [
    "CHANGES",
    "SCHEMA_VERSION",
    "Entry",
    "EntryCounter",
    "Flattener",
    "ImageReport",
    "LayerReport",
    "Waste",
    "directories",
    "inspect_image",
    "inspect_layer",
    "largest",
    "layer_json",
]
