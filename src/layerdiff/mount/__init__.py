"""Mounts, as containerd hands them to a differ: the value, mounting, temporary mounts."""

from layerdiff.mount.mount import (
    Mount,
    mount_all,
    mount_points,
    readonly_mounts,
    unmount_all,
    unmount_mounts,
)
from layerdiff.mount.options import ParsedOptions, parse_options
from layerdiff.mount.spec import (
    format_mount_spec,
    mount_from_json,
    mount_to_json,
    mounts_to_json,
    parse_mount_spec,
    parse_mounts_json,
)
from layerdiff.mount.temp import cleanup_temp_mounts, temporary_mount

__all__ = [
    "Mount",
    "ParsedOptions",
    "cleanup_temp_mounts",
    "format_mount_spec",
    "mount_all",
    "mount_from_json",
    "mount_points",
    "mount_to_json",
    "mounts_to_json",
    "parse_mount_spec",
    "parse_mounts_json",
    "parse_options",
    "readonly_mounts",
    "temporary_mount",
    "unmount_all",
    "unmount_mounts",
]
