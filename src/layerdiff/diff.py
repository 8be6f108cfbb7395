"""The diff subsystem's interfaces: options for applying and for computing layers.

Mirrors containerd's ``diff/diff.go``: what an applier is asked to do, independent of
where the bytes come from or how they reach it.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from layerdiff.compression import Compression

if TYPE_CHECKING:  # processors reads config, which reads these options
    from layerdiff.cancel import CancelToken
    from layerdiff.processors import ProcessorRegistry


class WhiteoutMode(enum.Enum):
    """How whiteouts in a layer are written to the target."""

    #: Whiteouts delete what they name; the target is a plain directory tree.
    NAIVE = "naive"
    #: The target is an overlayfs upperdir: whiteouts become 0/0 character devices and
    #: opaque directories carry the ``trusted.overlay.opaque`` (or ``user.overlay.opaque``) xattr.
    OVERLAY = "overlay"
    #: The target is an aufs branch: whiteout files are written as they stand in the layer.
    AUFS = "aufs"


@dataclass(frozen=True)
class ApplyLimits:
    """Bounds on what one layer may make layerdiff do; past one, ``LimitExceededError``.

    The defaults are far above real layers and far below what would fill a disk or run
    forever on a hostile one. ``None`` lifts a limit.
    """

    #: Uncompressed bytes of the layer (a tar bomb, a layer that never ends).
    max_layer_bytes: int | None = 256 << 30
    #: Entries in the layer.
    max_entries: int | None = 4_000_000
    #: One PAX or GNU long-name record; Go's (and so containerd's) hard limit is 1 MiB.
    max_header_bytes: int = 1 << 20
    #: One xattr value (the kernel refuses more than 64 KiB).
    max_xattr_bytes: int = 64 << 10


@dataclass(frozen=True)
class ApplyOptions:
    """What an apply should do beyond streaming the layer onto the target.

    ``parents`` are the lower directories of an overlay upperdir, nearest first; their
    directory metadata is copied onto parent directories the layer does not carry, and in
    overlay mode they form the merged view that paths are resolved in.

    ``strict_oci`` switches from containerd 1.7's behaviour to the OCI image-spec's where
    the two differ (see docs/semantics.md): whiteouts only hide lower layers' files, and
    times before 1970 are kept instead of being clamped to the epoch.

    ``same_owner`` applies the uid/gid of entries; ``None`` means "when running as root".

    ``limits`` bound the layer's size, entries, headers and xattrs (``ApplyLimits``).
    ``cancel``: when it fires, external stream processors are stopped at once (the
    reads of the source are where the caller checks it).

    ``processors`` turn a blob of the media type given to ``apply_layer`` into plain tar
    (``None``: the built-in compression handler only); ``payloads`` are the bytes an
    external processor gets on file descriptor 3, by processor ID (containerd sends the
    serialized ``google.protobuf.Any`` of ``ApplyRequest.payloads[ID]``). Both are unused
    when no media type is given. See docs/processors.md.
    """

    mode: WhiteoutMode = WhiteoutMode.NAIVE
    userxattr: bool = False
    parents: Sequence[str | os.PathLike[str]] = field(default_factory=tuple)
    strict_oci: bool = False
    same_owner: bool | None = None
    processors: ProcessorRegistry | None = None
    payloads: Mapping[str, bytes] = field(default_factory=dict)
    limits: ApplyLimits = field(default_factory=ApplyLimits)
    cancel: CancelToken | None = None


@dataclass(frozen=True)
class DiffOptions:
    """What a diff writes, and how it finds the changes.

    ``compression`` and ``level``: gzip (the default, as containerd), zstd or none; see
    ``layerdiff.compression.StreamCompressor`` for the levels.

    ``source_date_epoch`` (seconds): modification times after it are written as it, for
    reproducible layers (containerd 2.x's ``WithSourceDateEpoch``).

    ``upper_overlay``: the upper directory is an overlayfs upperdir and the lower ones its
    lowerdirs, nearest first; the changes are read from the upperdir alone.
    ``userxattr``: that overlay keeps its markers in ``user.overlay.*`` xattrs.
    """

    compression: Compression = Compression.GZIP
    level: int | None = None
    source_date_epoch: int | None = None
    upper_overlay: bool = False
    userxattr: bool = False
