"""The ``layerdiff`` command: one module per command, this one runs them.

Exit codes: 0 success, 1 the operation failed (bad layer, target refused), 2 bad usage,
130 interrupted. Errors are one line on standard error, never a traceback. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from layerdiff import __version__
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

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

#: Every command, in ``--help`` order: its module in this package, its one-line help.
#: The modules are imported only when their command runs (or for the whole parser):
#: ``serve`` pulls in gRPC, ``unpack`` and ``inspect`` the registry client, and a
#: command's start-up should pay only for what it uses. The help is kept here, and the
#: modules take it from here, so that ``--help`` can list every command unimported.
COMMANDS = {
    "apply": ("apply_cmd", "apply a layer (tar, tar+gzip or tar+zstd) onto a directory"),
    "diff": ("diff_cmd", "compute the layer that turns LOWER into UPPER"),
    "content": ("content_cmd", "list, read, write, label and remove blobs in a content store"),
    "unpack": (
        "unpack_cmd",
        "unpack an image (OCI layout, OCI or docker archive, registry) into a directory",
    ),
    "inspect": (
        "inspect_cmd",
        "show what a layer or an image does: added, modified, deleted, sizes, waste",
    ),
    "serve": ("serve_cmd", "serve containerd's Diff API (Apply, Diff) on a unix socket"),
    "completion": ("completion_cmd", "print a shell completion script (bash, zsh or fish)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of the whole command line, every command included.

    With ``only`` (a command's name, or ``""`` for none), the other commands are listed
    with their help but their modules are not imported and their arguments not known.
    """
    parser = argparse.ArgumentParser(
        prog="layerdiff",
        description="Apply and compute container image layers, as containerd does.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"layerdiff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each warning and step")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"{__name__}.{module}").register(commands)
        else:
            commands.add_parser(name, help=help_text)
    return parser


def _command(argv: Sequence[str]) -> str:
    """The command ``argv`` names, or ``""``: its first word that is not an option.

    The options before a command take no value, so this is the word argparse picks.
    """
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else ""
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(_command(argv)).parse_args(argv)
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
