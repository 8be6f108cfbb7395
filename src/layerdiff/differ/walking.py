"""layerdiff's differ for the service: blobs from a content store, layers onto mounts.

Behaves as containerd's ``diff/apply`` applier and ``diff/walking`` comparer together:
what it cannot take (a media type no stream processor accepts, a layer format it does not
write) is refused with ``NotHandledError`` before anything is touched, so that the next
differ may try.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable

from layerdiff.cancel import CancellableReader, CancellableWriter, CancelToken
from layerdiff.compression import Compression
from layerdiff.content.ingest import VerifiedReader, commit_layer
from layerdiff.content.store import Writer
from layerdiff.diff import ApplyOptions, DiffOptions
from layerdiff.differ.apply import apply_to_mounts
from layerdiff.differ.compare import compare_mounts
from layerdiff.errors import CanceledError, NotHandledError, UnsupportedError
from layerdiff.oci import (
    MEDIA_TYPE_LAYER,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD,
    Descriptor,
)
from layerdiff.processors import ProcessorRegistry
from layerdiff.service import ApplyRequest, DiffRequest

#: What ``compare`` writes: containerd 1.7 writes tar and tar+gzip; zstd is layerdiff's.
LAYER_COMPRESSION = {
    MEDIA_TYPE_LAYER: Compression.NONE,
    MEDIA_TYPE_LAYER_GZIP: Compression.GZIP,
    MEDIA_TYPE_LAYER_ZSTD: Compression.ZSTD,
}


class WalkingDiffer:
    """Applies through the stream processors and the mount dispatch; compares by walking
    (or by reading an overlay upperdir when the mounts allow it)."""

    def __init__(
        self,
        processors: ProcessorRegistry,
        *,
        temp_root: str | None = None,
        apply_options: ApplyOptions | None = None,
    ) -> None:
        self._processors = processors
        self._temp_root = temp_root
        if temp_root is not None:
            # Made once, as containerd makes its tmpmounts folder when it starts.
            os.makedirs(temp_root, mode=0o700, exist_ok=True)
        self._apply_options = apply_options or ApplyOptions()

    def apply(self, request: ApplyRequest) -> Descriptor:
        """Apply the blob onto the mounts; the applied descriptor is the diffID's."""
        desc = request.desc
        try:
            self._processors.lookup(desc.media_type)
        except UnsupportedError as err:
            raise NotHandledError(str(err)) from None
        options = dataclasses.replace(
            self._apply_options, processors=self._processors, payloads=request.payloads,
            cancel=request.cancel,
        )
        with contextlib.closing(request.store.reader(desc.digest)) as blob:
            source = CancellableReader(
                VerifiedReader(blob, desc.digest, desc.size or None), request.cancel
            )
            try:
                return apply_to_mounts(
                    source, request.mounts, options, temp_root=self._temp_root,
                    media_type=desc.media_type, sync_fs=request.sync_fs,
                )
            except CanceledError:
                request.cancel.check()  # a deadline, not a cancel, if it was the clock
                raise

    def compare(self, request: DiffRequest) -> Descriptor:
        """Write the layer into the store; the descriptor names the committed blob."""
        media_type = request.media_type or MEDIA_TYPE_LAYER_GZIP
        compression = LAYER_COMPRESSION.get(media_type)
        if compression is None:
            raise NotHandledError(f"unsupported diff media type: {media_type}")
        options = DiffOptions(
            compression=compression, source_date_epoch=request.source_date_epoch
        )
        produce = self._producer(request, options, request.cancel)
        desc = commit_layer(request.store, produce, request.ref or None, request.labels)
        # containerd answers with the blob alone; the diffID is in the content's label.
        return Descriptor(media_type, desc.digest, desc.size)

    def _producer(
        self, request: DiffRequest, options: DiffOptions, cancel: CancelToken
    ) -> Callable[[Writer], Descriptor]:
        def produce(out: Writer) -> Descriptor:
            return compare_mounts(
                request.lower, request.upper, CancellableWriter(out, cancel), options,
                temp_root=self._temp_root,
            )

        return produce
