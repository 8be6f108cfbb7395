"""Mount lists on the command line: ``--mount SPEC`` (repeatable) or ``--mounts-json``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from layerdiff.errors import InvalidArgumentError, NotFoundError

if TYPE_CHECKING:
    from layerdiff.mount import Mount

SPEC_HELP = (
    "a mount: type=T,source=S[,target=P],options=O1,O2,... (options last; \\, for a comma "
    "inside one); repeat for a list, mounted in order"
)
JSON_HELP = "the mounts as containerd's Mount messages in JSON (a list), or @FILE"


def add_mount_arguments(parser: argparse.ArgumentParser, prefix: str, what: str) -> None:
    """``--{prefix}mount`` and ``--{prefix}mounts-json`` for one mount list."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{prefix}mount", action="append", default=[], metavar="SPEC",
                       dest=f"{prefix.replace('-', '_')}mount", help=f"{what}: {SPEC_HELP}")
    group.add_argument(f"--{prefix}mounts-json", metavar="JSON",
                       dest=f"{prefix.replace('-', '_')}mounts_json", help=f"{what}: {JSON_HELP}")


def mounts_from_args(args: argparse.Namespace, prefix: str = "") -> list[Mount] | None:
    """The mount list the arguments give, or ``None`` if they give none."""
    key = prefix.replace("-", "_")
    specs: list[str] = getattr(args, f"{key}mount")
    text: str | None = getattr(args, f"{key}mounts_json")
    # The mount code is imported only when mounts are given: it is not small.
    if specs:
        from layerdiff.mount import parse_mount_spec  # noqa: PLC0415

        return [parse_mount_spec(spec) for spec in specs]
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except FileNotFoundError:
            raise NotFoundError(f"mounts file {text[1:]!r} does not exist") from None
        except OSError as err:
            raise InvalidArgumentError(f"cannot read {text[1:]!r}: {err.strerror}") from None
    from layerdiff.mount import parse_mounts_json  # noqa: PLC0415

    return parse_mounts_json(text)
