"""``layerdiff inspect``: what a layer or an image does, without applying it."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

from layerdiff.applier import open_source
from layerdiff.cli import COMMANDS
from layerdiff.cli.config_args import layer_settings
from layerdiff.cli.output import (
    EXIT_OK,
    fit,
    print_json,
    print_table,
    printable,
    terminal_width,
)
from layerdiff.cli.progress import CountingReader, MeteredImageSource, Progress, file_total
from layerdiff.cli.progress import human_bytes as hb
from layerdiff.compression import DETECT_SIZE, Compression, Readable, detect
from layerdiff.errors import (
    CorruptLayerError,
    InvalidArgumentError,
    LimitExceededError,
    UnsupportedError,
)
from layerdiff.image import open_archive, open_image, parse_platform
from layerdiff.image.open import TRANSPORTS
from layerdiff.image.source import ImageSource
from layerdiff.inspect import (
    CHANGES,
    Entry,
    ImageReport,
    LayerReport,
    directories,
    inspect_image,
    inspect_layer,
    largest,
    layer_json,
)

EXAMPLES = """\
LAYER is a layer blob (tar, tar+gzip, tar+zstd; - for standard input); IMAGE is any form
`layerdiff unpack` takes (an OCI layout directory, an OCI or docker save archive,
oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:TAG], registry:HOST/NAME[:TAG]).
A plain tar file is an image if it holds oci-layout or manifest.json, else a layer.

examples:
  layerdiff inspect layer.tar.gz
  layerdiff inspect --tree layer.tar.gz
  layerdiff inspect --json --top 0 layer.tar.zst | jq '.largest[0]'
  layerdiff inspect alpine.tar
  layerdiff inspect --platform linux/arm64 --json oci:images/:app | jq .flattened.wasted_bytes
  curl -s URL | layerdiff inspect -
