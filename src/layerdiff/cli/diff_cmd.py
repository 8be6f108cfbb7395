"""``layerdiff diff``: compute the layer between two trees, to a file or into a store."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

from layerdiff.cli import COMMANDS
from layerdiff.cli.mount_args import add_mount_arguments, mounts_from_args
from layerdiff.cli.output import EXIT_OK, print_descriptor
from layerdiff.cli.progress import CountingWriter, Progress
from layerdiff.comparer import Writable, diff_trees
from layerdiff.compression import Compression
from layerdiff.diff import DiffOptions
from layerdiff.errors import InvalidArgumentError, NotFoundError, TargetError

if TYPE_CHECKING:
    from layerdiff.oci import Descriptor

EXAMPLES = """\
examples:
  layerdiff diff rootfs-before/ rootfs-after/ -o layer.tar.gz
  layerdiff diff --compression zstd --json lower/ upper/ -o - > layer.tar.zst
  layerdiff diff --upper-overlay snap/2/fs:snap/1/fs snap/3/fs -o layer.tar.gz
  layerdiff diff --store content/ --label app=web lower/ upper/
  layerdiff diff --lower-mount type=bind,source=/s/1,options=rbind,ro \\
      --upper-mount type=overlay,source=overlay,options=lowerdir=/s/1,upperdir=/s/2,workdir=/s/w \\
      -o layer.tar.gz
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``diff`` command."""
    diff = commands.add_parser(
        "diff",
        help=COMMANDS["diff"][1],
        description="Write the layer that turns LOWER into UPPER to OUT and print its\n"
        "descriptor (on standard error when OUT is standard output).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument(
        "lower",
        metavar="LOWER",
        nargs="?",
        help="the lower tree; with --upper-overlay, the overlay's lowerdirs as in its "
        "lowerdir= option: DIR[:DIR...], nearest first, \\: for a colon in a name",
    )
    diff.add_argument(
        "upper", metavar="UPPER", nargs="?", help="the upper tree (or overlay upperdir)"
    )
    add_mount_arguments(diff, "lower-", "the lower file system as mounts (default: empty)")
    add_mount_arguments(diff, "upper-", "the upper file system as mounts, instead of UPPER")
    diff.set_defaults(run=run)
    destination = diff.add_mutually_exclusive_group(required=True)
    destination.add_argument(
        "-o", "--output", metavar="OUT", help="layer file, or - for standard output"
    )
    destination.add_argument(
        "--store",
        metavar="DIR",
        help="commit the layer into this content store (containerd's layout) instead, "
        "labelled with its containerd.io/uncompressed digest",
    )
    diff.add_argument(
        "--ref", metavar="REF", help="with --store: the ingest ref (default: a fresh one)"
    )
    diff.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --store: a label for the committed blob (repeat)",
    )
    diff.add_argument(
        "--compression",
        choices=[c.value for c in Compression],
        default=Compression.GZIP.value,
        help="compression of the layer (default: gzip, as containerd)",
    )
    diff.add_argument(
        "--level",
        type=int,
        metavar="N",
        help="gzip: 0-3 ISA-L, 4-9 zlib (default 2); zstd: 1-22 (default 3)",
    )
    diff.add_argument(
        "--source-date-epoch",
        type=int,
        metavar="T",
        help="write times after T (seconds since 1970) as T "
        "(default: $SOURCE_DATE_EPOCH if set)",
    )
    diff.add_argument(
        "--upper-overlay",
        action="store_true",
        help="UPPER is an overlayfs upperdir over LOWER: read the changes from it alone",
    )
    diff.add_argument(
        "--userxattr",
        action="store_true",
        help="with --upper-overlay: the overlay keeps its markers in user.overlay.* xattrs",
    )
    diff.add_argument("--json", action="store_true", help="print the descriptor as JSON")


def run(args: argparse.Namespace) -> int:
    """Compute the layer the arguments describe."""
    epoch = args.source_date_epoch
    if epoch is None and os.environ.get("SOURCE_DATE_EPOCH"):
        try:
            epoch = int(os.environ["SOURCE_DATE_EPOCH"])
        except ValueError:
            raise InvalidArgumentError(
                f"invalid SOURCE_DATE_EPOCH {os.environ['SOURCE_DATE_EPOCH']!r}"
            ) from None
    options = DiffOptions(
        compression=Compression(args.compression),
        level=args.level,
        source_date_epoch=epoch,
        upper_overlay=args.upper_overlay,
        userxattr=args.userxattr,
    )
    produce, trees = _producer(args, options)
    with Progress(verbose=args.verbose) as progress:
        meter = progress.task(f"diff {args.upper or 'mounts'}", None)

        def metered(out: Writable) -> Descriptor:
            return produce(CountingWriter(out, meter))

        if args.store is not None:
            labels = parse_labels(args.label)
            # Imported here, as the mount code below: a plain diff should not pay for them.
            from layerdiff.content import LocalStore  # noqa: PLC0415
            from layerdiff.content.ingest import commit_layer  # noqa: PLC0415

            with LocalStore(args.store) as store:
                desc = commit_layer(store, metered, args.ref, labels)
        elif args.output == "-":
            if sys.stdout.isatty():
                raise InvalidArgumentError("a layer is not for a terminal: give -o FILE or a pipe")
            desc = metered(sys.stdout.buffer)
        else:
            desc = _diff_to_file(metered, trees, args.output)
    print_descriptor(desc, args.json, sys.stderr if args.output == "-" else None)
    return EXIT_OK


def _producer(
    args: argparse.Namespace, options: DiffOptions
) -> tuple[Callable[[Writable], Descriptor], list[str]]:
    """What writes the layer, and the directories it reads (to keep the output out)."""
    lower_mounts = mounts_from_args(args, "lower-")
    upper_mounts = mounts_from_args(args, "upper-")
    if upper_mounts is not None:
        if args.lower is not None or args.upper is not None:
            raise InvalidArgumentError("give LOWER UPPER or --upper-mount, not both")
        if args.upper_overlay or args.userxattr:
            raise InvalidArgumentError("--upper-overlay is decided from the mounts")
        from layerdiff.differ import compare_mounts  # noqa: PLC0415

        lower_list = lower_mounts or []
        sources = [m.source for m in [*lower_list, *upper_mounts] if m.source.startswith("/")]
        return (
            lambda out: compare_mounts(lower_list, upper_mounts, out, options),
            sources,
        )
    if args.lower is None or args.upper is None or lower_mounts is not None:
        raise InvalidArgumentError("give LOWER and UPPER, or --upper-mount [--lower-mount]")
    lower: str | list[str] = split_lowerdirs(args.lower) if args.upper_overlay else args.lower
    trees = [args.upper, *([lower] if isinstance(lower, str) else lower)]
    return (lambda out: diff_trees(lower, args.upper, out, options)), trees


def split_lowerdirs(value: str) -> list[str]:
    """overlayfs's lowerdir= syntax: ':' separates directories, '\\' escapes a character."""
    from layerdiff.mount.overlay import split_layers  # noqa: PLC0415

    dirs = split_layers(value)
    if "" in dirs:
        raise InvalidArgumentError(f"empty directory name in lowerdir list {value!r}")
    return dirs


def _diff_to_file(
    produce: Callable[[Writable], Descriptor], trees: list[str], output: str
) -> Descriptor:
    """Write the layer beside OUTPUT and rename it there: a failure leaves no partial file."""
    path = os.path.abspath(output)
    if os.path.isdir(path):
        raise InvalidArgumentError(f"output {output!r} is a directory")
    directory, base = os.path.split(path)
    for tree in trees:
        real_tree = os.path.realpath(tree)
        if os.path.commonpath([real_tree, os.path.realpath(directory)]) == real_tree:
            # It would be compared while it is being written.
            raise InvalidArgumentError(f"output {output!r} is inside the tree {tree!r}")
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    except FileNotFoundError:
        raise NotFoundError(f"output directory {directory!r} does not exist") from None
    except OSError as err:
        raise TargetError(f"cannot write {output!r}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            desc = produce(out)
            os.fchmod(out.fileno(), 0o666 & ~umask)  # as if created by open(), not mkstemp
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return desc


def parse_labels(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a mapping."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"a label is KEY=VALUE, not {item!r}")
        labels[key] = value
    return labels
