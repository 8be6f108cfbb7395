"""What ``--config FILE`` gives the commands that read layers: its stream processors and
its ``[limits]``."""

from __future__ import annotations

from layerdiff.diff import ApplyLimits
from layerdiff.processors import ProcessorRegistry


def layer_settings(path: str | None) -> tuple[ProcessorRegistry | None, ApplyLimits]:
    """The processors (``None``: the built-in handler only) and limits the file at ``path``
    configures; the defaults when there is no file."""
    if not path:
        return None, ApplyLimits()
    # Imported here: without --config, a command need not load the TOML reader.
    from layerdiff.config import load_config  # noqa: PLC0415

    config = load_config(path)
    return ProcessorRegistry.from_config(config.stream_processors), config.limits.apply
