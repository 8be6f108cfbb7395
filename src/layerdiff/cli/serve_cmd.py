"""``layerdiff serve``: be containerd's differ (its Diff API on a unix socket)."""

from __future__ import annotations

import argparse
import dataclasses

from layerdiff.cli import COMMANDS
from layerdiff.cli.output import EXIT_OK

EXAMPLES = """\
examples:
  layerdiff serve --address unix:///run/layerdiff/layerdiff.sock \\
                  --containerd-address unix:///run/containerd/containerd.sock
  layerdiff serve --config /etc/layerdiff/config.toml

then, in containerd's config.toml:
  [proxy_plugins.layerdiff]
    type = "diff"
    address = "/run/layerdiff/layerdiff.sock"
  [plugins."io.containerd.service.v1.diff-service"]
    default = ["layerdiff", "walking"]

See docs/serve.md. SIGTERM stops gracefully: calls in flight get --grace seconds.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` command."""
    serve = commands.add_parser(
        "serve",
        help=COMMANDS["serve"][1],
        description="Serve containerd.services.diff.v1.Diff, health and metrics.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.set_defaults(run=run)
    serve.add_argument("--config", metavar="FILE", help="a TOML config file (docs/serve.md)")
    serve.add_argument("--address", metavar="unix:///PATH", help="the socket to serve on")
    serve.add_argument(
        "--containerd-address",
        metavar="unix:///PATH",
        help="read and write blobs through this containerd's content service",
    )
    serve.add_argument(
        "--grace", type=float, default=10.0, metavar="SECONDS",
        help="on SIGTERM, how long calls in flight may finish (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT."""
    # Imported here: the server pulls in gRPC, which the other commands do not need.
    from layerdiff import logs  # noqa: PLC0415
    from layerdiff.config import Config, load_config  # noqa: PLC0415
    from layerdiff.daemon import build_server  # noqa: PLC0415

    config = load_config(args.config) if args.config else Config()
    if args.address:
        config = dataclasses.replace(
            config, server=dataclasses.replace(config.server, address=args.address)
        )
    if args.containerd_address:
        config = dataclasses.replace(config, content=dataclasses.replace(
            config.content, source="containerd", address=args.containerd_address))
    logs.configure(config.log.level, config.log.format)
    server = build_server(config)
    server.run_until_signalled(args.grace)
    return EXIT_OK
