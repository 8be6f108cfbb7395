"""layerdiff's configuration file: containerd's ``config.toml`` shape, read with ``tomllib``.

Only the sections layerdiff uses are read; every other table and key (``version``,
``plugins``, ``grpc``...) is ignored, so a containerd config file can be pointed at as
it is. Inside a section layerdiff reads, unknown keys are errors: a typo such as
``timout`` must not silently turn a limit off.

Each section is one field of the frozen ``Config``; adding a section means adding a
field, a dataclass for its tables and a ``_parse_*`` function, nothing else.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from layerdiff.errors import InvalidArgumentError, NotFoundError


@dataclass(frozen=True)
class StreamProcessorConfig:
    """One ``[stream_processors.ID]`` table: an external program that turns one media type
    into another (containerd's ``StreamProcessor``).

    ``timeout`` (seconds) is layerdiff's own key: the processor is killed once it has run
    that long; ``None`` (the key absent) means no limit, as in containerd.
    """

    id: str
    accepts: tuple[str, ...]
    returns: str
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: float | None = None


@dataclass(frozen=True)
class Config:
    """Everything layerdiff reads from a configuration file."""

    #: Processors by ID, in the order of the file.
    stream_processors: Mapping[str, StreamProcessorConfig] = field(default_factory=dict)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the configuration file at ``path``."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise NotFoundError(f"config file {name!r} does not exist") from None
    except IsADirectoryError:
        raise InvalidArgumentError(f"config file {name!r} is a directory") from None
    except tomllib.TOMLDecodeError as err:
        raise InvalidArgumentError(f"{name}: invalid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise InvalidArgumentError(f"{name}: invalid TOML: not UTF-8 ({err.reason})") from None
    return parse_config(data, source=name)


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    """Check an already decoded TOML document; ``source`` names it in error messages."""
    return Config(stream_processors=_parse_stream_processors(data, source))


_PROCESSOR_KEYS = {"accepts", "returns", "path", "args", "env", "timeout"}


def _parse_stream_processors(
    data: Mapping[str, Any], source: str
) -> dict[str, StreamProcessorConfig]:
    section = data.get("stream_processors", {})
    if not isinstance(section, dict):
        raise InvalidArgumentError(f"{source}: stream_processors must be a table")
    processors = {}
    for pid, table in section.items():
        where = f"{source}: [stream_processors.{_toml_key(pid)}]"
        if not isinstance(table, dict):
            raise InvalidArgumentError(f"{where} must be a table")
        unknown = sorted(set(table) - _PROCESSOR_KEYS)
        if unknown:
            raise InvalidArgumentError(f"{where} {unknown[0]}: unknown key")
        accepts = _strings(table, "accepts", where)
        if not accepts:
            raise InvalidArgumentError(f"{where} accepts: must name at least one media type")
        env = _strings(table, "env", where)
        for item in env:
            if "=" not in item or item.startswith("="):
                raise InvalidArgumentError(f"{where} env: {item!r} is not NAME=VALUE")
        processors[pid] = StreamProcessorConfig(
            id=pid,
            accepts=accepts,
            returns=_string(table, "returns", where),
            path=_string(table, "path", where),
            args=_strings(table, "args", where),
            env=env,
            timeout=_timeout(table, where),
        )
    return processors


def _toml_key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "").isalnum() and key.isascii()
    return key if bare else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _string(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if value is None:
        raise InvalidArgumentError(f"{where} {key}: missing")
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{where} {key}: must be a non-empty string")
    return value


def _strings(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgumentError(f"{where} {key}: must be a list of strings")
    return tuple(value)


def _timeout(table: Mapping[str, Any], where: str) -> float | None:
    value = table.get("timeout")
    if value is None:
        return None
    # bool is an int subclass; `timeout = true` is a mistake, not one second.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < math.inf  # also refuses nan
    ):
        raise InvalidArgumentError(f"{where} timeout: must be a positive number of seconds")
    return float(value)
