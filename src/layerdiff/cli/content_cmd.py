"""``layerdiff content``: a content store at a shell (as ``ctr content``)."""

from __future__ import annotations

import argparse
import os
import sys

from layerdiff.cli import COMMANDS
from layerdiff.cli.diff_cmd import parse_labels
from layerdiff.cli.output import EXIT_OK, print_json, print_table
from layerdiff.config import default_store_root
from layerdiff.content import Info, LocalStore
from layerdiff.content.ingest import VerifiedReader, write_blob
from layerdiff.errors import InvalidArgumentError, NotFoundError

EXAMPLES = """\
examples:
  layerdiff content ingest my-ref < layer.tar.gz
  layerdiff content ls --filter 'labels."containerd.io/uncompressed"'
  layerdiff content get sha256:… | layerdiff apply - rootfs/
  layerdiff content label sha256:… team=web old-label=
  layerdiff content --store /var/lib/containerd/io.containerd.content.v1.content ls
the store is --store DIR, else $LAYERDIFF_STORE, else /var/lib/layerdiff/content for
root and $XDG_DATA_HOME/layerdiff/content (~/.local/share/…) for others.
"""


def default_store() -> str:
    """Where ``content`` commands look when no ``--store`` is given."""
    return os.environ.get("LAYERDIFF_STORE") or default_store_root()


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``content`` command group."""
    content = commands.add_parser(
        "content",
        help=COMMANDS["content"][1],
        description="Manage blobs in a content store in containerd's layout.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    content.add_argument("--store", metavar="DIR", help="the content store's folder")
    actions = content.add_subparsers(dest="action", required=True, metavar="ACTION")

    ingest = actions.add_parser("ingest", help="store a blob read from a file or stdin")
    ingest.set_defaults(run=run_ingest)
    ingest.add_argument("ref", metavar="REF", help="ingest name; the same REF resumes")
    ingest.add_argument("file", metavar="FILE", nargs="?", default="-", help="default: stdin")
    ingest.add_argument("--expected-digest", default="", metavar="DIGEST")
    ingest.add_argument("--expected-size", type=int, default=0, metavar="BYTES")
    ingest.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    ingest.add_argument("--json", action="store_true", help="print the blob's info as JSON")

    listing = actions.add_parser("ls", help="list blobs")
    listing.set_defaults(run=run_ls)
    listing.add_argument(
        "--filter", action="append", default=[], metavar="FILTER",
        help="containerd filter, e.g. labels.app==web (repeat: any may match)",
    )
    listing.add_argument("-q", "--quiet", action="store_true", help="digests only")
    listing.add_argument("--json", action="store_true", help="one JSON array of infos")

    info = actions.add_parser("info", help="show a blob's size, times and labels")
    info.set_defaults(run=run_info)
    info.add_argument("digest", metavar="DIGEST")
    info.add_argument("--json", action="store_true")

    get = actions.add_parser("get", help="write a blob to stdout or a file (digest checked)")
    get.set_defaults(run=run_get)
    get.add_argument("digest", metavar="DIGEST")
    get.add_argument("-o", "--output", metavar="FILE", help="default: standard output")

    remove = actions.add_parser("rm", help="remove blobs")
    remove.set_defaults(run=run_rm)
    remove.add_argument("digests", metavar="DIGEST", nargs="+")

    label = actions.add_parser("label", help="set (KEY=VALUE) or remove (KEY=) labels")
    label.set_defaults(run=run_label)
    label.add_argument("digest", metavar="DIGEST")
    label.add_argument("labels", metavar="KEY=[VALUE]", nargs="*")
    label.add_argument("--json", action="store_true", help="print the labels as a JSON object")

    active = actions.add_parser("active", help="list ingests in progress")
    active.set_defaults(run=run_active)
    active.add_argument("--filter", action="append", default=[], metavar="FILTER")
    active.add_argument("--json", action="store_true")

    abort = actions.add_parser("abort", help="remove an ingest in progress and its bytes")
    abort.set_defaults(run=run_abort)
    abort.add_argument("refs", metavar="REF", nargs="+")


def _store(args: argparse.Namespace) -> LocalStore:
    return LocalStore(args.store or default_store())


def _info_json(info: Info) -> dict[str, object]:
    return {
        "digest": info.digest,
        "size": info.size,
        "createdAt": info.created_at.isoformat(),
        "updatedAt": info.updated_at.isoformat(),
        "labels": dict(info.labels),
    }


def _print_info(info: Info, as_json: bool) -> None:
    if as_json:
        print_json(_info_json(info))
        return
    print(f"digest:  {info.digest}\nsize:    {info.size}")
    print(f"created: {info.created_at.isoformat()}\nupdated: {info.updated_at.isoformat()}")
    for key, value in sorted(info.labels.items()):
        print(f"label:   {key}={value}")


def run_ingest(args: argparse.Namespace) -> int:
    """Copy a file or standard input into the store."""
    labels = parse_labels(args.label)
    with _store(args) as store:
        if args.file == "-":
            info = write_blob(
                store, args.ref, sys.stdin.buffer, size=args.expected_size,
                digest=args.expected_digest, labels=labels,
            )
        else:
            try:
                source = open(args.file, "rb")  # noqa: SIM115 - closed just below
            except FileNotFoundError:
                raise NotFoundError(f"{args.file!r} does not exist") from None
            with source:
                info = write_blob(
                    store, args.ref, source, size=args.expected_size,
                    digest=args.expected_digest, labels=labels,
                )
    if args.json:
        print_json(_info_json(info))
    else:
        print(f"{info.digest} {info.size}")
    return EXIT_OK


def run_ls(args: argparse.Namespace) -> int:
    """List blobs."""
    with _store(args) as store:
        infos = list(store.walk(args.filter))
    if args.json:
        print_json([_info_json(i) for i in infos])
    elif args.quiet:
        for info in infos:
            print(info.digest)
    else:
        rows = [
            [i.digest, str(i.size), ",".join(f"{k}={v}" for k, v in sorted(i.labels.items()))]
            for i in infos
        ]
        print_table(["DIGEST", "SIZE", "LABELS"], rows)
    return EXIT_OK


def run_info(args: argparse.Namespace) -> int:
    """Show one blob."""
    with _store(args) as store:
        _print_info(store.info(args.digest), args.json)
    return EXIT_OK


def run_get(args: argparse.Namespace) -> int:
    """Write a blob out, checking its digest on the way."""
    if args.output is None and sys.stdout.isatty():
        raise InvalidArgumentError("a blob is not for a terminal: give -o FILE or a pipe")
    with _store(args) as store, store.reader(args.digest) as reader:
        verified = VerifiedReader(reader, args.digest, reader.size)
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
        try:
            while chunk := verified.read(1 << 20):
                out.write(chunk)
        finally:
            if args.output:
                out.close()
    return EXIT_OK


def run_rm(args: argparse.Namespace) -> int:
    """Remove blobs."""
    with _store(args) as store:
        for digest in args.digests:
            store.delete(digest)
    return EXIT_OK


def run_label(args: argparse.Namespace) -> int:
    """Set or remove labels, then print them all."""
    with _store(args) as store:
        info = store.info(args.digest)
        changes = parse_labels([item if "=" in item else item + "=" for item in args.labels])
        wanted = {k: v for k, v in changes.items() if v}
        paths = [f"labels.{key}" for key in changes]
        changed = Info(info.digest, info.size, info.created_at, info.updated_at, wanted)
        info = store.update(changed, paths) if paths else info
    if args.json:
        print_json(dict(info.labels))
        return EXIT_OK
    for key, value in sorted(info.labels.items()):
        print(f"{key}={value}")
    return EXIT_OK


def run_active(args: argparse.Namespace) -> int:
    """List ingests in progress."""
    with _store(args) as store:
        statuses = store.list_statuses(args.filter)
    if args.json:
        print_json([
            {"ref": s.ref, "offset": s.offset, "total": s.total,
             "startedAt": s.started_at.isoformat(), "updatedAt": s.updated_at.isoformat()}
            for s in statuses
        ])
    else:
        rows = [[s.ref, str(s.offset), str(s.total), s.updated_at.isoformat()] for s in statuses]
        print_table(["REF", "OFFSET", "TOTAL", "UPDATED"], rows)
    return EXIT_OK


def run_abort(args: argparse.Namespace) -> int:
    """Remove ingests."""
    with _store(args) as store:
        for ref in args.refs:
            store.abort(ref)
    return EXIT_OK
