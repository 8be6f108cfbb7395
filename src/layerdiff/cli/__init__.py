"""The ``layerdiff`` command: one module per command, this one runs them.

Exit codes: 0 success, 1 the operation failed (bad layer, target refused), 2 bad usage,
130 interrupted. Errors are one line on standard error, never a traceback. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from layerdiff import __version__
from layerdiff.cli import (
    apply_cmd,
    completion_cmd,
    content_cmd,
    diff_cmd,
    inspect_cmd,
    serve_cmd,
    unpack_cmd,
)
from layerdiff.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from layerdiff.errors import LayerdiffError

EXAMPLES = """\
examples:
  layerdiff apply layer.tar.gz rootfs/
  layerdiff diff rootfs-before/ rootfs-after/ -o layer.tar.gz
  layerdiff unpack alpine.tar rootfs/
  layerdiff inspect alpine.tar
  layerdiff COMMAND --help
exit codes: 0 success, 1 failed, 2 bad usage, 130 interrupted (docs/cli.md)
"""

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, every command included."""
    parser = argparse.ArgumentParser(
        prog="layerdiff",
        description="Apply and compute container image layers, as containerd does.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"layerdiff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each warning and step")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (
        apply_cmd, diff_cmd, content_cmd, unpack_cmd, inspect_cmd, serve_cmd, completion_cmd
    ):
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="layerdiff: %(levelname)s: %(message)s",
    )
    try:
        code: int = args.run(args)
        return code
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
        return EXIT_INTERRUPTED
