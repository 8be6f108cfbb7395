"""Whiteout names of the OCI changeset format.

``.wh.NAME`` deletes NAME from the layers below; ``.wh..wh..opq`` hides everything the
layers below had in its directory. A whiteout whose NAME is empty, ``.`` or ``..`` would
reach its own directory or above it: containerd refuses those ("invalid whiteout name"),
and so do we (image-spec#1314).
"""

from __future__ import annotations

from layerdiff.errors import InvalidLayerError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


def validate_whiteout_name(base: str) -> None:
    """Raise ``InvalidLayerError`` if ``base`` is a whiteout naming no proper child."""
    if base == OPAQUE_MARKER or not base.startswith(WHITEOUT_PREFIX):
        return
    if base[len(WHITEOUT_PREFIX) :] in ("", ".", ".."):
        raise InvalidLayerError(f"invalid whiteout name: {base}")
