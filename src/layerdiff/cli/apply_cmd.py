"""``layerdiff apply``: stream a layer onto a directory."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from layerdiff.applier import apply_layer, open_source
from layerdiff.cli import COMMANDS
from layerdiff.cli.config_args import layer_settings
from layerdiff.cli.mount_args import add_mount_arguments, mounts_from_args
from layerdiff.cli.output import EXIT_OK, print_descriptor
from layerdiff.cli.progress import CountingReader, Progress, file_total
from layerdiff.diff import ApplyOptions, WhiteoutMode
from layerdiff.errors import InvalidArgumentError, NotFoundError

if TYPE_CHECKING:
    from layerdiff.compression import Readable

EXAMPLES = """\
examples:
  layerdiff apply layer.tar.gz rootfs/
  curl -s URL | layerdiff apply --json - rootfs/
  layerdiff apply --mode overlay --parent lower1 --parent lower2 layer.tar.zst upper/
  layerdiff apply --store /var/lib/containerd/io.containerd.content.v1.content sha256:… rootfs/
  layerdiff apply --mount type=overlay,source=overlay,options=lowerdir=/l,upperdir=/u,workdir=/w \\
      layer.tar.gz
  layerdiff apply --config processors.toml --payload decrypt=key.bin \\
      --media-type application/vnd.oci.image.layer.v1.tar+gzip+encrypted layer.enc rootfs/
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``apply`` command."""
    apply = commands.add_parser(
        "apply",
        help=COMMANDS["apply"][1],
        description="Apply a layer onto DEST and print the applied descriptor.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply.set_defaults(run=run)
    apply.add_argument(
        "layer",
        metavar="LAYER",
        help="layer file, - for standard input, or with --store the blob's digest",
    )
    apply.add_argument(
        "dest", metavar="DEST", nargs="?", help="directory to apply the layer onto (or --mount)"
    )
    add_mount_arguments(apply, "", "apply onto these mounts instead of DEST")
    apply.add_argument(
        "--media-type",
        metavar="TYPE",
        help="the blob's media type: it picks the stream processors that turn it into tar "
        "(default: detect gzip/zstd from the bytes)",
    )
    apply.add_argument(
        "--config",
        metavar="FILE",
        help="a config file: its [stream_processors.ID] tables and [limits] (docs/serve.md)",
    )
    apply.add_argument(
        "--payload",
        action="append",
        default=[],
        metavar="ID=FILE",
        help="bytes for stream processor ID's file descriptor 3 (repeat)",
    )
    apply.add_argument(
        "--store",
        metavar="DIR",
        help="read LAYER by digest from this content store (containerd's layout); "
        "the blob's digest is checked as it is read",
    )
    apply.add_argument(
        "--mode",
        choices=[m.value for m in WhiteoutMode],
        default=WhiteoutMode.NAIVE.value,
        help="naive: whiteouts delete; overlay: DEST is an overlayfs upperdir; "
        "aufs: DEST is an aufs branch (default: naive)",
    )
    apply.add_argument(
        "--userxattr",
        action="store_true",
        help="overlay mode: mark opaque directories with user.overlay.opaque",
    )
    apply.add_argument(
        "--parent",
        action="append",
        default=[],
        metavar="DIR",
        help="a lower directory (repeat, nearest first) for parent metadata and lookups",
    )
    apply.add_argument(
        "--strict-oci",
        action="store_true",
        help="follow the OCI image-spec where containerd 1.7 differs (see docs/semantics.md)",
    )
    apply.add_argument("--json", action="store_true", help="print the descriptor as JSON")


def run(args: argparse.Namespace) -> int:
    """Apply the layer the arguments name."""
    mounts = mounts_from_args(args)
    if (mounts is None) == (args.dest is None):
        raise InvalidArgumentError("give either DEST or --mount/--mounts-json")
    processors, limits = layer_settings(args.config)
    options = ApplyOptions(
        mode=WhiteoutMode(args.mode),
        userxattr=args.userxattr,
        parents=tuple(args.parent),
        strict_oci=args.strict_oci,
        processors=processors,
        payloads=_payloads(args.payload),
        limits=limits,
    )
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(Progress(verbose=args.verbose))
        raw: Readable
        total: int | None
        if args.store:
            # Imported here, as below: a plain apply should not pay for their imports.
            from layerdiff.content import LocalStore  # noqa: PLC0415
            from layerdiff.content.ingest import VerifiedReader  # noqa: PLC0415

            store = stack.enter_context(LocalStore(args.store))
            reader = store.reader(args.layer)
            stack.callback(reader.close)
            raw, total = VerifiedReader(reader, args.layer, reader.size), reader.size
        elif args.layer == "-":
            raw = sys.stdin.buffer
            total = file_total(raw)
        else:
            raw = open_source(args.layer, stack)
            total = file_total(raw)
        source = CountingReader(raw, progress.task(f"apply {os.path.basename(args.layer)}", total))
        if mounts is not None:
            from layerdiff.differ import apply_to_mounts  # noqa: PLC0415

            desc = apply_to_mounts(source, mounts, options, media_type=args.media_type)
        else:
            desc = apply_layer(source, args.dest, options, media_type=args.media_type)
    print_descriptor(desc, args.json)
    return EXIT_OK


def _payloads(items: list[str]) -> dict[str, bytes]:
    payloads = {}
    for item in items:
        pid, sep, path = item.partition("=")
        if not sep or not pid or not path:
            raise InvalidArgumentError(f"a payload is ID=FILE, not {item!r}")
        try:
            payloads[pid] = Path(path).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"payload file {path!r} does not exist") from None
        except OSError as err:
            raise InvalidArgumentError(f"cannot read payload {path!r}: {err.strerror}") from None
    return payloads
