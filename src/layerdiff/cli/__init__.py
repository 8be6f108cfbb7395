"""The ``layerdiff`` command: one module per command, this one runs them.

Exit codes: 0 success, 1 the operation failed (bad layer, target refused), 2 bad usage,
130 interrupted. Errors are one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from layerdiff import __version__
from layerdiff.cli import apply_cmd, content_cmd, diff_cmd, serve_cmd, unpack_cmd
from layerdiff.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from layerdiff.errors import LayerdiffError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerdiff",
        description="Apply and compute container image layers, as containerd does.",
    )
    parser.add_argument("--version", action="version", version=f"layerdiff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each warning and step")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (apply_cmd, diff_cmd, content_cmd, unpack_cmd, serve_cmd):
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
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
        return 130
