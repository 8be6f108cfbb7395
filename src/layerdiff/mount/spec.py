"""Mounts as people type them and as containerd's API spells them.

Typed form, one mount per string::

    type=overlay,source=overlay,options=lowerdir=/l2:/l1,upperdir=/u,workdir=/w

``type``, ``source`` and ``target`` come first, in any order (``type`` is required,
the others default to ""); ``options=`` comes last, and every comma-separated item
after it is one option (no ``options=`` at all: no options). A comma inside a value
is typed ``\\,`` and a backslash before a comma or another backslash ``\\\\``; any
other backslash stands for itself, so overlay's own escapes (``\\:``) pass through.

JSON form: containerd's ``Mount`` message, ``{"type": ..., "source": ..., "target":
..., "options": [...]}``, or a list of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from layerdiff.errors import InvalidArgumentError
from layerdiff.mount.mount import Mount

_FIELDS = ("type", "source", "target")
_OPTIONS = "options="


def _split(text: str) -> list[str]:
    """Split on commas not escaped; undo the ``\\,`` and ``\\\\`` escapes."""
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in ",\\":
            current.append(text[i + 1])
            i += 2
            continue
        if char == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    items.append("".join(current))
    return items


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,")


def parse_mount_spec(text: str) -> Mount:
    """The ``Mount`` a person typed as ``type=...,source=...,target=...,options=...``."""
    if not isinstance(text, str):
        raise InvalidArgumentError("a mount spec must be a string")
    items = _split(text)
    fields: dict[str, str] = {}
    options: list[str] = []
    for index, item in enumerate(items):
        if item.startswith(_OPTIONS):
            options = [item[len(_OPTIONS):], *items[index + 1:]]
            break
        key, sep, value = item.partition("=")
        if not sep or key not in _FIELDS:
            raise InvalidArgumentError(
                f"mount spec item {item!r}: expected type=, source=, target= or options=")
        if key in fields:
            raise InvalidArgumentError(f"mount spec names {key} twice")
        fields[key] = value
    if not fields.get("type"):
        raise InvalidArgumentError(f"mount spec {text!r} has no type=")
    return Mount(fields["type"], fields.get("source", ""), fields.get("target", ""),
                 tuple(options))


def format_mount_spec(mount: Mount) -> str:
    """The typed form of ``mount``; ``parse_mount_spec`` gives ``mount`` back."""
    parts = [f"type={_escape(mount.type)}", f"source={_escape(mount.source)}"]
    if mount.target:
        parts.append(f"target={_escape(mount.target)}")
    if mount.options:
        parts.append(_OPTIONS + ",".join(_escape(o) for o in mount.options))
    return ",".join(parts)


def mount_from_json(value: object) -> Mount:
    """The ``Mount`` of one decoded containerd ``Mount`` message (a dict)."""
    if not isinstance(value, dict):
        raise InvalidArgumentError("a mount in JSON must be an object")
    # repr: a name may hold control characters, and the message must stay one line.
    unknown = sorted(repr(k) for k in value if k not in (*_FIELDS, "options"))
    if unknown:
        raise InvalidArgumentError(f"mount JSON has unknown fields: {', '.join(unknown)}")
    fields = {}
    for key in _FIELDS:
        field = value.get(key)
        if field is not None and not isinstance(field, str):
            raise InvalidArgumentError(f"mount JSON field {key} must be a string")
        fields[key] = field or ""
    options = value.get("options")
    if options is None:
        options = []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise InvalidArgumentError("mount JSON field options must be a list of strings")
    if not fields["type"]:
        raise InvalidArgumentError("mount JSON has no type")
    return Mount(fields["type"], fields["source"], fields["target"], tuple(options))


def parse_mounts_json(text: str) -> list[Mount]:
    """The mounts of a JSON text: one containerd ``Mount`` object, or a list of them."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError) as err:
        raise InvalidArgumentError(f"mounts are not valid JSON: {err}") from None
    items = value if isinstance(value, list) else [value]
    return [mount_from_json(item) for item in items]


def mount_to_json(mount: Mount) -> dict[str, object]:
    """``mount`` as containerd's ``Mount`` message in JSON (what ``mount_from_json`` reads)."""
    return {"type": mount.type, "source": mount.source, "target": mount.target,
            "options": list(mount.options)}


def mounts_to_json(mounts: Sequence[Mount]) -> str:
    """A JSON list of ``mounts`` (what ``parse_mounts_json`` reads)."""
    return json.dumps([mount_to_json(m) for m in mounts])