"""

#: What the tree says of an entry, by its change (a layer alone: nothing for "changed").
_MARKS = {change: "" if change == "changed" else change for change in CHANGES}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``inspect`` command."""
    inspect = commands.add_parser(
        "inspect",
        help=COMMANDS["inspect"][1],
        description="Read LAYER or IMAGE without applying it and show what it does: "
        "entries added, modified and deleted, opaque directories, sizes, the largest "
        "files, per-directory totals; for an image, per layer and for the flattened "
        "result, with the bytes later layers overwrite or delete (wasted).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.set_defaults(run=run)
    inspect.add_argument("source", metavar="LAYER|IMAGE", help="the layer or image to read")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument(
        "--tree", action="store_true", help="show each layer's entries as a tree"
    )
    inspect.add_argument(
        "--top",
        type=_count,
        default=10,
        metavar="N",
        help="how many largest files, directories and wasted files to list (0: all; "
        "default 10)",
    )
    inspect.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="the platform to pick from a multi-platform image (default: this machine's)",
    )
    inspect.add_argument(
        "--media-type",
        metavar="TYPE",
        help="LAYER's media type: it picks the stream processors (and makes SOURCE a layer)",
    )
    inspect.add_argument(
        "--config",
        metavar="FILE",
        help="a config file: its [stream_processors.ID] tables and [limits] (docs/serve.md)",
    )
    inspect.add_argument(
        "--insecure-registry",
        action="store_true",
        help="plain HTTP to a registry on a loopback address",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def run(args: argparse.Namespace) -> int:
    """Inspect the layer or image the arguments name."""
    processors, limits = layer_settings(args.config)
    with Progress(verbose=args.verbose) as progress:
        image = _as_image(args)
        if image is None:
            with contextlib.ExitStack() as stack:
                raw = _open(args.source, stack)
                meter = progress.task(f"inspect {os.path.basename(args.source)}", file_total(raw))
                report = inspect_layer(
                    CountingReader(raw, meter), name=args.source, media_type=args.media_type,
                    processors=processors, limits=limits, counter=meter,
                )
        else:
            with contextlib.closing(image):
                platform = parse_platform(args.platform) if args.platform else None
                image_report = inspect_image(
                    MeteredImageSource(image, progress), platform=platform,
                    processors=processors, limits=limits, counter=progress.meter,
                )
    if image is None:
        if args.json:
            print_json(layer_json(report, args.top))
        else:
            _print_layer(report, args.top, args.tree, terminal_width())
    elif args.json:
        print_json(image_report.to_json(args.top))
    else:
        _print_image(image_report, args.top, args.tree, terminal_width())
    return EXIT_OK


def _open(source: str, stack: contextlib.ExitStack) -> Readable:
    if source == "-":
        return sys.stdin.buffer
    return open_source(source, stack)


def _as_image(args: argparse.Namespace) -> ImageSource | None:
    """The image SOURCE names, or ``None`` if it is a layer."""
    text: str = args.source
    if args.platform is not None and args.media_type is not None:
        raise InvalidArgumentError("--platform is for an image, --media-type for a layer")
    if text == "-" or args.media_type is not None:
        return None
    transport, sep, _ = text.partition(":")
    if (sep and transport in TRANSPORTS) or os.path.isdir(text):
        return open_image(text, insecure_registry=args.insecure_registry)
    if not os.path.isfile(text):
        return None  # reading it as a layer gives the error
    with open(text, "rb") as probe:
        if detect(probe.read(DETECT_SIZE)) is not Compression.NONE:
            return None  # image archives are plain tar
    try:
        return open_archive(text)
    except (InvalidArgumentError, LimitExceededError, CorruptLayerError, UnsupportedError):
        return None  # not an image archive: a plain tar layer (or not tar at all)


# ------------------------------------------------------------------ for people


def _print_layer(report: LayerReport, top: int, tree: bool, width: int | None) -> None:
    changes = report.changes()
    summary = ", ".join(f"{n} {c}" for c, n in changes.items() if n)
    print(fit(f"LAYER     {printable(report.source)}", width))
    if report.media_type:
        print(f"type      {report.media_type}")
    print(f"digest    {report.digest}  ({hb(report.blob_size)})")
    print(f"diff_id   {report.diff_id}  ({hb(report.size)} uncompressed)")
    print(f"entries   {len(report.entries)}: {summary or 'none'}")
    print("kinds     " + ", ".join(f"{n} {k}" for k, n in report.kinds().items()))
    files = report.files()
    print(f"files     {hb(report.file_bytes)} in {len(files)} files")
    if report.removed is not None:
        print(f"removes   {hb(report.removed)} of lower layers' files")
        print(f"wasted    {hb(report.wasted or 0)} of its files removed by later layers")
    if tree:
        print()
        for line in _tree(report.entries):
            print(fit(line, width))
        return
    _print_files(files, top, width)
    for kind, title in (("whiteout", "DELETED"), ("opaque", "OPAQUE")):
        rows = [[e.path] for e in report.entries if e.kind == kind]
        if rows:
            print(f"\n{title}")
            for (path,) in rows[: top or None]:
                print(fit(printable(path), width))
            if top and len(rows) > top:
                print(f"… and {len(rows) - top} more")


def _print_files(files: list[tuple[str, int]], top: int, width: int | None) -> None:
    if not files:
        return
    print("\nLARGEST FILES")
    print_table(["SIZE", "PATH"], [[hb(s), printable(p)] for p, s in largest(files, top)], width)
    print("\nDIRECTORIES")
    print_table(
        ["BYTES", "FILES", "PATH"],
        [[hb(b), str(n), printable(p)] for p, b, n in directories(files, top)],
        width,
    )


def _print_image(report: ImageReport, top: int, tree: bool, width: int | None) -> None:
    print(fit(f"IMAGE     {printable(report.source)}", width))
    print(f"platform  {report.platform}")
    print(f"config    {report.config}")
    if report.manifest:
        print(f"manifest  {report.manifest}")
    print()
    rows = []
    for layer in report.layers:
        changes = layer.changes()
        rows.append([
            str(layer.index), hb(layer.blob_size), hb(layer.size), str(len(layer.entries)),
            str(changes["added"]), str(changes["modified"]), str(changes["deleted"]),
            str(changes["opaque"]), hb(layer.file_bytes), hb(layer.removed or 0),
            hb(layer.wasted or 0), layer.digest,
        ])
    print_table(
        ["LAYER", "BLOB", "TAR", "ENTRIES", "ADDED", "MODIFIED", "DELETED", "OPAQUE", "FILES",
         "REMOVES", "WASTED", "DIGEST"],
        rows, width,
    )
    share = f" ({report.wasted * 100 // report.layer_bytes}%)" if report.layer_bytes else ""
    print(f"\nflattened: {report.paths} paths, {len(report.files)} files of "
          f"{hb(report.file_bytes)}; the layers carry {hb(report.layer_bytes)} of files, "
          f"{hb(report.wasted)}{share} wasted (overwritten, deleted or hidden later)")
    if tree:
        for layer in report.layers:
            print(f"\nLAYER {layer.index}  {layer.digest}")
            for line in _tree(layer.entries):
                print(fit(line, width))
        return
    _print_files(report.files, top, width)
    waste = report.biggest_waste(top)
    if waste:
        print("\nWASTED (files of a layer that a later layer removes)")
        print_table(
            ["SIZE", "LAYER", "BY", "HOW", "PATH"],
            [[hb(w.size), str(w.layer), str(w.by), w.how, printable(w.path)] for w in waste],
            width,
        )


class _TreeNode:
    __slots__ = ("bytes", "children", "entry")

    def __init__(self) -> None:
        self.children: dict[str, _TreeNode] = {}
        self.entry: Entry | None = None
        self.bytes = 0


def _tree(entries: list[Entry]) -> Iterator[str]:
    """The entries as an indented tree; directories show the bytes of files below."""
    root = _TreeNode()
    for entry in entries:
        node = root
        node.bytes += entry.size
        for name in entry.path.split("/")[1:] if entry.path != "/" else []:
            node = node.children.setdefault(name, _TreeNode())
            node.bytes += entry.size
        node.entry = entry  # a later entry of the same path is the one that counts
    yield "/" + _label(root)
    # Iterative: a layer may nest paths very deep.
    todo = [(sorted(root.children.items()), 0, "")]
    while todo:
        items, i, indent = todo.pop()
        if i == len(items):
            continue
        todo.append((items, i + 1, indent))
        name, node = items[i]
        branch, more = ("└── ", "    ") if i == len(items) - 1 else ("├── ", "│   ")
        kind = node.entry.kind if node.entry else "dir"
        suffix = "/" if node.children or kind in ("dir", "opaque") else ""
        yield f"{indent}{branch}{printable(name)}{suffix}{_label(node)}"
        if node.children:
            todo.append((sorted(node.children.items()), 0, indent + more))


def _label(node: _TreeNode) -> str:
    parts = []
    if node.bytes:
        parts.append(hb(node.bytes))
    entry = node.entry
    if entry is not None:
        if entry.kind not in ("file", "dir", "whiteout", "opaque"):
            parts.append(entry.kind)
        mark = _MARKS[entry.change]
        if mark:
            parts.append(mark)
    return "  " + "  ".join(parts) if parts else ""
