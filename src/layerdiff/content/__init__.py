"""Content stores: where layer blobs are read from and written to.

``LocalStore`` is a folder in containerd's layout (a containerd content root works as
it is); ``RemoteStore`` (``layerdiff.content.remote``) talks to containerd's Content
service. Both follow the ``Store`` protocol of ``layerdiff.content.store``.
"""

from layerdiff.content.filters import parse_filters
from layerdiff.content.local import LocalStore
from layerdiff.content.store import BlobReader, Info, Status, Store, Writer

__all__ = ["BlobReader", "Info", "LocalStore", "Status", "Store", "Writer", "parse_filters"]
