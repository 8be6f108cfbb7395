"""Plugins: typed, named parts that the server assembles, in the spirit of containerd's.

A ``Registration`` names a plugin (``type`` and ``id``), the plugin types it needs
initialised first (``requires``), and an ``init`` function that builds it from its config
section. Third parties add plugins through the ``layerdiff.plugins`` entry-point group: each
entry point loads to a ``Registration`` or an iterable of them.

``PluginSet.initialize`` runs the inits in dependency order. As in containerd, a plugin whose
init fails is recorded as failed, not fatal: whoever needs it gets the failure as an error.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from layerdiff.errors import InvalidArgumentError, LayerdiffError, NotFoundError

log = logging.getLogger("layerdiff.plugins")

ENTRY_POINT_GROUP = "layerdiff.plugins"

#: Plugin types layerdiff itself defines.
CONTENT = "layerdiff.content"
STREAM_PROCESSOR = "layerdiff.stream-processor"
DIFFER = "layerdiff.differ"
SERVICE = "layerdiff.service"


class PluginError(LayerdiffError):
    """A plugin could not be registered or initialised."""


@dataclass(frozen=True)
class Registration:
    """How to make one plugin."""

    type: str
    id: str
    init: Callable[[InitContext], object]
    requires: tuple[str, ...] = ()
    #: The config section used when the config file has none for this plugin.
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """``type.id``, the name used in config sections and in ``disabled_plugins``."""
        return f"{self.type}.{self.id}"


class InitContext:
    """What an init function sees: its config section and the plugins initialised so far."""

    def __init__(self, registration: Registration, config: Mapping[str, Any],
                 plugins: Initialized) -> None:
        self.registration = registration
        self.config = config
        self._plugins = plugins

    def get(self, type_: str, id_: str) -> object:
        """The instance of plugin ``type_.id_``; its init error if it failed."""
        return self._plugins.get(type_, id_)

    def get_all(self, type_: str) -> dict[str, object]:
        """Every successfully initialised plugin of ``type_``, by id."""
        return self._plugins.get_all(type_)


class Initialized:
    """The outcome of initialising a set of plugins: instances, and errors of those that
    failed."""

    def __init__(self) -> None:
        self.instances: dict[tuple[str, str], object] = {}
        self.errors: dict[tuple[str, str], Exception] = {}

    def get(self, type_: str, id_: str) -> object:
        """The instance of ``type_.id_``; raises its init error, or ``NotFoundError``."""
        key = (type_, id_)
        if key in self.errors:
            raise PluginError(f"plugin {type_}.{id_} failed to initialise: {self.errors[key]}")
        if key not in self.instances:
            raise NotFoundError(f"plugin {type_}.{id_} is not loaded")
        return self.instances[key]

    def get_all(self, type_: str) -> dict[str, object]:
        """Every instance of ``type_``, by id."""
        return {i: inst for (t, i), inst in self.instances.items() if t == type_}


class PluginSet:
    """The registrations known to one server."""

    def __init__(self, registrations: Iterable[Registration] = ()) -> None:
        self._registrations: dict[str, Registration] = {}
        for registration in registrations:
            self.register(registration)

    def register(self, registration: Registration) -> None:
        """Add a plugin; a second one with the same ``type.id`` is refused."""
        if registration.uri in self._registrations:
            raise PluginError(f"plugin {registration.uri} is registered twice")
        self._registrations[registration.uri] = registration

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Add every plugin that installed packages offer in the entry-point ``group``."""
        for entry in importlib.metadata.entry_points(group=group):
            try:
                loaded = entry.load()
            except Exception as err:
                raise PluginError(f"cannot load plugin entry point {entry.name!r}: {err}") from err
            found = [loaded] if isinstance(loaded, Registration) else list(loaded)
            for registration in found:
                if not isinstance(registration, Registration):
                    raise PluginError(
                        f"entry point {entry.name!r} gave {type(registration).__name__}, "
                        "not a layerdiff.plugins.Registration"
                    )
                self.register(registration)

    def ordered(self) -> list[Registration]:
        """Registrations in an order where every plugin follows all plugins of the types it
        requires (ties keep registration order)."""
        remaining = list(self._registrations.values())
        done: list[Registration] = []
        while remaining:
            pending_types = {r.type for r in remaining}
            ready = [
                r for r in remaining
                if not any(t in pending_types and t != r.type for t in r.requires)
            ]
            if not ready:
                names = ", ".join(r.uri for r in remaining)
                raise PluginError(f"plugins require each other in a cycle: {names}")
            done.extend(ready)
            remaining = [r for r in remaining if r not in ready]
        return done

    def initialize(
        self,
        sections: Mapping[str, Mapping[str, Any]] | None = None,
        disabled: Iterable[str] = (),
    ) -> Initialized:
        """Initialise every plugin not ``disabled`` (by ``type.id``), each given its section
        of ``sections`` (keyed by ``type.id``) over its defaults."""
        sections = sections or {}
        disabled = set(disabled)
        unknown = (set(sections) | disabled) - set(self._registrations)
        if unknown:
            names = ", ".join(sorted(unknown))
            raise InvalidArgumentError(f"config names unknown plugins: {names}")
        result = Initialized()
        for registration in self.ordered():
            if registration.uri in disabled:
                log.info("plugin %s disabled", registration.uri)
                continue
            config = {**registration.defaults, **sections.get(registration.uri, {})}
            key = (registration.type, registration.id)
            try:
                result.instances[key] = registration.init(
                    InitContext(registration, config, result)
                )
            except Exception as err:
                log.warning("plugin %s failed to initialise: %s", registration.uri, err)
                result.errors[key] = err
        return result
