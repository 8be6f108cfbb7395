"""What machine and which tools a benchmark ran on, for the report."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except OSError as err:
        return f"unavailable ({err.strerror})"
    lines = (result.stdout or result.stderr).strip().splitlines()
    # zstd decorates its version line with asterisks.
    return lines[0].strip("* ") if lines else "unknown"


def _proc_value(path: str, key: str) -> str:
    with open(path) as f:
        for line in f:
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return "unknown"


def file_system(path: Path) -> str:
    """The type of the file system that holds path (as /proc/self/mounts names it)."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


def describe(targets: str, cache: Path) -> dict[str, str]:
    """CPU, cores, memory, kernel, distribution and file systems."""
    memory_kib = int(_proc_value("/proc/meminfo", "MemTotal").split()[0])
    release = _os_release()
    return {
        "CPU": _proc_value("/proc/cpuinfo", "model name"),
        "cores": str(os.cpu_count()),
        "memory": f"{memory_kib / (1 << 20):.1f} GiB",
        "kernel": platform.release(),
        "distribution": release,
        "targets": targets,
        "layer blobs": f"{cache} ({file_system(cache)}), read from the page cache by every "
                       "contender (caches are not dropped)",
    }


def _os_release() -> str:
    with open("/etc/os-release") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            if key == "PRETTY_NAME":
                return value.strip('"')
    return "unknown"


def versions(tools: dict[str, str]) -> dict[str, str]:
    """Version lines of the tools (name -> path) and of layerdiff's Python side."""
    found = {name: _first_line([path, "--version"]) for name, path in tools.items()}
    found["python"] = platform.python_version()
    for package in ("layerdiff", "isal", "backports.zstd"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
