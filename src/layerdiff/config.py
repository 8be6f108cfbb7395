"""layerdiff's configuration file: containerd's ``config.toml`` shape, read with ``tomllib``.

Only the sections layerdiff uses are read; every other table and key (``version``,
``plugins``, ``grpc``...) is ignored, so a containerd config file can be pointed at as
it is. Inside a section layerdiff reads, unknown keys are errors: a typo such as
``timout`` must not silently turn a limit off.

Each section is one field of the frozen ``Config``; adding a section means adding a
field, a dataclass for its tables and a ``_parse_*`` function, nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from layerdiff.diff import ApplyLimits
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


def default_store_root() -> str:
    """The local content store when none is configured: /var/lib for root, else the
    user's data folder."""
    if os.geteuid() == 0:
        return "/var/lib/layerdiff/content"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "layerdiff", "content")


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: where ``layerdiff serve`` listens."""

    address: str = "unix:///run/layerdiff/layerdiff.sock"
    #: ``HOST:PORT`` of the Prometheus endpoint (``/metrics``); none when empty.
    metrics_address: str = ""


@dataclass(frozen=True)
class ContentConfig:
    """``[content]``: where served calls read and write blobs."""

    #: ``local`` (a folder in containerd's layout) or ``containerd`` (its Content service).
    source: str = "local"
    root: str = field(default_factory=default_store_root)
    #: containerd's socket, for ``source = "containerd"``.
    address: str = ""
    #: The namespace used for calls that carry none (containerd issue #12328).
    namespace: str = "default"


@dataclass(frozen=True)
class MountsConfig:
    """``[mounts]``: where temporary mount points are made (``None``: the default of
    ``layerdiff.mount.temp``)."""

    temp_root: str | None = None


@dataclass(frozen=True)
class LimitsConfig:
    """``[limits]``: how much work is taken on, for how long, and how big a layer may be
    (``apply``: see ``layerdiff.diff.ApplyLimits``; ``0`` lifts a size or entry limit)."""

    concurrency: int = 4
    #: Seconds an Apply or a Diff may run; ``None``: only the caller's deadline.
    apply_timeout: float | None = None
    diff_timeout: float | None = None
    apply: ApplyLimits = field(default_factory=ApplyLimits)


@dataclass(frozen=True)
class LogConfig:
    """``[log]``: ``level`` (debug, info, warning, error) and ``format`` (json, text)."""

    level: str = "info"
    format: str = "json"


@dataclass(frozen=True)
class Config:
    """Everything layerdiff reads from a configuration file."""

    #: Processors by ID, in the order of the file.
    stream_processors: Mapping[str, StreamProcessorConfig] = field(default_factory=dict)
    server: ServerConfig = field(default_factory=ServerConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    mounts: MountsConfig = field(default_factory=MountsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    #: ``[plugins."layerdiff.TYPE.ID"]`` sections, by ``layerdiff.TYPE.ID`` (other
    #: ``plugins`` tables are containerd's, and ignored).
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The ``layerdiff.*`` names in ``disabled_plugins``.
    disabled_plugins: tuple[str, ...] = ()


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
    server = _table(data, "server", {"address", "metrics_address"}, source)
    content = _table(data, "content", {"source", "root", "address", "namespace"}, source)
    mounts = _table(data, "mounts", {"temp_root"}, source)
    limits = _table(data, "limits", {"concurrency", "apply_timeout", "diff_timeout",
                                      *_APPLY_LIMITS}, source)
    log = _table(data, "log", {"level", "format"}, source)
    content_source = _choice(content, "source", ("local", "containerd"), "local", source)
    if content_source == "containerd" and "address" not in content:
        raise InvalidArgumentError(f"{source}: [content] address: missing for containerd")
    defaults = ContentConfig()
    return Config(
        stream_processors=_parse_stream_processors(data, source),
        server=ServerConfig(
            address=_optional_string(server, "address", ServerConfig.address, "server", source),
            metrics_address=_optional_string(server, "metrics_address", "", "server", source),
        ),
        content=ContentConfig(
            source=content_source,
            root=_optional_string(content, "root", defaults.root, "content", source),
            address=_optional_string(content, "address", "", "content", source),
            namespace=_optional_string(content, "namespace", "default", "content", source),
        ),
        mounts=MountsConfig(
            temp_root=_optional_string(mounts, "temp_root", "", "mounts", source) or None
        ),
        limits=LimitsConfig(
            concurrency=_positive_int(limits, "concurrency", LimitsConfig.concurrency, source),
            apply_timeout=_timeout(limits, "[limits]", "apply_timeout", where_source=source),
            diff_timeout=_timeout(limits, "[limits]", "diff_timeout", where_source=source),
            apply=_apply_limits(limits, source),
        ),
        log=LogConfig(
            level=_choice(log, "level", ("debug", "info", "warning", "error"), "info", source),
            format=_choice(log, "format", ("json", "text"), "json", source),
        ),
        plugins=_plugin_sections(data, source),
        disabled_plugins=_disabled_plugins(data, source),
    )


def _table(data: Mapping[str, Any], name: str, keys: set[str], source: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise InvalidArgumentError(f"{source}: {name} must be a table")
    unknown = sorted(set(table) - keys)
    if unknown:
        raise InvalidArgumentError(f"{source}: [{name}] {unknown[0]}: unknown key")
    return table


def _optional_string(
    table: Mapping[str, Any], key: str, default: str, name: str, source: str
) -> str:
    if key not in table:
        return default
    return _string(table, key, f"{source}: [{name}]")


def _choice(
    table: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str, source: str
) -> str:
    value = table.get(key, default)
    if value not in choices:
        raise InvalidArgumentError(
            f"{source}: {key}: must be one of {', '.join(choices)}, not {value!r}"
        )
    return str(value)


def _positive_int(table: Mapping[str, Any], key: str, default: int, source: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{source}: [limits] {key}: must be a positive integer")
    return value


_APPLY_LIMITS = ("max_layer_bytes", "max_entries", "max_header_bytes", "max_xattr_bytes")


def _apply_limits(table: Mapping[str, Any], source: str) -> ApplyLimits:
    defaults = ApplyLimits()
    values: dict[str, Any] = {}
    for key in _APPLY_LIMITS:
        if key not in table:
            continue
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"{source}: [limits] {key}: must be a whole number >= 0")
        if value == 0 and getattr(defaults, key) is not None and key in ("max_layer_bytes",
                                                                          "max_entries"):
            values[key] = None
        elif value == 0:
            raise InvalidArgumentError(f"{source}: [limits] {key}: must be at least 1")
        else:
            values[key] = value
    return dataclasses.replace(defaults, **values)


_PLUGIN_PREFIX = "layerdiff."


def _plugin_sections(data: Mapping[str, Any], source: str) -> dict[str, Mapping[str, Any]]:
    plugins = data.get("plugins", {})
    if not isinstance(plugins, dict):
        raise InvalidArgumentError(f"{source}: plugins must be a table")
    sections: dict[str, Mapping[str, Any]] = {}
    for name, table in plugins.items():
        if not name.startswith(_PLUGIN_PREFIX):
            continue  # containerd's own plugins
        if not isinstance(table, dict):
            raise InvalidArgumentError(f'{source}: [plugins."{name}"] must be a table')
        sections[name] = table
    return sections


def _disabled_plugins(data: Mapping[str, Any], source: str) -> tuple[str, ...]:
    names = _strings(data, "disabled_plugins", f"{source}:")
    return tuple(n for n in names if n.startswith(_PLUGIN_PREFIX))


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
            timeout=_timeout(table, where, "timeout"),
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


def _timeout(
    table: Mapping[str, Any], where: str, key: str, *, where_source: str = ""
) -> float | None:
    if where_source:
        where = f"{where_source}: {where}"
    value = table.get(key)
    if value is None:
        return None
    # bool is an int subclass; `timeout = true` is a mistake, not one second.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < math.inf  # also refuses nan
    ):
        raise InvalidArgumentError(f"{where} {key}: must be a positive number of seconds")
    return float(value)
