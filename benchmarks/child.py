"""The library contenders: one call of layerdiff's API in a fresh process, timed alone.

    python -m benchmarks.child apply BLOB DEST
    python -m benchmarks.child diff LOWER UPPER OUT {none,gzip,zstd} [--upper-overlay]

Prints ``{"seconds": S}``: the call's wall time, without the interpreter's start-up and
imports (which the CLI contender counts). Its peak memory is the parent's ``wait4``.
"""

from __future__ import annotations

import argparse
import json
import time

from layerdiff import ApplyOptions, Compression, DiffOptions, apply_layer, diff_trees


def main(argv: list[str] | None = None) -> None:
    """Run one apply or diff and print its time as JSON."""
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    apply = commands.add_parser("apply")
    apply.add_argument("blob")
    apply.add_argument("dest")
    diff = commands.add_parser("diff")
    diff.add_argument("lower")
    diff.add_argument("upper")
    diff.add_argument("out")
    diff.add_argument("compression", choices=[c.value for c in Compression])
    diff.add_argument("--upper-overlay", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "apply":
        start = time.perf_counter()
        apply_layer(args.blob, args.dest, ApplyOptions())
    else:
        options = DiffOptions(compression=Compression(args.compression),
                              upper_overlay=args.upper_overlay)
        start = time.perf_counter()
        with open(args.out, "wb") as out:
            diff_trees(args.lower, args.upper, out, options)
    print(json.dumps({"seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
