"""``layerdiff unpack``: unpack a whole image, verified, into a tree or overlay layers."""

from __future__ import annotations

import argparse
import contextlib
import logging

from layerdiff.cli import COMMANDS
from layerdiff.cli.config_args import layer_settings
from layerdiff.cli.output import EXIT_OK, print_json
from layerdiff.cli.progress import MeteredImageSource, Progress
from layerdiff.diff import ApplyOptions
from layerdiff.image import MODES, Layer, open_image, parse_platform, unpack_image

log = logging.getLogger("layerdiff.unpack")

EXAMPLES = """\
image forms:
  DIR                          an OCI image layout directory
  FILE.tar                     an OCI image archive or a docker save archive
  oci:DIR[:REF]                the image REF (ref.name annotation) of a layout
  oci-archive:FILE[:REF]       the same, in a tar archive
  docker-archive:FILE[:TAG]    the image TAG of a docker save archive
  registry:HOST/NAME[:TAG][@sha256:...]

examples:
  layerdiff unpack alpine.tar rootfs/
  layerdiff unpack --platform linux/arm64/v8 oci:images/:alpine rootfs/
  layerdiff unpack --mode snapshots registry:127.0.0.1:5000/app:1 --insecure-registry layers/
      (then: mount -t overlay overlay -o "$(tail -1 of that output)" /mnt)
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``unpack`` command."""
    unpack = commands.add_parser(
        "unpack",
        help=COMMANDS["unpack"][1],
        description="Unpack IMAGE's layers for one platform into DEST, verifying every blob "
        "digest and diffID. Run again after an interruption, it finishes the unpack.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    unpack.set_defaults(run=run)
    unpack.add_argument("image", metavar="IMAGE", help="the image (forms below)")
    unpack.add_argument("dest", metavar="DEST", help="the directory to unpack into")
    unpack.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="the platform to pick from a multi-platform image (default: this machine's)",
    )
    unpack.add_argument(
        "--mode",
        choices=MODES,
        default="flat",
        help="flat: one tree; snapshots: one overlay upperdir per layer, DEST/1..N, and the "
        "mount options (default: flat)",
    )
    unpack.add_argument(
        "--start-over",
        action="store_true",
        help="replace an earlier unpack of another image found in DEST",
    )
    unpack.add_argument(
        "--insecure-registry",
        action="store_true",
        help="plain HTTP to a registry on a loopback address",
    )
    unpack.add_argument(
        "--userxattr",
        action="store_true",
        help="snapshots mode: mark opaque directories with user.overlay.opaque",
    )
    unpack.add_argument(
        "--strict-oci",
        action="store_true",
        help="follow the OCI image-spec where containerd 1.7 differs (see docs/semantics.md)",
    )
    unpack.add_argument(
        "--config",
        metavar="FILE",
        help="a config file: its [stream_processors.ID] tables and [limits] (docs/serve.md)",
    )
    unpack.add_argument("--json", action="store_true", help="print the result as JSON")


def _progress(layer: Layer, status: str) -> None:
    log.info("%s: %s", layer.describe(), status)


def run(args: argparse.Namespace) -> int:
    """Unpack the image the arguments name."""
    platform = parse_platform(args.platform) if args.platform else None
    processors, limits = layer_settings(args.config)
    options = ApplyOptions(
        userxattr=args.userxattr, strict_oci=args.strict_oci, processors=processors,
        limits=limits,
    )
    source = open_image(args.image, insecure_registry=args.insecure_registry)
    with contextlib.closing(source), Progress(verbose=args.verbose) as progress:
        result = unpack_image(
            MeteredImageSource(source, progress),
            args.dest,
            platform=platform,
            mode=args.mode,
            options=options,
            progress=_progress,
            start_over=args.start_over,
        )
    if args.json:
        print_json(result.to_json())
        return EXIT_OK
    image = result.image
    print(f"{image.config_digest} {image.platform} {len(image.layers)} layers {result.dest}")
    for layer, directory in zip(image.layers, result.layer_dirs, strict=False):
        print(f"{layer.diff_id} {directory}")
    if result.mount_options is not None:
        print(result.mount_options)
    return EXIT_OK
