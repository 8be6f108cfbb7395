"""Platforms (``os/arch[/variant]``), normalized and matched as containerd 1.7's
``platforms`` package does.

``x86_64`` is ``amd64``, ``aarch64`` is ``arm64`` (whose ``v8`` variant is the default and
so normalizes to none), ``armhf`` and a bare ``arm`` are ``arm/v7``. The default matcher
also accepts what a machine runs besides its own architecture, best first: an ``amd64``
machine takes ``386`` images, an ``arm64`` one ``arm/v8`` down to ``arm/v5``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from layerdiff.errors import InvalidArgumentError

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux",
    "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos",
))
_KNOWN_ARCH = frozenset((
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
))
# uname -m → (GOARCH, variant) for the machines Linux runs containers on.
_MACHINES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "loongarch64": ("loong64", ""),
    "mips64": ("mips64", ""),
}


@dataclass(frozen=True)
class Platform:
    """An OCI platform: operating system, architecture and (for ARM) variant."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def from_json(cls, value: object) -> Platform | None:
        """The platform of a descriptor's or a config's JSON object; ``None`` if it has none."""
        if not isinstance(value, dict):
            return None
        os_name, arch = value.get("os"), value.get("architecture")
        variant = value.get("variant") or ""
        if not isinstance(os_name, str) or not isinstance(arch, str):
            return None
        if not isinstance(variant, str):
            return None
        return cls(os_name, arch, variant)


def normalize(platform: Platform) -> Platform:
    """``platform`` with containerd's spellings: lowercase, ``amd64``, ``arm64``, ``arm/v7``..."""
    os_name = platform.os.lower() or "linux"
    if os_name == "macos":
        os_name = "darwin"
    arch, variant = platform.architecture.lower(), platform.variant.lower()
    if arch == "i386":
        arch, variant = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        variant = "" if variant == "v1" else variant
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        variant = "" if variant in ("8", "v8") else variant
    elif arch == "armhf":
        arch, variant = "arm", "v7"
    elif arch == "armel":
        arch, variant = "arm", "v6"
    elif arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return Platform(os_name, arch, variant)


def default_platform() -> Platform:
    """This machine's platform (Linux, the kernel's idea of the machine)."""
    machine = os.uname().machine
    arch, variant = _MACHINES.get(machine, (machine, ""))
    return normalize(Platform("linux", arch, variant))


def parse_platform(text: str) -> Platform:
    """Parse ``os``, ``arch``, ``os/arch`` or ``os/arch/variant`` as ``containerd`` does.

    ``InvalidArgumentError`` for anything else.
    """
    parts = text.split("/")
    if not text or len(parts) > 3 or not all(_COMPONENT.match(p) for p in parts):
        raise InvalidArgumentError(
            f"invalid platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8"
        )
    here = default_platform()
    if len(parts) == 1:
        word = parts[0].lower()
        if word in _KNOWN_OS or word == "macos":
            return normalize(Platform(word, here.architecture, here.variant))
        guess = normalize(Platform(here.os, word))
        if guess.architecture not in _KNOWN_ARCH:
            raise InvalidArgumentError(f"invalid platform {text!r}: unknown OS or architecture")
        return guess
    return normalize(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else ""))


def _vector(platform: Platform) -> list[Platform]:
    # containerd's platformVector: the platform, then what it can also run, best first.
    out = [platform]
    level = _variant_level(platform.variant)
    if platform.architecture == "amd64":
        if level is not None and level > 1:
            out += [Platform(platform.os, "amd64", f"v{v}") for v in range(level - 1, 0, -1)]
        out.append(Platform(platform.os, "386"))
    elif platform.architecture == "arm":
        if level is not None and level > 5:
            out += [Platform(platform.os, "arm", f"v{v}") for v in range(level - 1, 4, -1)]
    elif platform.architecture == "arm64":
        out += _vector(Platform(platform.os, "arm", platform.variant or "v8"))
    return out


def _variant_level(variant: str) -> int | None:
    digits = variant.removeprefix("v")
    return int(digits) if digits.isdigit() else None


class PlatformMatcher:
    """Which platforms an unpack for ``platform`` accepts, and which of them it prefers.

    ``strict`` accepts ``platform`` alone (containerd's ``OnlyStrict``); otherwise what
    the machine also runs is accepted, ranked after it (``Only``).
    """

    def __init__(self, platform: Platform, *, strict: bool = False) -> None:
        self.platform = normalize(platform)
        self._ranked = [self.platform] if strict else [normalize(p) for p in _vector(self.platform)]

    def rank(self, candidate: Platform) -> int | None:
        """0 for the best match, higher for worse ones; ``None`` if not accepted."""
        wanted = normalize(candidate)
        for i, accepted in enumerate(self._ranked):
            if accepted == wanted:
                return i
        return None

    def matches(self, candidate: Platform) -> bool:
        """Whether ``candidate`` is accepted."""
        return self.rank(candidate) is not None
