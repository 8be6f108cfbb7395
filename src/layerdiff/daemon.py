"""Assembling ``layerdiff serve`` from its config: the built-in plugins, third parties'
plugins, and the server they make up.

Built-in plugins (``type.id``):

- ``layerdiff.content.local`` and ``layerdiff.content.containerd``: where served calls
  read and write blobs (``[content] source`` picks one);
- ``layerdiff.differ.walking``: layerdiff's differ, with the configured stream processors
  and every ``layerdiff.stream-processor`` plugin; it first cleans up the temporary
  mounts a killed server left under an explicit ``[mounts] temp_root``;
- ``layerdiff.service.diff``: the differs in the order of its ``default`` key (as
  containerd's ``io.containerd.service.v1.diff-service``).
"""

from __future__ import annotations

from typing import cast

from layerdiff.config import Config
from layerdiff.diff import ApplyOptions
from layerdiff.differ.walking import WalkingDiffer
from layerdiff.errors import InvalidArgumentError
from layerdiff.mount.temp import cleanup_temp_mounts
from layerdiff.plugins import (
    CONTENT,
    DIFFER,
    SERVICE,
    STREAM_PROCESSOR,
    InitContext,
    PluginSet,
    Registration,
)
from layerdiff.processors import Handler, ProcessorRegistry
from layerdiff.server import ContentSource, Limits, LocalContent, Server, containerd_content
from layerdiff.service import Differ, DiffService


def builtin_plugins(config: Config) -> list[Registration]:
    """The plugins layerdiff brings, configured from ``config``."""

    def local(ctx: InitContext) -> ContentSource:
        return LocalContent(config.content.root)

    def containerd(ctx: InitContext) -> ContentSource:
        if not config.content.address:
            raise InvalidArgumentError("[content] address is not set")
        return containerd_content(config.content.address, config.content.namespace)

    def walking(ctx: InitContext) -> WalkingDiffer:
        registry = ProcessorRegistry.from_config(config.stream_processors)
        for handler in ctx.get_all(STREAM_PROCESSOR).values():
            registry.register(cast(Handler, handler))
        if config.mounts.temp_root:
            # What a killed server left mounted there. Only a root of its own: the
            # default one is shared with every other layerdiff process.
            cleanup_temp_mounts(config.mounts.temp_root)
        return WalkingDiffer(registry, temp_root=config.mounts.temp_root,
                             apply_options=ApplyOptions(limits=config.limits.apply))

    def diff_service(ctx: InitContext) -> DiffService:
        order = ctx.config.get("default", ["walking"])
        if not isinstance(order, list) or not all(isinstance(n, str) for n in order):
            raise InvalidArgumentError("[plugins.\"layerdiff.service.diff\"] default: "
                                       "must be a list of differ names")
        return DiffService([cast(Differ, ctx.get(DIFFER, name)) for name in order])

    return [
        Registration(CONTENT, "local", local),
        Registration(CONTENT, "containerd", containerd),
        Registration(DIFFER, "walking", walking, requires=(STREAM_PROCESSOR,)),
        Registration(SERVICE, "diff", diff_service, requires=(DIFFER,),
                     defaults={"default": ["walking"]}),
    ]


def build_server(
    config: Config,
    extra_plugins: list[Registration] | None = None,
    *,
    entry_points: bool = True,
) -> Server:
    """The server ``config`` describes, its plugins initialised."""
    plugins = PluginSet([*builtin_plugins(config), *(extra_plugins or [])])
    if entry_points:
        plugins.load_entry_points()
    # Only the chosen content source is made: the other may not be usable here.
    unused = [f"{CONTENT}.{s}" for s in ("local", "containerd") if s != config.content.source]
    done = plugins.initialize(config.plugins, [*config.disabled_plugins, *unused])
    service = cast(DiffService, done.get(SERVICE, "diff"))
    content = cast(ContentSource, done.get(CONTENT, config.content.source))
    limits = Limits(
        concurrency=config.limits.concurrency,
        apply_timeout=config.limits.apply_timeout,
        diff_timeout=config.limits.diff_timeout,
    )
    return Server(config.server.address, service, content, limits,
                  metrics_address=config.server.metrics_address or None)
