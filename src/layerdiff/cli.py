"""The ``layerdiff`` command.

Exit codes: 0 success, 1 the operation failed (bad layer, target refused), 2 bad usage.
Errors are one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from layerdiff import __version__
from layerdiff.applier import apply_layer
from layerdiff.diff import ApplyOptions, WhiteoutMode
from layerdiff.errors import LayerdiffError
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerdiff",
        description="Apply container image layers onto directories, as containerd does.",
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
    return parser


def _print_descriptor(desc: Descriptor, as_json: bool) -> None:
    if as_json:
        print(json.dumps(desc.to_json()))
    else:
        print(f"{desc.digest} {desc.size} {desc.media_type}")


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="layerdiff: %(levelname)s: %(message)s",
    )
    try:
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
