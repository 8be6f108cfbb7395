"""The ``layerdiff`` command.

Exit codes: 0 success, 1 the operation failed (bad layer, target refused), 2 bad usage.
Errors are one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import TextIO

from layerdiff import __version__
from layerdiff.applier import apply_layer
from layerdiff.comparer import diff_trees
from layerdiff.compression import Compression
from layerdiff.diff import ApplyOptions, DiffOptions, WhiteoutMode
from layerdiff.errors import InvalidArgumentError, LayerdiffError, NotFoundError, TargetError
from layerdiff.oci import Descriptor

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_APPLY_EXAMPLES = """\
examples:
  layerdiff apply layer.tar.gz rootfs/
  curl -s URL | layerdiff apply --json - rootfs/
  layerdiff apply --mode overlay --parent lower1 --parent lower2 layer.tar.zst upper/
"""

_DIFF_EXAMPLES = """\
examples:
  layerdiff diff rootfs-before/ rootfs-after/ -o layer.tar.gz
  layerdiff diff --compression zstd --json lower/ upper/ -o - > layer.tar.zst
  layerdiff diff --upper-overlay snap/2/fs:snap/1/fs snap/3/fs -o layer.tar.gz
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerdiff",
        description="Apply and compute container image layers, as containerd does.",
    )
    parser.add_argument("--version", action="version", version=f"layerdiff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each warning and step")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    apply = commands.add_parser(
        "apply",
        help="apply a layer (tar, tar+gzip or tar+zstd) onto a directory",
        description="Apply a layer onto DEST and print the applied descriptor.",
        epilog=_APPLY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply.add_argument("layer", metavar="LAYER", help="layer file, or - for standard input")
    apply.add_argument("dest", metavar="DEST", help="directory to apply the layer onto")
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
    _add_diff_parser(commands)
    return parser


def _add_diff_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = commands.add_parser(
        "diff",
        help="compute the layer that turns LOWER into UPPER",
        description="Write the layer that turns LOWER into UPPER to OUT and print its\n"
        "descriptor (on standard error when OUT is standard output).",
        epilog=_DIFF_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument(
        "lower",
        metavar="LOWER",
        help="the lower tree; with --upper-overlay, the overlay's lowerdirs as in its "
        "lowerdir= option: DIR[:DIR...], nearest first, \\: for a colon in a name",
    )
    diff.add_argument("upper", metavar="UPPER", help="the upper tree (or overlay upperdir)")
    diff.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="layer file, or - for standard output"
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


def _print_descriptor(desc: Descriptor, as_json: bool, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if as_json:
        print(json.dumps(desc.to_json()), file=stream)
    else:
        print(f"{desc.digest} {desc.size} {desc.media_type}", file=stream)


def _run_apply(args: argparse.Namespace) -> int:
    options = ApplyOptions(
        mode=WhiteoutMode(args.mode),
        userxattr=args.userxattr,
        parents=tuple(args.parent),
        strict_oci=args.strict_oci,
    )
    source = sys.stdin.buffer if args.layer == "-" else args.layer
    desc = apply_layer(source, args.dest, options)
    _print_descriptor(desc, args.json)
    return EXIT_OK


def _run_diff(args: argparse.Namespace) -> int:
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
    lower: str | list[str] = _split_lowerdirs(args.lower) if args.upper_overlay else args.lower
    if args.output == "-":
        if sys.stdout.isatty():
            raise InvalidArgumentError("a layer is not for a terminal: give -o FILE or a pipe")
        desc = diff_trees(lower, args.upper, sys.stdout.buffer, options)
        _print_descriptor(desc, args.json, sys.stderr)
    else:
        desc = _diff_to_file(lower, args.upper, args.output, options)
        _print_descriptor(desc, args.json)
    return EXIT_OK


def _split_lowerdirs(value: str) -> list[str]:
    """overlayfs's lowerdir= syntax: ':' separates directories, '\\' escapes a character."""
    dirs: list[str] = []
    current: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            dirs.append("".join(current))
            current = []
        else:
            current.append(char)
    dirs.append("".join(current))
    if "" in dirs:
        raise InvalidArgumentError(f"empty directory name in lowerdir list {value!r}")
    return dirs


def _diff_to_file(
    lower: str | list[str], upper: str, output: str, options: DiffOptions
) -> Descriptor:
    """Write the layer beside OUTPUT and rename it there: a failure leaves no partial file."""
    path = os.path.abspath(output)
    if os.path.isdir(path):
        raise InvalidArgumentError(f"output {output!r} is a directory")
    directory, base = os.path.split(path)
    for tree in [upper, *([lower] if isinstance(lower, str) else lower)]:
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
            desc = diff_trees(lower, upper, out, options)
            os.fchmod(out.fileno(), 0o666 & ~umask)  # as if created by open(), not mkstemp
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return desc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="layerdiff: %(levelname)s: %(message)s",
    )
    try:
        if args.command == "diff":
            return _run_diff(args)
        return _run_apply(args)
    except LayerdiffError as err:
        print(f"layerdiff: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:  # e.g. standard output closed, or the layer unreadable
        print(f"layerdiff: error: {err.strerror or err}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:  # a bug: still one line, the traceback with --verbose
        if args.verbose:
            raise
        print(f"layerdiff: internal error: {type(err).__name__}: {err!r}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("layerdiff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
